#!/usr/bin/env python3
"""Drill figures of every scenario in both timing profiles, as a table.

Runs its own lab (project pgha-lab-drills on its own subnet, nothing published) so a user's lab is
never touched; each profile starts from nothing (down --volumes, then up --profile P). Slow: the
seed profile's failovers take ~a minute each.
usage: python bench/drills.py [--scenarios a,b] [--profiles seed,fast] [--repeat N] [--keep]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pgha_lab.drill.report import spread_cells  # noqa: E402
from pgha_lab.drill.scenarios import SCENARIOS  # noqa: E402
from pgha_lab.imaging.images import IMAGES  # noqa: E402
from pgha_lab.profiles import PROFILES  # noqa: E402

PROJECT = "pgha-lab-drills"
SUBNET = "10.56.58.0/24"
COLUMNS = [("write_downtime_s", "downtime s"), ("new_leader_s", "new leader s"), ("haproxy_switched_s", "HAProxy s"),
           ("first_write_s", "1st write s"), ("lost_writes", "lost"), ("non_leader_acks", "non-leader"),
           ("split_brain_intervals", "split brain"), ("sync_wait_cancelled", "sync cancel")]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", PROJECT, *args],
                          check=check, capture_output=True, text=True)


def absent_images() -> list[str]:
    return [ref for ref in IMAGES.values()
            if subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode != 0]


def up(*args: str) -> None:
    # `up` builds missing images, which takes long and competes with the drills for CPU; a bench
    # measures an existing build instead of quietly starting one (checked before every up, as
    # images may be rebuilt while a long bench runs).
    absent = absent_images()
    if absent:
        raise SystemExit(f"bench/drills.py: node image(s) {', '.join(absent)} missing; "
                         f"build them first with `pgha-lab build`.")
    cli("up", *args)


def fresh_lab(profile: str) -> None:
    if (REPO / "labs" / PROJECT / "topology.yaml").exists():
        cli("down", "--volumes", check=False)
    up("--profile", profile, "--subnet", SUBNET, "--publish-ports", "off")


def spread(values: list[float]) -> str:
    if not values:
        return "—"
    lo, mid, hi = spread_cells([min(values), statistics.median(values), max(values)])
    return mid if min(values) == max(values) else f"{lo}/{mid}/{hi}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Not by default: scenarios a one-HAProxy lab cannot take (bench/haproxy_pair.py has the VIP drill)
    # and those that need a bulk writer (bench/settings_matrix.py runs the lagging standby).
    ap.add_argument("--scenarios", default=",".join(n for n, s in SCENARIOS.items()
                                                    if s.requires is None and not s.needs_bulk),
                    help="comma-separated (default: all that a one-HAProxy lab takes without a bulk writer)")
    ap.add_argument("--profiles", default="fast,seed", help="comma-separated (default: fast,seed)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each drill (default 3)")
    ap.add_argument("--keep", action="store_true", help="leave the bench lab running at the end")
    args = ap.parse_args()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    chosen = [p.strip() for p in args.profiles.split(",") if p.strip()]
    bad = [s for s in scenarios if s not in SCENARIOS] + [p for p in chosen if p not in PROFILES]
    if bad or args.repeat < 1:
        print(f"bench/drills.py: unknown scenario or profile {bad} (scenarios: {', '.join(SCENARIOS)}; "
              f"profiles: {', '.join(PROFILES)}), or --repeat below 1.", file=sys.stderr)
        return 1
    if absent_images():
        print(f"bench/drills.py: node image(s) {', '.join(absent_images())} missing; build them first with "
              f"`pgha-lab build`.", file=sys.stderr)
        return 1
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    rows: list[tuple[str, str, dict[str, list[float]], str, str]] = []
    try:
        for profile in chosen:
            print(f"== {profile}: bringing up {PROJECT}", file=sys.stderr, flush=True)
            fresh_lab(profile)
            for scenario in scenarios:
                out = REPO / "labs" / PROJECT / "bench" / stamp / profile / scenario
                print(f"== {profile}: {scenario} x{args.repeat}", file=sys.stderr, flush=True)
                proc = cli("drill", scenario, "--repeat", str(args.repeat), "--json", "--out", str(out), check=False)
                note = ""
                try:
                    doc = json.loads(proc.stdout)
                except ValueError:
                    doc = {"runs": []}
                    note = (proc.stderr.strip().splitlines() or ["failed"])[-1][:80]
                if not doc["runs"] or any(not run.get("healthy_after") for run in doc["runs"]):
                    # The drill failed, or ran but left the lab unhealthy: put it back before the next scenario.
                    cli("chaos", "heal-all", check=False)
                    up()
                values: dict[str, list[float]] = {}
                bound = ""
                for run in doc["runs"]:
                    for key, _ in COLUMNS:
                        if isinstance(run["figures"].get(key), (int, float)):
                            values.setdefault(key, []).append(run["figures"][key])
                    b = run["figures"].get("recovery_bound_s")
                    bound = f"{b:.1f}" if isinstance(b, (int, float)) else "—"
                    if run["problems"] and not note:
                        note = "; ".join(run["problems"])[:80]
                rows.append((scenario, profile, values, bound, note))
    finally:
        if not args.keep:
            cli("down", "--volumes", check=False)

    print(f"Drill figures, {args.repeat} run(s) each: min/median/max (one value when all runs agree); "
          f"times in seconds after the fault. Reports under labs/{PROJECT}/bench/{stamp}/.")
    header = (f"{'scenario':28} {'profile':7} " + " ".join(f"{label:>15}" for _, label in COLUMNS)
              + f" {'bound s':>8}  note")
    print(header)
    print("-" * len(header))
    for scenario, profile, values, bound, note in rows:
        cells = " ".join(f"{spread(values.get(key, [])):>15}" for key, _ in COLUMNS)
        print(f"{scenario:28} {profile:7} {cells} {bound:>8}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
