"""The checks that say whether what Patroni, etcd and HAProxy should do after a fault has happened
yet, each reading the cluster; `from_plan` turns a rule's plan (chaos/rules.py, over the state of
chaos/cluster_state.py) into one. Which plan follows which fault is the fault's own (chaos/catalogue.py)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from pgha_lab import health, node_paths, vip
from pgha_lab.bare import survey
from pgha_lab.chaos import rules, sql
from pgha_lab.context import LabContext
from pgha_lab.render.keepalived import failover_bound_s as vip_failover_bound_s
from pgha_lab.topology import Node, Topology
from pgha_lab.wait import Verdict


@dataclass
class Expectation:
    """What should happen next, and a check that says whether it has."""
    text: str
    check: Callable[[], Verdict] | None = None
    deadline_s: float = 60.0
    holds: bool = False    # the expected outcome is that nothing recovers until healed (no leader, no primary)


def _routes_primary_to(ctx: LabContext, leader: str) -> Verdict:
    up = health.servers_up(ctx.probe.haproxy())
    if up != [leader]:
        return Verdict(False, f"HAProxy's 5432 routes to {up or 'nothing'}, not {leader}", "haproxy")
    return Verdict(True, f"{leader} leads and HAProxy's 5432 routes to it")


def new_leader(ctx: LabContext, old: str) -> Callable[[], Verdict]:
    def check() -> Verdict:
        leader = ctx.cluster().leader_name
        if leader is None or leader == old:
            return Verdict(False, f"no new leader yet (leader: {leader or 'none'})")
        return _routes_primary_to(ctx, leader)
    return check


def same_leader(ctx: LabContext, leader: str, timeline: int | None = None,
                via_haproxy: bool = True) -> Callable[[], Verdict]:
    # With a timeline, a leader that demoted and promoted again (a new timeline) does not count.
    # via_haproxy=False when HAProxy itself is the node that is down and cannot be asked.
    def check() -> Verdict:
        row = ctx.cluster().leader
        now = row.name if row else None
        if row is None or now != leader:
            return Verdict(False, f"the leader is {now or 'nobody'}, not {leader}")
        if row.state != "running":
            return Verdict(False, f"{leader} is {row.state}")
        if timeline is not None and row.timeline != timeline:
            return Verdict(False, f"timeline moved from {timeline} to {row.timeline}")
        if not via_haproxy:
            return Verdict(True, f"{leader} still leads on timeline {row.timeline}")
        return _routes_primary_to(ctx, leader)
    return check


def commits_after_standby_lost(ctx: LabContext, leader: str, timeline: int | None, lost: str,
                               wait: bool) -> Callable[[], Verdict]:
    """The whole outcome of losing a standby: `leader` still leads and, with `wait` False, Patroni no
    longer lists `lost` as synchronous standby and a commit does not wait (non-strict mode drops it);
    with `wait` True (synchronous_mode_strict) a commit waits for a synchronous standby."""
    same = same_leader(ctx, leader, timeline)

    def check() -> Verdict:
        verdict = same()
        if not verdict.ok:
            return verdict
        if not wait and lost in {m.name for m in ctx.cluster().sync_standbys}:
            return Verdict(False, f"Patroni still lists {lost} as synchronous standby", lost)
        outcome = sql.commit_wait(ctx)
        if wait:
            if outcome is None:
                return Verdict(False, "a commit through HAProxy did not wait for a synchronous standby, though "
                                      "synchronous_mode_strict is on", leader)
            if "waited" not in outcome:
                return Verdict(False, outcome, leader)
            return Verdict(True, f"{leader} still leads and {outcome}: writes block, as expected")
        if outcome is not None:
            return Verdict(False, outcome, leader)
        return Verdict(True, f"{leader} still leads, {lost} is no synchronous standby, and a commit through "
                             f"HAProxy does not wait")
    return check


def streams_as_replica(ctx: LabContext, name: str) -> Callable[[], Verdict]:
    def check() -> Verdict:
        row = ctx.cluster().member(name)
        if row is None:
            return Verdict(False, f"{name} is not registered with Patroni yet", name)
        if not row.role.is_replica or row.state != "streaming":
            return Verdict(False, f"{name} is {row.role}, {row.state}", name)
        return Verdict(True, f"{name} streams as a {row.role.value.replace('_', ' ')}")
    return check


def restarted_since(ctx: LabContext, node: Node, since: datetime,
                    then: Callable[[], Verdict]) -> Callable[[], Verdict]:
    """`then`, but only once the node's postmaster has started again after `since`: until Patroni's
    next loop the cluster still reports the killed PostgreSQL as it was, which `then` alone would
    take for an outcome that already happened."""
    def check() -> Verdict:
        code, doc = ctx.probe.rest(node, "/patroni")
        started = doc.get("postmaster_start_time") if code in (200, 503) else None
        try:
            restarted = started is not None and datetime.fromisoformat(started) > since
        except ValueError:
            restarted = False
        if not restarted:
            return Verdict(False, f"PostgreSQL on {node.name} has not started again yet", node.name)
        return then()
    return check


@dataclass(frozen=True)
class RoleReading:
    """What a db node said of itself: Patroni's GET /patroni (code 0: no answer), or, for a node off
    the lab network, its console's pg_is_in_recovery() ("t", "f", or "" when PostgreSQL did not answer)."""
    node: str
    container: str               # docker's status: running, paused, exited, ...
    code: int = 0
    role: str = ""
    state: str = ""
    console_in_recovery: str | None = None   # asked on the console only when the node is off the network


