"""The command line: parses arguments, calls into the library, prints. No lab logic lives here."""
from __future__ import annotations

import argparse
import importlib
import sys

from pgha_lab import __version__
from pgha_lab.errors import EXIT_ERROR, EXIT_INTERRUPTED, LabError

# Each name is a module in pgha_lab.commands with register(subparsers).
COMMAND_MODULES: list[str] = ["doctor", "build", "lifecycle", "status", "nodes", "certs", "config", "chaos", "drill",
                              "roll", "dashboard", "lesson", "snapshot"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgha-lab",
        description="A highly available PostgreSQL lab on Docker: bring it up, break it, measure it.")
    parser.add_argument("--version", action="version", version=f"pgha-lab {__version__}")
    parser.add_argument("--home", help="folder holding compose.yaml and labs/ (default: the checkout, or $PGHA_LAB_HOME)")
    parser.add_argument("--project", default=None, help="lab (compose project) name (default: pgha-lab)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"pgha_lab.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LabError as exc:
        print(f"pgha-lab: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("pgha-lab: interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
