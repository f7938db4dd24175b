#!/usr/bin/env python3
"""Cold and warm `pgha-lab build` times, per step, as a table.

Cold removes the lab's images, their build cache, the wheelhouse and the pgdg probe memo
first, and by default the Ubuntu 24.04 base too (bootstrapped or pulled): --keep-ubuntu keeps
it. Warm then rebuilds with nothing changed.   usage: python bench/build.py [--keep-ubuntu] [--all]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pgha_lab import gateway  # noqa: E402
from pgha_lab.imaging import (  # noqa: E402
    baseimage,  # noqa: E402
    images,
    recipes,
)
from pgha_lab.imaging.pg_install import PG_INSTALL_CHOICES  # noqa: E402
from pgha_lab.imaging.progress import Lines  # noqa: E402
from pgha_lab.paths import LabPaths  # noqa: E402


def make_cold(client, paths: LabPaths, keep_ubuntu: bool) -> list[str]:
    """Remove what a cold build must redo; the names removed."""
    refs = [*gateway.IMAGES.values(), gateway.BASE_IMAGE]
    if not keep_ubuntu:
        refs += [baseimage.BOOTSTRAPPED_REF, baseimage.UBUNTU_REF]
    removed = []
    for ref in refs:
        # Removing a tagged image also removes its classic-builder intermediates (the cache).
        if client.remove_image(ref, force=True):
            removed.append(ref)
    client.prune_build_cache()     # BuildKit's cache where an engine has one, and dangling images
    for path in (paths.cache / "wheelhouse", paths.cache / "pgdg-probe.json"):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return removed


def table(rows: list[tuple[str, str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = []
    for n, r in enumerate(rows):
        out.append("  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                              r[3].rjust(widths[3])]))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-ubuntu", action="store_true", help="keep the bootstrapped or pulled ubuntu:24.04")
    parser.add_argument("--all", action="store_true", help="list every step, not only those over half a second")
    parser.add_argument("--pg-install", default="auto", choices=PG_INSTALL_CHOICES)
    args = parser.parse_args()
    paths = LabPaths(home=REPO)
    client = images.sdk()

    removed = make_cold(client, paths, args.keep_ubuntu)
    print(f"cold start: removed {', '.join(removed) or 'nothing'}; build cache, wheelhouse and probe memo cleared",
          file=sys.stderr)
    t0 = time.monotonic()
    cold = images.build(paths, pg_install=args.pg_install, progress=Lines())
    cold_s = time.monotonic() - t0
    t0 = time.monotonic()
    warm = images.build(paths, pg_install=args.pg_install, progress=Lines())
    warm_s = time.monotonic() - t0

    rows = [("build", "image", "step", "seconds")]
    for phase, result in (("cold", cold), ("warm", warm)):
        for step in result.steps:
            if args.all or step.seconds >= 0.5:
                rows.append((phase, step.image, step.step[:70], "cached" if step.cached else f"{step.seconds:.1f}"))
    rows.append(("cold", "all", f"total (base: {cold.base.source.value}, PostgreSQL: {cold.pg_install})",
                 f"{cold_s:.1f}"))
    rows.append(("warm", "all", "total, nothing changed", f"{warm_s:.1f}"))
    print(table(rows))
    print()
    have = recipes.existing(client)
    for role in ("base", *recipes.ROLES):
        print(f"{have[role]['ref']:<26} {have[role]['size'] / 1e6:6.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
