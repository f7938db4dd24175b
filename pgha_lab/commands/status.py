"""`pgha-lab status`: who takes writes, every member (Docker's state where Patroni cannot say), etcd
endpoints and HAProxy backends, from one reading of the lab (reading.py)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import NoReturn

from rich.console import Console
from rich.live import Live
from rich.text import Text

from pgha_lab import lab_settings, reading, vip
from pgha_lab.bare import status
from pgha_lab.commands import summary
from pgha_lab.commands._common import lab_context
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.reading import Reading
from pgha_lab.term.console import console_for
from pgha_lab.term.tables import etcd_table, haproxy_table, members_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help=summary("status"))
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--watch", nargs="?", const=2.0, type=float, metavar="SECONDS",
                   help="refresh until interrupted (every 2 s unless given)")
    p.set_defaults(func=cmd_status)


def snapshot(ctx: LabContext) -> Reading:
    return reading.take(ctx)


def stale_text(stale: list) -> str:
    """Nodes running older files than the host's: named before the TLS errors they explain."""
    if not stale:
        return ""
    lines = [f"stale: {f.text()}" for f in stale]
    lines.append("  they may fail TLS with the nodes that run the current files; "
                 "`pgha-lab roll --stale` (or `pgha-lab up`) applies them one node at a time.")
    return "\n".join(lines)


def settings_line(ctx: LabContext, live: lab_settings.LabSettings | None) -> tuple[str, dict]:
    """The settings Patroni really runs (its /config in etcd), and the profile; said when they
    differ from what the lab saved, e.g. after a `patronictl edit-config` by hand."""
    saved = ctx.settings
    shown = live or saved
    text = f"Settings: {shown.summary()}; {ctx.profile.name} profile"
    if live is None:
        text += " (saved; Patroni's /config did not answer)"
    elif live != saved:
        text += f" (the lab saved {saved.summary()}; `pgha-lab up` puts that back)"
    return text, {"settings": shown.as_dict(), "saved_settings": saved.as_dict(), "profile": ctx.profile.name}


def render_text(topo, snap: Reading, settings_text: str = "") -> str:
    """The first line says who takes writes, or "no leader: writes are refused" and why; then every
    member of the topology, running or not, as patronictl lists them."""
    parts = [snap.writes.reason]
    if snap.stale:
        parts.append(stale_text(snap.stale))
    if settings_text:
        parts.append(settings_text)
    parts += [members_table(snap.members, topo.scope), etcd_table(snap.etcd),
              haproxy_table(snap.haproxy) if snap.haproxy else "HAProxy: the stats page does not answer."]
    if snap.haproxy_nodes:
        parts.append(vip.proxies_text(snap.haproxy_nodes, topo))
    if snap.disks:
        parts.append("Disks: " + "; ".join(u.text() for u in snap.disks) + ".")
    return "\n\n".join(parts)


def as_json(snap: Reading, settings_doc: dict) -> dict:
    return {"writes": {"ok": snap.writes.ok, "text": snap.writes.reason},
            "members": [asdict(m) for m in snap.members],
            **{key: [asdict(x) for x in getattr(snap, key)] for key in ("etcd", "haproxy", "stale", "haproxy_nodes",
                                                                       "disks")},
            **settings_doc, "read_s": round(snap.read_s, 3)}


def cmd_status(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    topo = ctx.topology
    if args.watch is not None and args.watch <= 0:
        raise LabError(f"--watch takes a refresh interval in seconds above 0, not {args.watch:g}.")
    if topo.bare:   # what each node runs, and the cluster's tables for what is built
        if not ctx.docker.containers():
            raise LabError(f"lab {topo.project!r} is not running; start it with `pgha-lab up`.")
        return show_bare(ctx, args)
    snap = snapshot(ctx)
    if not snap.lab_exists:
        raise LabError(f"lab {topo.project!r} is not running; start it with `pgha-lab up`.")
    console = console_for(sys.stdout)
    if args.watch and not args.json and console.is_terminal:
        return watch_in_place(ctx, args.watch, console)
    while True:
        text, doc = settings_line(ctx, snap.live_settings)
        if args.json:
            print(json.dumps(as_json(snap, doc), indent=2))
        else:
            print(render_text(topo, snap, text))
        if not args.watch:
            return 0
        time.sleep(args.watch)   # a display refresh interval, not a wait for readiness
        snap = snapshot(ctx)


def show_bare(ctx: LabContext, args: argparse.Namespace) -> int:
    while True:
        snap = status.snapshot(ctx)
        print(json.dumps(status.as_dict(snap), indent=2) if args.json else status.render_text(ctx, snap))
        if not args.watch:
            return 0
        time.sleep(args.watch)   # a display refresh interval, not a wait for readiness


def watch_in_place(ctx: LabContext, interval: float, console: Console) -> NoReturn:
    """Redraw the tables where they stand until interrupted; the last snapshot stays."""
    # stderr is not drawn on, so it is not routed into stdout's display.
    with Live(console=console, auto_refresh=False, redirect_stderr=False) as live:
        while True:
            snap = snapshot(ctx)
            # Cropped rather than wrapped: a wrapped table row is unreadable.
            live.update(Text(render_text(ctx.topology, snap, settings_line(ctx, snap.live_settings)[0]),
                             no_wrap=True, overflow="ellipsis"),
                        refresh=True)
            time.sleep(interval)   # a display refresh interval, not a wait for readiness