def judge_demoted(readings: list[RoleReading]) -> Verdict:
    """No db node is a primary, each confirmed: powered off, or running PostgreSQL read-only (Patroni
    says state running and a replica role; on the console, pg_is_in_recovery() is t). A node whose
    PostgreSQL is stopped, starting or crashed has not demoted to read-only (reads on 5433 need it);
    a running node that does not answer may still be a primary nobody can see."""
    for r in readings:
        if r.container in ("exited", "created", "missing"):
            continue
        if r.console_in_recovery is not None:
            if r.console_in_recovery == "t":
                continue
            said = "f: it still runs as a primary" if r.console_in_recovery == "f" else "no answer from PostgreSQL"
            return Verdict(False, f"{r.node} is off the lab network and its console says pg_is_in_recovery() = "
                                  f"{said}", r.node)
        if r.code == 0:
            return Verdict(False, f"{r.node} does not answer its REST API, so its demotion is not confirmed", r.node)
        if r.role in ("primary", "master"):
            if r.state == "stopping":
                return Verdict(False, f"{r.node} is still stopping PostgreSQL as primary: a fast shutdown waits for "
                                      f"its walsender to a standby it cannot reach, up to wal_sender_timeout", r.node)
            return Verdict(False, f"{r.node} still answers as primary", r.node)
        if r.state != "running":
            return Verdict(False, f"{r.node}'s PostgreSQL is {r.state or 'not reported'}, not running read-only: "
                                  f"its demotion is not confirmed", r.node)
    return Verdict(True, "every db node is powered off or runs PostgreSQL read-only")


def read_roles(ctx: LabContext) -> list[RoleReading]:
    out = []
    for n in ctx.topology.db:
        st = ctx.docker.state(n)
        if st.running and not st.on_lab_network:
            # Cut off: asked on its console (docker exec), as one reaches a VM whose network is gone.
            proc = ctx.docker.exec(n, "psql", "-h", node_paths.PG_RUN, "-tAc", "select pg_is_in_recovery()",
                                   user="postgres", check=False)
            out.append(RoleReading(n.name, st.status, console_in_recovery=proc.stdout.strip()))
            continue
        code, doc = ctx.probe.rest(n, "/patroni") if st.status not in ("exited", "created", "missing") else (0, {})
        out.append(RoleReading(n.name, st.status, code, str(doc.get("role", "")), str(doc.get("state", ""))))
    return out


def no_primary(ctx: LabContext) -> Callable[[], Verdict]:
    def check() -> Verdict:
        verdict = judge_demoted(read_roles(ctx))
        if not verdict.ok:
            return verdict
        up = health.servers_up(ctx.probe.haproxy())
        if up:
            return Verdict(False, f"HAProxy's 5432 still routes to {', '.join(up)}")
        return Verdict(True,
                       "no node accepts writes (each is read-only or powered off) and HAProxy's 5432 has no server")
    return check


def healthy(ctx: LabContext) -> Callable[[], Verdict]:
    return ctx.health


def boots_through_systemd(ctx: LabContext, node: Node, then: Expectation) -> Expectation:
    """A bare lab's node boots like a VM: systemd finishes booting and starts every unit enabled at boot
    (the service the builder enabled), and only then does the cluster do what `then` says."""
    unit = survey.UNITS[node.role]

    def check() -> Verdict:
        reading = [survey.read_node(ctx, node)]
        for verdict in (survey.booted(reading), survey.services_started(reading)):
            if not verdict.ok:
                return verdict
        if reading[0].enabled != "enabled":
            return Verdict(True, f"{node.name} booted; {unit} is not enabled at boot, so it stays stopped")
        return then.check() if then.check else Verdict(True, f"{node.name} booted and started {unit}")
    text = (f"systemd boots {node.name} and starts the units enabled at boot ({unit} if it is enabled); "
            f"then: {then.text}")
    return replace(then, text=text, check=check, deadline_s=then.deadline_s + 60)


def etcd_running(ctx: LabContext) -> int:
    states = [ctx.docker.state(n) for n in ctx.topology.etcd]
    return sum(1 for s in states if s.running and s.on_lab_network)


