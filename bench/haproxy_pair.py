#!/usr/bin/env python3
"""What a second HAProxy with a keepalived VIP buys: write downtime of the VIP holder killed
(drill kill-haproxy-vip, two HAProxy nodes) beside the single entry point killed for 5 s and
started again (drill kill-haproxy, one HAProxy), as a table of min/median/max.

Uses an existing lab (its project and subnet are given; it must be up), grows it to two HAProxy
nodes for the VIP drill and puts it back to one at the end.
usage: python bench/haproxy_pair.py --project P [--repeat N]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pgha_lab.render.keepalived import failover_bound_s  # noqa: E402


def cli(project: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", project, *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:   # 3 = a drill found a problem: its figures still count, and are shown
        print(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}",
              file=sys.stderr)
        if proc.returncode != 3:
            raise SystemExit(f"bench/haproxy_pair.py: `pgha-lab {' '.join(args)}` exited {proc.returncode}")
    return proc


def downtimes(project: str, scenario: str, repeat: int) -> list[float]:
    out = cli(project, "drill", scenario, "--repeat", str(repeat), "--json").stdout
    return [run["figures"]["write_downtime_s"] for run in json.loads(out)["runs"]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", required=True, help="the lab to measure (it must be up)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each drill (default 3)")
    args = ap.parse_args()
    rows = []
    try:
        cli(args.project, "up", "--haproxy-nodes", "1")
        rows.append(("kill-haproxy (one HAProxy, killed 5 s)", downtimes(args.project, "kill-haproxy", args.repeat),
                     None))
        cli(args.project, "up", "--haproxy-nodes", "2")
        rows.append(("kill-haproxy-vip (two, keepalived VIP)", downtimes(args.project, "kill-haproxy-vip", args.repeat),
                     failover_bound_s()))
    finally:
        cli(args.project, "up", "--haproxy-nodes", "1")
    print("| drill | runs | write downtime s (min / median / max) | bound s |")
    print("|-------|------|---------------------------------------|---------|")
    for name, values, bound in rows:
        print(f"| {name} | {len(values)} | {min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f} "
              f"| {'—' if bound is None else f'{bound:.1f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
