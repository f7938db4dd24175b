"""The checker's command line: exit 0 when the history is clean, 1 on a violation, 2 on bad input."""
from __future__ import annotations

import argparse
import json
import sys

from .checker import check
from .history import HistoryError, load_finals, load_history

CLEAN, VIOLATION, BAD_INPUT = 0, 1, 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pgha_lab.check",
        description="Judge a client history (JSONL) against the final state of each source: lost, "
                    "phantom and duplicate writes, two servers acknowledging at once, reordered "
                    "lists, reads of values that vanished, replicas that diverged.")
    parser.add_argument("history", help="the history, one JSON operation per line")
    parser.add_argument("--final", metavar="FINAL.json",
                        help="the final states, a JSON array of {\"source\", \"rows\"} records "
                             "(else the history's \"op\": \"final\" lines)")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        history = load_history(args.history)
        finals = history.finals + (load_finals(args.final) if args.final else ())
        verdict = check(history.operations, finals)
    except HistoryError as exc:
        print(f"pgha_lab.check: {exc}.", file=sys.stderr)
        return BAD_INPUT
    print(json.dumps(verdict.as_dict(), indent=2) if args.json else verdict.table())
    return CLEAN if verdict.clean else VIOLATION


if __name__ == "__main__":
    sys.exit(main())
