#!/usr/bin/env python3
"""Warm `up` to healthy (images already built), where its time goes, and the lab's memory at rest,
as tables.

Runs its own lab (project pgha-lab-bench on its own subnet, nothing published) so a user's lab is
never touched. Each round starts from nothing (down --volumes), so it includes initdb and the
replicas' base backups.   usage: python bench/up.py [--rounds N] [--profile seed|fast]
                                 [--project NAME --subnet CIDR]   (a second bench beside the first)
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT = "pgha-lab-bench"
SUBNET = "10.56.57.0/24"


STEP = re.compile(r"✓ (.+) \((\d+(?:\.\d+)?)s\)$")


def cli(project: str, *args: str) -> dict[str, float]:
    """Run one command; the seconds of each step its progress lines reported."""
    proc = subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", project, *args],
                          check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    steps: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        m = STEP.search(line.strip())
        if m:
            steps[m.group(1)[:60]] = float(m.group(2))
    return steps


UNITS = {"B": 1 / 1024 ** 2, "KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}


def memory_mib(project: str) -> dict[str, float]:
    """node -> resident memory (MiB) as `docker stats` reports it for this bench's containers."""
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"],
                         capture_output=True, text=True, check=True).stdout
    usage = {}
    for line in out.splitlines():
        name, mem = line.split(" ", 1)
        match = re.match(r"([0-9.]+)\s*([KMG]?i?B)", mem)
        if name.startswith(project + "-") and match:
            usage[name.removeprefix(project + "-")] = float(match.group(1)) * UNITS[match.group(2)]
    return usage


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", choices=["seed", "fast"], default="fast")
    ap.add_argument("--rest", type=float, default=20.0, help="seconds at rest before reading memory")
    ap.add_argument("--project", default=PROJECT)
    ap.add_argument("--subnet", default=SUBNET)
    args = ap.parse_args()
    rows, steps = [], []
    load = [os.getloadavg()[0]]
    try:
        for _ in range(args.rounds):
            if (REPO / "labs" / args.project / "topology.yaml").exists():
                cli(args.project, "down", "--volumes")
            start = time.monotonic()
            steps.append(cli(args.project, "up", "--profile", args.profile, "--subnet", args.subnet,
                             "--publish-ports", "off"))
            cold = time.monotonic() - start
            start = time.monotonic()
            cli(args.project, "up")
            again = time.monotonic() - start
            rows.append((cold, again))
            load.append(os.getloadavg()[0])
        time.sleep(args.rest)   # let start-up work settle before the reading; not a readiness wait
        mem = memory_mib(args.project)
    finally:
        cli(args.project, "down", "--volumes")
    colds, agains = [r[0] for r in rows], [r[1] for r in rows]
    print(f"load average (1 min) over the rounds: {min(load):.1f}-{max(load):.1f} on {os.cpu_count()} cores")
    print(f"{'measure':44} {'min':>7} {'median':>7} {'max':>7}")
    print(f"{'up from nothing to healthy (s, images built)':44} "
          f"{min(colds):7.1f} {statistics.median(colds):7.1f} {max(colds):7.1f}")
    print(f"{'second up, nothing to do (s)':44} {min(agains):7.1f} {statistics.median(agains):7.1f} {max(agains):7.1f}")
    print()
    print(f"{'where the first up spends its time (s)':62} {'min':>6} {'median':>6} {'max':>6}")
    for name in dict.fromkeys(k for s in steps for k in s):
        values = [s[name] for s in steps if name in s]
        print(f"{name:62} {min(values):6.1f} {statistics.median(values):6.1f} {max(values):6.1f}")
    print()
    print(f"{'node':12} {'memory at rest (MiB)':>22}")
    for name, mib in sorted(mem.items()):
        print(f"{name:12} {mib:22.1f}")
    print(f"{'total':12} {sum(mem.values()):22.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
