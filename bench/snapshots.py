#!/usr/bin/env python3
"""Snapshot save and restore times of a whole lab (min/median/max of N), against the 20 s restore target.

Runs on an existing lab (default: the default lab), ready or bare; it must be up. Each round saves a
snapshot, restores it and deletes it; both count until the nodes run again with the services they ran
(a ready lab: healthy again). Prints a table with the machine's load average, which the times depend on.
usage: python bench/snapshots.py [--project NAME] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pgha_lab import snapshots  # noqa: E402
from pgha_lab.context import LabContext  # noqa: E402

TARGET_RESTORE_S = 20.0
NAME = "bench-snapshot"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ctx = LabContext.open(REPO, args.project)
    saves, restores, sizes, loads = [], [], [], []
    for _ in range(args.repeat):
        if (snapshots.folder(ctx, NAME) / snapshots.MANIFEST).exists():
            snapshots.delete(ctx, NAME)
        loads.append(os.getloadavg()[0])
        saved = snapshots.save(ctx, NAME)
        if not saved.verdict.ok:
            raise SystemExit(f"the lab did not come back after the save: {saved.verdict.reason}")
        restored = snapshots.restore(ctx, NAME)
        if not restored.verdict.ok:
            raise SystemExit(f"the lab did not come back after the restore: {restored.verdict.reason}")
        saves.append(saved.seconds)
        restores.append(restored.seconds)
        sizes.append(saved.manifest.bytes)
        loads.append(os.getloadavg()[0])
        snapshots.delete(ctx, NAME)

    def mmm(xs: list[float]) -> str:
        return f"{min(xs):.1f} / {statistics.median(xs):.1f} / {max(xs):.1f}"
    kind = "bare" if getattr(ctx.topology, "bare", False) else "ready"
    print(f"lab {ctx.project!r} ({kind}, {len(ctx.topology.nodes)} nodes), {args.repeat} rounds, "
          f"load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores")
    print(f"| {'':<28} | min / median / max |")
    print(f"|{'-' * 30}|{'-' * 20}|")
    print(f"| {'save s':<28} | {mmm(saves):>18} |")
    print(f"| {'restore s (target <= 20)':<28} | {mmm(restores):>18} |")
    print(f"| {'snapshot size MiB':<28} | {mmm([s / 2**20 for s in sizes]):>18} |")
    return 0 if statistics.median(restores) <= TARGET_RESTORE_S else 1


if __name__ == "__main__":
    sys.exit(main())
