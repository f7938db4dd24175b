"""The command line: parses arguments, calls into the library, prints. No lab logic lives here."""
from __future__ import annotations

import argparse
import importlib
import sys

from pgha_lab import __version__
from pgha_lab.commands import COMMANDS
from pgha_lab.errors import EXIT_ERROR, EXIT_INTERRUPTED, LabError

GLOBAL_WITH_VALUE = ("--home", "--project")


def chosen_command(argv: list[str]) -> str | None:
    """The command named on the command line (the first word that is not a global option or its value)."""
    words = iter(argv)
    for word in words:
        if word in GLOBAL_WITH_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: every command listed from COMMANDS, and only the chosen command's module
    imported to register its arguments (`argv` None: every module, for tests and documentation)."""
    parser = argparse.ArgumentParser(
        prog="pgha-lab",
        description="A highly available PostgreSQL lab on Docker: bring it up, break it, measure it.")
    parser.add_argument("--version", action="version", version=f"pgha-lab {__version__}")
    parser.add_argument("--home",
                        help="folder holding compose.yaml and labs/ (default: the checkout, or $PGHA_LAB_HOME)")
    parser.add_argument("--project", default=None, help="lab (compose project) name (default: pgha-lab)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    chosen = chosen_command(argv) if argv is not None else None
    if argv is None:
        modules = {module for module, _ in COMMANDS.values()}
    else:
        modules = {COMMANDS[chosen][0]} if chosen in COMMANDS else set()
    registered: set[str] = set()
    for name, (module, text) in COMMANDS.items():
        if module in modules and name not in registered:
            before = set(sub.choices)
            importlib.import_module(f"pgha_lab.commands.{module}").register(sub)
            registered |= set(sub.choices) - before
            modules.discard(module)
        elif name not in registered:
            sub.add_parser(name, help=text, add_help=False)   # listed; its module is not needed to parse this line
            registered.add(name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
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
