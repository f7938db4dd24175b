"""`pgha-lab build`: the base and node images, with a line per step."""
from __future__ import annotations

import argparse

from pgha_lab.commands import summary
from pgha_lab.commands._common import lab_paths
from pgha_lab.imaging import images, recipes
from pgha_lab.imaging.pg_install import PG_INSTALL_CHOICES
from pgha_lab.imaging.progress import Lines, fmt_seconds


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("build", help=summary("build"))
    p.add_argument("--pg-install", choices=PG_INSTALL_CHOICES, default="auto",
                   help="PostgreSQL from the PostgreSQL apt repository (pgdg), compiled from the release "
                        "tarball (source), or pgdg where reachable (auto, the default)")
    p.add_argument("--pg-source-url", metavar="URL",
                   help="where to fetch the PostgreSQL 18.6 tarball (default: the Ubuntu archive's pool on "
                        "the base image's mirror); its sha256 is checked either way")
    p.add_argument("--no-cache", action="store_true", help="rebuild every step instead of reusing the build cache")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths = lab_paths(args)
    result = images.build(paths, pg_install=args.pg_install, pg_source_url=args.pg_source_url,
                          no_cache=args.no_cache, progress=Lines())
    client = images.sdk()
    have = recipes.existing(client)
    print(f"built in {fmt_seconds(result.seconds)} (PostgreSQL: {result.pg_install}; base: {result.base.reason})")
    for role, ref in result.images.items():
        size = have.get(role, {}).get("size", 0) / 1e6
        print(f"  {role:<8} {ref:<26} {size:6.0f} MB")
    return 0
