"""`pgha-lab roll [NODE...]`: a deliberate rolling restart of a running lab, in the safe order."""
from __future__ import annotations

import argparse
import json
import sys

from pgha_lab.commands import summary
from pgha_lab.commands._common import lab_context
from pgha_lab.errors import LabError
from pgha_lab.rolling import execute, staleness
from pgha_lab.term.progress import Progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("roll", help=summary("roll"),
                       description="A rolling restart of a running lab: each node is recreated with the files, "
                                   "settings and image rendered on the host now, and the next one waits until it is "
                                   "back. Without NODE every node rolls; --stale rolls only the nodes that run older "
                                   "files than the host's.")
    p.add_argument("nodes", nargs="*", metavar="NODE", help="nodes to restart (default: every node)")
    p.add_argument("--stale", action="store_true", help="only the nodes running older files, settings or images")
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    p.add_argument("--timeout", type=float, default=execute.STEP_DEADLINE_S,
                   help="seconds each node may take to come back (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the steps and their durations as JSON")
    p.set_defaults(func=cmd_roll)


def cmd_roll(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    nodes = execute.resolve_nodes(ctx, args.nodes)
    if not ctx.is_running():
        raise LabError(f"lab {ctx.project!r} is not running; `pgha-lab up` starts it with the current files.")
    if args.stale:
        stale = {f.node for f in staleness.stale_nodes(ctx, [ctx.topology.node(n) for n in nodes])}
        nodes = [n for n in nodes if n in stale]
    progress = Progress(stream=sys.stderr)
    steps, outcome = execute.roll(ctx, nodes, progress, dry_run=args.dry_run, step_deadline_s=args.timeout)
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "plan": [s.title() for s in steps],
                          "seconds": round(outcome.seconds, 1) if outcome else None,
                          "steps": [{"step": t.step.title(), "seconds": round(t.seconds, 1)}
                                    for t in (outcome.steps if outcome else [])]}, indent=2))
    elif outcome:
        print(f"rolled {len(outcome.steps)} steps in {outcome.seconds:.0f}s; the lab is healthy.")
    return 0