def _latched_hold(hold_s: float, read: Callable[[], str | None], breach: Callable[[str | None], str | None],
                  waiting: str, done: Callable[[str | None], Verdict]) -> Callable[[], Verdict]:
    """Watch the leader for `hold_s` seconds from the first call. A breach is latched: the check then
    never passes, so the wait runs out and reports it. After the hold, `done` judges the leader."""
    started: list[float] = []
    seen: list[str] = []

    def check() -> Verdict:
        now = time.monotonic()
        if not started:
            started.append(now)
        if seen:
            return Verdict(False, seen[0])
        leader = read()
        why = breach(leader)
        if why:
            seen.append(why)
            return Verdict(False, why)
        left = hold_s - (now - started[0])
        if left > 0:
            return Verdict(False, f"{waiting} ({left:.0f}s more to watch)")
        return done(leader)
    return check


def streams_on(ctx: LabContext, node: str, leader: str | None, hold_s: float) -> Callable[[], Verdict]:
    """`node` keeps streaming from `leader` for `hold_s` seconds (a fault that should change nothing)."""
    def read() -> str:
        cluster = ctx.cluster()
        member = cluster.member(node)
        return f"{cluster.leader_name or ''}|{member.state if member else ''}"

    def breach(seen: str | None) -> str | None:
        now, streaming = (seen or "|").split("|")
        if now != (leader or ""):
            return f"the leader changed to {now or 'nobody'}, against Patroni's rules as read before the fault"
        if streaming != "streaming":
            return f"{node} stopped streaming ({streaming or 'Patroni does not list it'})"
        return None
    return _latched_hold(hold_s, read, breach, f"{node} streams on, as expected",
                         lambda _: Verdict(True, f"{node} streamed on for {hold_s:.0f}s: nothing changed, as expected"))


def no_leader(ctx: LabContext, hold_s: float, old: str | None = None) -> Callable[[], Verdict]:
    """Nobody but `old` leads for `hold_s` seconds, and then nobody at all (the old leader's key
    lives on until its ttl runs out)."""
    return _latched_hold(
        hold_s, lambda: ctx.cluster().leader_name,
        lambda leader: (f"{leader} became leader, against Patroni's rules as read before the fault"
                        if leader is not None and leader != old else None),
        "no new leader, as expected",
        lambda leader: (Verdict(False, f"{leader} still holds the leader key") if leader is not None else
                        Verdict(True, f"no leader for {hold_s:.0f}s: the cluster held, read-only, as expected")))


def keeps_key(ctx: LabContext, node: str, hold_s: float) -> Callable[[], Verdict]:
    """`node` holds the leader key for `hold_s` seconds and nobody else leads."""
    return _latched_hold(
        hold_s, lambda: ctx.cluster().leader_name,
        lambda leader: (f"the leader key went to {leader or 'nobody'}, against Patroni's rules as read before "
                        f"the fault" if leader != node else None),
        f"{node} keeps the leader key, as expected",
        lambda _: Verdict(True, f"{node} kept the leader key for {hold_s:.0f}s: no failover, as expected"))


def failsafe_primary(ctx: LabContext, node: str, hold_s: float) -> Callable[[], Verdict]:
    """Nobody but `node` takes the leader key for `hold_s` seconds, and then `node` still answers as
    primary and HAProxy's 5432 routes to it (failsafe_mode keeps it primary without the key)."""
    def serving(_: str | None) -> Verdict:
        if ctx.probe.rest(ctx.topology.node(node), "/primary")[0] != 200:
            return Verdict(False, f"{node} no longer answers as primary: it demoted", node)
        routed = _routes_primary_to(ctx, node)
        if not routed.ok:
            return routed
        return Verdict(True, f"{node} stayed primary for {hold_s:.0f}s without renewing its key (failsafe_mode), "
                             f"HAProxy routing 5432 to it, and nobody took the key: as expected")
    return _latched_hold(
        hold_s, lambda: ctx.cluster().leader_name,
        lambda leader: (f"{leader} took the leader key although {node} runs in failsafe mode"
                        if leader is not None and leader != node else None),
        f"{node} still primary, nobody else leads, as expected", serving)


def refuses_writes_for_space(ctx: LabContext, node: str, hold_s: float) -> Callable[[], Verdict]:
    """`node` keeps the leader key for `hold_s`, and then a write that needs space fails on it for want of it."""
    kept = keeps_key(ctx, node, hold_s)

    def check() -> Verdict:
        verdict = kept()
        if not verdict.ok:
            return verdict
        error = sql.space_write_error(ctx, ctx.topology.node(node))
        if error is None:
            return Verdict(False, f"a 2 MiB write on {node} succeeded: its disk is not full", node)
        if rules.NO_SPACE_TEXT not in error:
            return Verdict(False, f"the write on {node} failed for another reason: {error}", node)
        return Verdict(True, f"{verdict.reason}; a write that needs space fails there: {error}")
    return check


