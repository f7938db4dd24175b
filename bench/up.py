#!/usr/bin/env python3
"""Warm `up` to healthy (images already built) and the lab's memory at rest, as a table.

Runs its own lab (project pgha-lab-bench on its own subnet, nothing published) so a user's lab is
never touched. Each round starts from nothing (down --volumes), so it includes initdb and the
replicas' base backups.   usage: python bench/up.py [--rounds N] [--profile seed|fast]
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT = "pgha-lab-bench"
SUBNET = "10.56.57.0/24"


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", PROJECT, *args],
                   check=True, stdout=subprocess.DEVNULL)


UNITS = {"B": 1 / 1024 ** 2, "KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}


def memory_mib() -> dict[str, float]:
    """node -> resident memory (MiB) as `docker stats` reports it for this bench's containers."""
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"],
                         capture_output=True, text=True, check=True).stdout
    usage = {}
    for line in out.splitlines():
        name, mem = line.split(" ", 1)
        match = re.match(r"([0-9.]+)\s*([KMG]?i?B)", mem)
        if name.startswith(PROJECT + "-") and match:
            usage[name.removeprefix(PROJECT + "-")] = float(match.group(1)) * UNITS[match.group(2)]
    return usage


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", choices=["seed", "fast"], default="fast")
    ap.add_argument("--rest", type=float, default=20.0, help="seconds at rest before reading memory")
    args = ap.parse_args()
    rows = []
    try:
        for i in range(args.rounds):
            if (REPO / "labs" / PROJECT / "topology.yaml").exists():
                cli("down", "--volumes")
            start = time.monotonic()
            cli("up", "--profile", args.profile, "--subnet", SUBNET, "--publish-ports", "off")
            cold = time.monotonic() - start
            start = time.monotonic()
            cli("up")
            again = time.monotonic() - start
            rows.append((cold, again))
        time.sleep(args.rest)   # let start-up work settle before the reading; not a readiness wait
        mem = memory_mib()
    finally:
        cli("down", "--volumes")
    colds, agains = [r[0] for r in rows], [r[1] for r in rows]
    print(f"{'measure':44} {'min':>7} {'median':>7} {'max':>7}")
    print(f"{'up from nothing to healthy (s, images built)':44} {min(colds):7.1f} {statistics.median(colds):7.1f} {max(colds):7.1f}")
    print(f"{'second up, nothing to do (s)':44} {min(agains):7.1f} {statistics.median(agains):7.1f} {max(agains):7.1f}")
    print()
    print(f"{'node':12} {'memory at rest (MiB)':>22}")
    for name, mib in sorted(mem.items()):
        print(f"{name:12} {mib:22.1f}")
    print(f"{'total':12} {sum(mem.values()):22.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
