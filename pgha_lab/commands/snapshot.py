"""`pgha-lab snapshot`: save, restore, list and delete snapshots of a whole lab."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pgha_lab import disks, snapshots
from pgha_lab.commands import summary
from pgha_lab.commands._common import lab_context
from pgha_lab.errors import EXIT_NOT_AS_EXPECTED
from pgha_lab.term.progress import Progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("snapshot", help=summary("snapshot"),
                       description="A snapshot holds every node's file-system changes and data volumes, taken "
                                   "with the nodes stopped so etcd and PostgreSQL are consistent; a restore puts "
                                   "all of it back and boots the nodes that were running.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    for name, text in (("save", "stop the lab, keep every node's disk and data, boot it again"),
                       ("restore", "put the lab back as it was at the save, and boot it"),
                       ("delete", "remove a snapshot")):
        v = verbs.add_parser(name, help=text, description=text)
        v.add_argument("name", help="the snapshot's name, e.g. after-etcd")
        v.add_argument("--json", action="store_true", help="machine-readable output")
        v.set_defaults(func={"save": cmd_save, "restore": cmd_restore, "delete": cmd_delete}[name])
    ls = verbs.add_parser("list", help="the lab's snapshots", description="the lab's snapshots")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_list)


def _report(args: argparse.Namespace, what: str, outcome: snapshots.Outcome) -> int:
    if args.json:
        print(json.dumps(outcome.as_dict(), indent=2))
    else:
        m = outcome.manifest
        if outcome.verdict.ok:
            print(f"Snapshot {m.name!r} {what} in {outcome.seconds:.1f}s ({len(m.nodes)} nodes, "
                  f"{disks.human(m.bytes)}); {outcome.verdict.reason}.")
        else:
            print(f"Snapshot {m.name!r} {what} in {outcome.seconds:.1f}s, but the lab did not come back as it "
                  f"was within {snapshots.BOOT_DEADLINE_S:.0f}s: {outcome.verdict.reason}.")
    return 0 if outcome.verdict.ok else EXIT_NOT_AS_EXPECTED


def cmd_save(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    snapshots.check_saveable(ctx, args.name)   # refusals come before the progress line
    progress = Progress(stream=sys.stderr)
    with progress.step(f"Saving snapshot {args.name!r}"):
        outcome = snapshots.save(ctx, args.name, note=progress.info)
    return _report(args, "saved", outcome)


def cmd_restore(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    snapshots.check_restorable(ctx, args.name)   # refusals come before the progress line
    progress = Progress(stream=sys.stderr)
    with progress.step(f"Restoring snapshot {args.name!r}"):
        outcome = snapshots.restore(ctx, args.name, note=progress.info)
    return _report(args, "restored", outcome)


def cmd_delete(args: argparse.Namespace) -> int:
    manifest = snapshots.delete(lab_context(args), args.name)
    if args.json:
        print(json.dumps({"deleted": manifest.name}))
    else:
        print(f"Snapshot {manifest.name!r} deleted.")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    rows: list[dict[str, Any]] = []   # JSON's rows, printed as a table below
    for m in snapshots.list_all(ctx):
        missing = snapshots.missing_parts(ctx, m)
        rows.append({"name": m.name, "created": m.created, "nodes": len(m.nodes), "bytes": m.bytes,
                     "running": [n.name for n in m.nodes if n.running], "healthy": m.healthy,
                     "save_seconds": m.save_seconds, "complete": not missing})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"Lab {ctx.project!r} has no snapshots; `pgha-lab snapshot save NAME` takes one.")
        return 0
    print(f"{'NAME':<24} {'CREATED':<26} {'NODES':>5} {'SIZE':>10}  STATE")
    for r in rows:
        state = "incomplete: parts missing in the engine" if not r["complete"] else \
            f"{len(r['running'])} running" + (", healthy" if r["healthy"] else "")
        print(f"{r['name']:<24} {r['created']:<26} {r['nodes']:>5} {disks.human(r['bytes']):>10}  {state}")
    return 0
