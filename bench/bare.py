#!/usr/bin/env python3
"""The bare lab's figures, as a table: `up --bare` warm (images built) to systemd running on every
node, the exported playbook from a bare lab to a healthy cluster, a second run (changed=0), and the
memory of the lab at rest, bare and built.

Runs its own lab (project pgha-lab-bench-bare on its own subnet, nothing published) so a user's lab is
never touched; each round starts from nothing (down --volumes).
usage: python bench/bare.py [--rounds N] [--rest SECONDS] [--project NAME] [--subnet CIDR]"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.up import memory_mib  # noqa: E402

from pgha_lab.context import LabContext  # noqa: E402
from pgha_lab.deploy import run_playbook  # noqa: E402
from pgha_lab.wait import wait_until  # noqa: E402


def cli(project: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", project, *args],
                   check=True, stdout=subprocess.DEVNULL)


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def row(name: str, values: list[float]) -> str:
    return f"{name:48} {min(values):7.1f} {statistics.median(values):7.1f} {max(values):7.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rest", type=float, default=20.0, help="seconds at rest before reading memory")
    ap.add_argument("--project", default="pgha-lab-bench-bare")
    ap.add_argument("--subnet", default="10.56.58.0/24")
    args = ap.parse_args()
    ups, builds, agains, changed, loads = [], [], [], [], [load()]
    mem_bare: dict[str, float] = {}
    mem_built: dict[str, float] = {}
    try:
        for i in range(args.rounds):
            if (REPO / "labs" / args.project / "topology.yaml").exists():
                cli(args.project, "down", "--volumes")
            start = time.monotonic()
            cli(args.project, "up", "--bare", "--profile", "fast", "--subnet", args.subnet, "--publish-ports", "off")
            ups.append(time.monotonic() - start)
            if i == 0:
                time.sleep(args.rest)   # let the boot settle before the reading; not a readiness wait
                mem_bare = memory_mib(args.project)
            ctx = LabContext.open(REPO, args.project)
            start = time.monotonic()
            run_playbook(ctx)
            verdict = wait_until(ctx.health, 300, interval_s=1.0)
            assert verdict.ok, verdict.reason
            builds.append(time.monotonic() - start)
            again = run_playbook(ctx)
            agains.append(again.seconds)
            changed.append(again.changed)
            loads.append(load())
        time.sleep(args.rest)
        mem_built = memory_mib(args.project)
    finally:
        if (REPO / "labs" / args.project / "topology.yaml").exists():
            cli(args.project, "down", "--volumes")
    print(f"load average (1/5/15 min) at the start and after each round: {', '.join(loads)}")
    print(f"{'measure':48} {'min':>7} {'median':>7} {'max':>7}")
    print(row("up --bare, warm, to systemd running (s)", ups))
    print(row("playbook, bare lab to a healthy cluster (s)", builds))
    print(row("second run (s)", agains))
    print(f"{'second run: tasks changed':48} {max(changed):7d}")
    print()
    print(f"{'node':12} {'bare at rest (MiB)':>20} {'built at rest (MiB)':>20}")
    for name in sorted(mem_bare):
        print(f"{name:12} {mem_bare[name]:20.1f} {mem_built.get(name, 0):20.1f}")
    print(f"{'total':12} {sum(mem_bare.values()):20.1f} {sum(mem_built.values()):20.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
