#!/usr/bin/env python3
"""What the settings cost: `pgha-lab drill matrix` across replication modes and failsafe, as a table.

Runs its own lab (project pgha-lab-settings on its own subnet, nothing published) so a user's lab is
never touched: up --profile P, then the matrix (which re-configures the lab between cells through
the DCS), then down --volumes. Slow: every drill takes about a minute with the fast profile.
usage: python bench/settings_matrix.py [--scenarios a,b] [--replication m,n] [--failsafe off,on]
                                       [--profile fast] [--repeat 3] [--bulk-rate ROWS] [--row-size BYTES]
                                       [--db-nodes 2] [--sync-count N] [--keep]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pgha_lab.drill.report import spread_cells  # noqa: E402
from pgha_lab.imaging.images import IMAGES  # noqa: E402

PROJECT = "pgha-lab-settings"
SUBNET = "10.56.77.0/24"
FIGURES = [("write_downtime_s", "downtime s"), ("lost_writes", "lost"), ("hung_writes", "hung"),
           ("non_leader_acks", "non-leader"), ("split_brain_intervals", "split brain"),
           ("bulk_bytes_lost", "bulk bytes lost"), ("standby_lag_at_cut_bytes", "lag at cut B")]


def cli(project: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", project, *args],
                          check=check, capture_output=True, text=True)


def spread(values: list) -> str:
    values = [v for v in values if isinstance(v, (int, float))]
    if not values:
        return "—"
    lo, mid, hi = spread_cells([min(values), sorted(values)[len(values) // 2], max(values)])
    return mid if min(values) == max(values) else f"{lo}/{mid}/{hi}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default="isolate-leader,partition-leader-from-etcd,kill-replica,etcd-quorum-loss")
    ap.add_argument("--replication", default="sync,async,strict,quorum")
    ap.add_argument("--failsafe", default="off,on")
    ap.add_argument("--profile", default="fast")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bulk-rate", default="200", help="bulk rows a second during each drill (default 200)")
    ap.add_argument("--row-size", default="8192", help="bytes per bulk row (default 8192)")
    ap.add_argument("--db-nodes", default="2", help="db nodes in the bench lab (3 for a quorum of two standbys)")
    ap.add_argument("--sync-count", help="synchronous_node_count for every cell (with 3+ db nodes)")
    ap.add_argument("--keep", action="store_true", help="leave the bench lab running at the end")
    ap.add_argument("--reuse", action="store_true", help="run on the bench lab left by --keep instead of a fresh one")
    ap.add_argument("--project", default=PROJECT, help=f"the bench lab's project (default {PROJECT}); another "
                                                       f"project and --subnet run a second bench beside it")
    ap.add_argument("--subnet", default=SUBNET, help=f"the bench lab's network (default {SUBNET})")
    args = ap.parse_args()
    absent = [ref for ref in IMAGES.values()
              if subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode != 0]
    if absent:
        print(f"bench/settings_matrix.py: node image(s) {', '.join(absent)} missing; build them first with "
              f"`pgha-lab build`.", file=sys.stderr)
        return 1
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = REPO / "labs" / args.project / "bench" / stamp
    started = time.monotonic()
    try:
        if not args.reuse:
            if (REPO / "labs" / args.project / "topology.yaml").exists():
                cli(args.project, "down", "--volumes", check=False)
            cli(args.project, "up", "--profile", args.profile.split(",")[0], "--subnet", args.subnet,
                "--publish-ports", "off", "--db-nodes", args.db_nodes)
        sync_count = ["--sync-count", args.sync_count] if args.sync_count else []
        proc = cli(args.project, "drill", "matrix", *sync_count, "--scenarios", args.scenarios,
                   "--replication", args.replication, "--failsafe", args.failsafe, "--profile", args.profile,
                   "--repeat", str(args.repeat), "--bulk-rate", args.bulk_rate, "--row-size", args.row_size,
                   "--json", "--out", str(out),
                   check=False)
    finally:
        if not args.keep:
            cli(args.project, "down", "--volumes", check=False)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        print(proc.stderr[-2000:], file=sys.stderr)
        return 1
    print(f"Settings matrix, {args.db_nodes} db nodes, {args.repeat} run(s) "
          f"per cell, bulk writer {args.bulk_rate} rows/s x {args.row_size} B: "
          f"min/median/max (one value when all runs agree). {time.monotonic() - started:.0f}s in all. "
          f"Reports: {out}/matrix.md")
    header = f"{'scenario':28} {'cell':26} " + " ".join(f"{t:>15}" for _, t in FIGURES) + "  expected"
    print(header)
    print("-" * len(header))
    for r in doc["results"]:
        cells = " ".join(f"{spread([run.get(k) for run in r['runs']]):>15}" for k, _ in FIGURES)
        print(f"{r['scenario']:28} {r['cell']:26} {cells}  {'held' if r['held'] else 'NOT HELD: ' + r['why'][:90]}")
        for note in r.get("repairs") or []:   # a run left a member that needed `patronictl reinit`
            print(f"{'':55} repaired {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
