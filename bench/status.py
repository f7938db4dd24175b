#!/usr/bin/env python3
"""`pgha-lab status` against `patronictl list`, and `pgha-lab --help` (median/max of N), against
the 0.5 s target on a quiet machine; the load average is printed beside each figure.

`status` is timed as a whole command (process start, imports, one reading of Docker, Patroni, etcd,
HAProxy, the nodes' files and disks); patronictl inside a db node as the DBA runs it there (its
own `time`, so docker exec's start-up is left out, as on a VM). Runs on an existing lab.
usage: python bench/status.py [--project NAME] [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 0.5


def timed(cmd: list[str]) -> float:
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return time.monotonic() - started


def patronictl_seconds(project: str, node: str) -> float:
    """patronictl list's own wall time inside the node (bash's `time`, in seconds)."""
    proc = subprocess.run(["docker", "exec", "-u", "postgres", f"{project}-{node}", "bash", "-c",
                           "TIMEFORMAT=%R; time patronictl -c /etc/patroni/config.yml list >/dev/null"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"patronictl list failed in {node}:\n{proc.stderr}")
    return float(proc.stderr.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", default="pgha-lab")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    pgha = [sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", args.project]
    runs = {
        "pgha-lab --help": lambda: timed([*pgha, "--help"]),
        "pgha-lab status": lambda: timed([*pgha, "status"]),
        "pgha-lab status --json": lambda: timed([*pgha, "status", "--json"]),
        "patronictl list (inside dbnode1)": lambda: patronictl_seconds(args.project, "dbnode1"),
    }
    print(f"| command ({args.repeat} runs) | median s | max s | load average at the start |")
    print("|---|---|---|---|")
    for name, run in runs.items():
        load = os.getloadavg()[0]
        times = [run() for _ in range(args.repeat)]
        print(f"| {name} | {statistics.median(times):.2f} | {max(times):.2f} | {load:.1f} |")
    print(f"\ntarget: status <= {TARGET_S} s on a quiet machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
