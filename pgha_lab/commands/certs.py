"""`pgha-lab certs [--rotate]`: make or renew the lab's TLS material, and show what is there."""
from __future__ import annotations

import argparse
import json
import sys

from pgha_lab import tls
from pgha_lab.commands import summary
from pgha_lab.commands._common import lab_context
from pgha_lab.errors import LabError
from pgha_lab.rolling import rotation
from pgha_lab.term.progress import Progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("certs", help=summary("certs"),
                       description="Make the lab CA and every node's certificates from the topology. Nothing "
                                   "changes unless the topology changed, a certificate is near expiry, or --rotate.")
    p.add_argument("--rotate", action="store_true",
                   help="make a new CA and new certificates now; on a running lab in three rolled stages "
                        "with overlapping trust (no outage beyond one switchover per stage)")
    p.add_argument("--dry-run", action="store_true", help="with --rotate: print the stages and rolling plan only")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    paths, topology = ctx.paths, ctx.topology
    if args.dry_run and not args.rotate:
        raise LabError("--dry-run goes with --rotate: `pgha-lab certs --rotate --dry-run`.")
    if args.rotate and ctx.paths.compose_file.exists() and ctx.is_running():
        outcome = rotation.rotate(ctx, Progress(stream=sys.stderr), dry_run=args.dry_run)
        if args.dry_run:
            return 0
        print(f"CA rotated on the running lab in {outcome.seconds:.0f}s ({len(outcome.rolls)} rolling restarts); "
              f"every node now trusts only the new CA.")
        report = tls.ensure(paths, topology)
    elif args.rotate and args.dry_run:
        print("the lab is stopped: a new CA and new certificates would be made; the next `pgha-lab up` starts "
              "every node with them.")
        return 0
    else:
        report = tls.ensure(paths, topology, rotate=args.rotate)
    infos = tls.describe(paths, topology)
    if args.json:
        print(json.dumps({"dir": str(paths.certs), "changed": report.changed, "ca_renewed": report.ca_renewed,
                          "reasons": report.reasons, "certificates": [vars(i) for i in infos]}, indent=2))
        return 0
    if report.changed:
        why = "; ".join(report.reasons) or "node TLS folders were out of date"
        print(f"certificates written to {paths.certs} ({why}).")
    else:
        print(f"certificates in {paths.certs} are current; nothing changed.")
    rows = [("FILE", "SUBJECT", "USE", "EXPIRES", "NAMES")] + \
        [(i.file, i.subject, i.purpose, i.not_after, ", ".join(i.names)) for i in infos]
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in range(4)) + "  " + r[4])
    return 0
