"""`pgha-lab switchover`, `failover` and `chaos`."""
from __future__ import annotations

import argparse
import json
from contextlib import nullcontext
from dataclasses import asdict

from pgha_lab import roles
from pgha_lab.chaos import catalogue
from pgha_lab.chaos.actions import Chaos, wait
from pgha_lab.commands import summary
from pgha_lab.commands._common import lab_context
from pgha_lab.drill import outage
from pgha_lab.errors import EXIT_NOT_AS_EXPECTED, LabError
from pgha_lab.term.tables import members_table


def register(sub: argparse._SubParsersAction) -> None:
    for kind in ("switchover", "failover"):
        p = sub.add_parser(kind, help=summary(kind))
        p.add_argument("--to", metavar="NODE", help="the candidate (default: Patroni's choice for switchover, "
                                                    "the synchronous standby for failover)")
        p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for writes on the new leader")
        p.set_defaults(func=cmd_role_change, kind=kind)

    actions = [*catalogue.chaos_names(), catalogue.HEAL_ALL]   # the catalogue's, read when the parser is built
    c = sub.add_parser("chaos", help=summary("chaos"),
                       description="ACTION is one of: " + ", ".join(actions) + ". TARGET is a node name, "
                                   "or leader / replica resolved at the moment of the action.")
    c.add_argument("action", choices=actions)
    c.add_argument("target", nargs="?", help="node name, leader or replica")
    c.add_argument("--from", dest="peers", metavar="etcd|NODE[,NODE]", help="partition: whom to cut the node off from")
    c.add_argument("--clear", action="store_true", help="partition/degrade: restore the node's links")
    c.add_argument("--loss", metavar="PERCENT", help="degrade: drop this share of packets, e.g. 10%%")
    c.add_argument("--rate", metavar="SPEED", help="degrade: a slow link to the db and etcd nodes, e.g. 2mbit "
                                                   "(tc tbf/htb: works without netem)")
    c.add_argument("--delay", metavar="MS", help="degrade: add latency, e.g. 200ms (needs tc netem in the kernel)")
    c.add_argument("--every", type=float, metavar="SECONDS", help="flap: cut and restore every N seconds (default 5)")
    c.add_argument("--for", dest="duration", type=float, metavar="SECONDS", help="flap: for M seconds (default 30)")
    c.add_argument("--leave", metavar="SIZE", help="fill-disk: bytes to leave free, e.g. 1M (default 0: full)")
    c.add_argument("--wait", action="store_true", help="wait for the expected outcome and say whether it happened")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_chaos)


def cmd_role_change(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    scope = ctx.topology.scope
    roles.check_change(ctx, args.kind, args.to)   # refused before the writer starts
    # A failover may start with no leader: writes then were down before it, and nothing measures them here.
    meter = outage.OutageMeter(ctx, f"{args.kind}-") if args.kind == "switchover" else None
    with meter or nullcontext():
        if meter:
            meter.mark()
        change = roles.request_change(ctx, args.kind, args.to)
        print(members_table(change.before, scope))
        print(f"{args.kind}: {change.old_leader or 'no leader'} -> {change.new_leader or '(Patroni picks)'} requested; "
              f"waiting for writes on the new leader through HAProxy...")
        change = roles.wait_for_writes(ctx, change, args.timeout)
        if meter:
            meter.settle(change.new_leader)
    print(f"{change.new_leader} takes writes through HAProxy.")
    if meter:
        said = meter.outage().text(args.kind)
        print(said[0].upper() + said[1:] + ".")
    print(members_table(change.after, scope))
    return 0


def cmd_chaos(args: argparse.Namespace) -> int:
    chaos = Chaos(lab_context(args))
    if args.action == catalogue.HEAL_ALL:
        if args.target:
            raise LabError("heal-all takes no target: it puts every node back.")
        done = chaos.heal_all()
        print("\n".join(done) if done else "nothing to heal: every node runs, connected, without network faults.")
        return 0
    fault = catalogue.get(args.action)
    if not args.target and fault is not None and catalogue.needs_target(fault):
        raise LabError(f"chaos {args.action} needs a TARGET: a node name, leader or replica.")
    outcome = chaos.run(args.action, args.target, peers=args.peers, clear=args.clear, loss=args.loss, delay=args.delay,
                        rate=args.rate, every=args.every, duration=args.duration, leave=args.leave)
    if not args.json:
        print(f"{outcome.done}.")
        print(f"Expected: {outcome.expectation.text}")
    if args.wait:
        wait(outcome)
        if not args.json:
            print(outcome.verdict_line)
    if args.json:
        doc = {k: v for k, v in asdict(outcome).items() if k != "expectation" and (k != "extra_targets" or v)}
        doc["expected"] = outcome.expectation.text
        print(json.dumps(doc, indent=2))
    return 0 if outcome.happened in (None, True) else EXIT_NOT_AS_EXPECTED
