"""The virtual address of a two-HAProxy lab: who holds it (read inside each HAProxy node, as `ip
addr` shows it on a VM) and the check that it has settled on a node and carries writes."""
from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from pgha_lab import health
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.render.keepalived import INTERFACE
from pgha_lab.topology import Node, Topology
from pgha_lab.wait import Verdict

ONE_HAPROXY = ("the lab has one HAProxy, so there is no virtual address or second HAProxy to use; "
               "bring up a second with `pgha-lab up --haproxy-nodes 2`.")


def require_pair(ctx: LabContext) -> None:
    """Refuse, before anything changes, what needs a second HAProxy in a lab that has one."""
    if ctx.topology.haproxy2 is None:
        raise LabError(ONE_HAPROXY)


def addresses(ctx: LabContext, node: Node) -> set[ipaddress.IPv4Address]:
    """IPv4 addresses on the node's lab interface; empty when the node is not running."""
    if not ctx.docker.state(node).running:
        return set()
    proc = ctx.docker.exec(node, "ip", "-o", "-4", "addr", "show", "dev", INTERFACE, check=False, timeout=10)
    found: set[ipaddress.IPv4Address] = set()
    for line in proc.stdout.splitlines():   # "2: eth0    inet 10.56.57.32/24 scope global secondary eth0 ..."
        words = line.split()
        if "inet" in words:
            found.add(ipaddress.IPv4Interface(words[words.index("inet") + 1]).ip)   # `ip -4`: IPv4 only
    return found


def holders(ctx: LabContext) -> list[str]:
    """The HAProxy nodes that have the VIP on their interface now: one when all is well, none while
    it moves, two in a split brain (both think they are MASTER)."""
    vip = ctx.topology.vip
    if vip is None:
        return []
    return [n.name for n in ctx.topology.haproxies if vip in addresses(ctx, n)]


def write_through_vip(ctx: LabContext, timeout_s: float = 3.0) -> Verdict:
    """One write through the VIP's 5432 (txid_current() assigns a transaction id: a standby refuses)."""
    import psycopg  # here, not at the top: `status` reads this module and needs no SQL driver
    try:
        with psycopg.connect(ctx.dsn(), password=ctx.secrets.superuser_password, autocommit=True,
                             connect_timeout=max(2, int(timeout_s))) as conn:
            conn.execute("SELECT txid_current()")
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Verdict(False, f"a write through {ctx.topology.vip}:5432 failed ({reason})")
    return Verdict(True, f"a write through {ctx.topology.vip}:5432 succeeded")


def served_by(ctx: LabContext, node: str) -> Callable[[], Verdict]:
    """The VIP sits on `node` alone and takes writes."""
    def check() -> Verdict:
        now = holders(ctx)
        if now != [node]:
            held = " and ".join(now) if now else "no node"
            return Verdict(False, f"the VIP {ctx.topology.vip} is on {held}, not on {node} alone", node)
        written = write_through_vip(ctx)
        if not written.ok:
            return written
        return Verdict(True, f"{node} holds the VIP {ctx.topology.vip} and {written.reason}")
    return check


@dataclass
class ProxyState:
    """One HAProxy node of a two-HAProxy lab as `status` shows it."""
    name: str
    address: str
    state: str          # the container's: running, exited, paused...
    holds_vip: bool
    primary_to: list[str]   # the db nodes its own 5432 routes to, read from its own stats page


def proxies(ctx: LabContext) -> list[ProxyState]:
    """Both HAProxy nodes, which holds the VIP and where each routes 5432 (empty with one HAProxy)."""
    topo = ctx.topology
    if topo.vip is None:
        return []
    out = []
    for node in topo.haproxies:
        state = ctx.docker.state(node)
        up = health.servers_up(ctx.probe.haproxy(node=node)) if state.running else []
        out.append(ProxyState(node.name, str(node.address), state.status,
                              state.running and topo.vip in addresses(ctx, node), up))
    return out


def proxies_text(states: list[ProxyState], topology: Topology) -> str:
    lines = [f"HAProxy nodes (keepalived, VIP {topology.vip}):"]
    for p in states:
        role = "holds the VIP" if p.holds_vip else "backup"
        routes = f"5432 -> {', '.join(p.primary_to) or 'nothing'}" if p.state == "running" else "no stats"
        lines.append(f"  {p.name:<10} {p.address:<15} {p.state:<8} {role:<14} {routes}")
    if sum(p.holds_vip for p in states) != 1:
        lines.append("  the VIP is on " + ("both nodes (split brain)" if all(p.holds_vip for p in states)
                                           else "no node: clients cannot connect"))
    return "\n".join(lines)
