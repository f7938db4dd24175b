"""`pgha-lab doctor`: is this host ready to build and run the lab."""
from __future__ import annotations

import argparse
import json
import sys

from rich.text import Text

from pgha_lab import doctor
from pgha_lab.commands import summary
from pgha_lab.commands._common import lab_paths
from pgha_lab.term.console import console_for


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", help=summary("doctor"))
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.add_argument("--registry-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="how long to wait for a registry (default: 5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    checks = doctor.run(lab_paths(args), registry_timeout=args.registry_timeout)
    ok = doctor.healthy(checks)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [c.as_dict() for c in checks]}, indent=2))
        return 0 if ok else 1
    console = console_for(sys.stdout)
    width = max(len(c.name) for c in checks)
    for c in checks:
        mark = "ok" if c.ok else ("FAIL" if c.required else "note")
        colour = "green" if c.ok else "red" if c.required else "yellow"
        console.print(Text.assemble((f"{mark:<4}", colour), f"  {c.name:<{width}}  {c.detail}"))
    console.print("ready" if ok else "not ready: fix the FAIL lines above")
    return 0 if ok else 1