def writes_land(ctx: LabContext, node: str, then: Callable[[], Verdict]) -> Callable[[], Verdict]:
    """`then`, and a write that needs new space succeeds on `node`."""
    def check() -> Verdict:
        verdict = then()
        if not verdict.ok:
            return verdict
        error = sql.space_write_error(ctx, ctx.topology.node(node))
        if error is not None:
            return Verdict(False, f"a 2 MiB write on {node} still fails: {error}", node)
        return Verdict(True, f"{verdict.reason}; a 2 MiB write on {node} succeeds")
    return check


def takes_key(ctx: LabContext, node: str) -> Callable[[], Verdict]:
    def check() -> Verdict:
        cluster = ctx.cluster()
        if cluster.leader_name != node:
            return Verdict(False, f"the leader is {cluster.leader_name or 'nobody'}, not {node}", node)
        return _routes_primary_to(ctx, node)
    return check


def from_plan(ctx: LabContext, plan: rules.Plan) -> Expectation:
    """The Expectation a plan describes, with the check that reads the cluster for it."""
    kind = plan.kind
    check: Callable[[], Verdict] | None
    if kind == rules.NEW_LEADER:
        check = new_leader(ctx, plan.node or "")
    elif kind == rules.SAME_LEADER:
        check = same_leader(ctx, plan.leader or "", plan.timeline, plan.via_haproxy) if plan.leader else None
    elif kind in (rules.COMMITS_FLOW, rules.COMMITS_WAIT):
        check = commits_after_standby_lost(ctx, plan.leader or "", plan.timeline, plan.node or "",
                                           wait=kind == rules.COMMITS_WAIT)
    elif kind == rules.NO_LEADER:
        check = no_leader(ctx, plan.hold_s, plan.node)
    elif kind == rules.KEEPS_KEY:
        check = keeps_key(ctx, plan.node or "", plan.hold_s)
    elif kind == rules.FULL_DISK_LEADER:
        check = refuses_writes_for_space(ctx, plan.node or "", plan.hold_s)
    elif kind == rules.FAILSAFE_PRIMARY:
        check = failsafe_primary(ctx, plan.node or "", plan.hold_s)
    elif kind == rules.TAKES_KEY:
        check = takes_key(ctx, plan.node or "")
    elif kind == rules.STREAMS:
        check = streams_as_replica(ctx, plan.node or "")
    elif kind == rules.NO_PRIMARY:
        check = no_primary(ctx)
    elif kind == rules.HEALTHY:
        check = healthy(ctx)
    else:
        check = None
    holds = kind in (rules.NO_LEADER, rules.KEEPS_KEY, rules.FAILSAFE_PRIMARY, rules.NO_PRIMARY, rules.FULL_DISK_LEADER)
    return Expectation(plan.text, check, plan.deadline_s, holds=holds)


def cut_names(peers: str | None) -> set[str]:
    return {part.strip() for part in (peers or "").split(",") if part.strip()}


def cuts_db_node(topo: Topology, peers: str | None) -> bool:
    """Whether a partition's --from names a db node (by name, or as leader/replica), not only etcd."""
    return bool(cut_names(peers) & ({n.name for n in topo.db} | {"leader", "replica"}))


def cuts_every_etcd_member(topo: Topology, peers: str | None) -> bool:
    """Whether a partition's --from leaves the node no etcd member. Patroni's client tries the members
    in turn, so one still reachable keeps the leader key renewed."""
    names = cut_names(peers)
    return "etcd" in names or {n.name for n in topo.etcd} <= names


def vip_expectation(ctx: LabContext, node: Node, role: str, *, losing: bool) -> Expectation:
    """Two HAProxy nodes: losing one leaves the VIP on the other (moved there within the VRRP bound
    when the lost one held it); the returning first node takes it back, having the higher priority."""
    topo = ctx.topology
    bound = vip_failover_bound_s()
    if losing:
        survivor = next(n.name for n in topo.haproxies if n.name != node.name)
        if role == "VIP holder":
            text = (f"keepalived on {survivor} misses 3 adverts and takes the VIP {topo.vip} within about "
                    f"{bound:.0f} s (gratuitous ARP tells the host); writes through the VIP resume, the "
                    f"cluster does not change.")
        else:
            text = (f"Nothing changes for clients: {node.name} was the backup, {survivor} keeps the VIP "
                    f"{topo.vip} and writes through it go on.")
        return Expectation(text, vip.served_by(ctx, survivor), bound + 30)
    return Expectation(f"{node.name} is back; {topo.haproxy.name} (the higher VRRP priority) holds the VIP "
                       f"{topo.vip} again and writes through it succeed.", vip.served_by(ctx, topo.haproxy.name), 60)
