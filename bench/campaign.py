#!/usr/bin/env python3
"""A long fault campaign (default 10 minutes, seed 42, synchronous mode as the lab runs it) against
an existing lab, with the checker's figures as a table; first shows the same seed twice gives the
same schedule. It brings no lab up: name one that runs (`pgha-lab up --profile fast`).
usage: python bench/campaign.py --project NAME [--minutes 10] [--seed 42] [--faults a,b] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cli(project: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", project, *args],
                          check=check, capture_output=True, text=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", required=True)
    ap.add_argument("--minutes", default="10")
    ap.add_argument("--seed", default="42")
    ap.add_argument("--faults")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "campaign"))
    args = ap.parse_args()
    extra = ["--faults", args.faults] if args.faults else []

    plan = ["drill", "campaign", "--minutes", args.minutes, "--seed", args.seed, *extra, "--dry-run"]
    first, second = cli(args.project, *plan).stdout, cli(args.project, *plan).stdout
    print(f"same seed twice, same schedule: {'yes' if first == second else 'NO'}")
    print(first)

    proc = cli(args.project, "drill", "campaign", "--minutes", args.minutes, "--seed", args.seed, *extra,
               "--json", "--out", args.out, check=False)
    if not proc.stdout.strip().startswith("{"):
        print(proc.stderr, file=sys.stderr)
        return 1
    doc = json.loads(proc.stdout)
    timeline = doc["timeline"]
    injected = [r for r in timeline if not r["skipped"]]
    seen = Counter((r["step"]["fault"], r["happened"]) for r in injected)
    findings = doc["verdict"]["findings"]
    rows = [
        ("campaign length (s)", doc["duration_s"]),
        ("faults scheduled / injected / skipped",
         f"{len(timeline)} / {len(injected)} / {len(timeline) - len(injected)}"),
        ("operations (ok / fail / unknown)", f"{doc['operations']} ({doc['counts']['ok']} / {doc['counts']['fail']} / "
                                             f"{doc['counts']['unknown']})"),
        ("lost acknowledged writes (expected 0)", findings["lost"]["count"]),
        ("single-acker violations (expected 0)", findings["single-acker"]["count"]),
        *((f"{kind} ({'allowed' if f['allowed'] else 'expected 0'})", f["count"])
          for kind, f in findings.items() if kind not in ("lost", "single-acker")),
        ("checker verdict", doc["verdict"]["summary"]),
        ("lab healthy after healing", doc["healthy_after"]),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'figure':{width}}  value")
    for key, value in rows:
        print(f"{key:{width}}  {value}")
    print()
    print(f"{'fault':18} {'expected seen':>13} {'NOT seen':>9} {'skipped':>8}")
    for name in sorted({r["step"]["fault"] for r in timeline}):
        skipped = sum(1 for r in timeline if r["skipped"] and r["step"]["fault"] == name)
        print(f"{name:18} {seen[(name, True)]:>13} {seen[(name, False)]:>9} {skipped:>8}")
    print()
    print("surprises:" if doc["surprises"] else "surprises: none")
    for s in doc["surprises"]:
        print(f"  {s}")
    for r in timeline:
        if r["skipped"]:
            print(f"  skipped {r['step']['fault']} at {r['step']['at_s']}s: {r['skipped']}")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0 if not doc["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
