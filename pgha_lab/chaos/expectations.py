"""What Patroni, etcd and HAProxy should do after each fault, in this lab's configuration
(synchronous_mode on but not strict, failsafe_mode off, primary_start_timeout at its default),
with a check that reads the cluster and says whether it has happened yet."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from pgha_lab import health
from pgha_lab.context import LabContext
from pgha_lab.probes import Cluster
from pgha_lab.topology import Node, Role
from pgha_lab.wait import Verdict


@dataclass
class Expectation:
    """What should happen next, and a check that says whether it has."""
    text: str
    check: Callable[[], Verdict] | None = None
    deadline_s: float = 60.0


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
        cluster = ctx.cluster()
        now = cluster.leader_name
        if now != leader:
            return Verdict(False, f"the leader is {now or 'nobody'}, not {leader}")
        row = cluster.leader
        if row.state != "running":
            return Verdict(False, f"{leader} is {row.state}")
        if timeline is not None and row.timeline != timeline:
            return Verdict(False, f"timeline moved from {timeline} to {row.timeline}")
        if not via_haproxy:
            return Verdict(True, f"{leader} still leads on timeline {row.timeline}")
        return _routes_primary_to(ctx, leader)
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


def no_primary(ctx: LabContext) -> Callable[[], Verdict]:
    def check() -> Verdict:
        codes = {n.name: ctx.probe.rest(n, "/primary")[0] for n in ctx.topology.db}
        primaries = [name for name, code in codes.items() if code == 200]
        if primaries:
            return Verdict(False, f"{', '.join(primaries)} still answers as primary")
        # Demoted means the node answers and says it is not primary (503). A running node that does
        # not answer (code 0) may still be a primary we cannot see (frozen, cut off); only a node
        # that is powered off or gone is certainly not one.
        silent = [n for n in ctx.topology.db
                  if codes[n.name] == 0 and ctx.docker.state(n).status not in ("exited", "created", "missing")]
        if silent:
            names = ", ".join(n.name for n in silent)
            return Verdict(False, f"{names} does not answer its REST API, so its demotion is not confirmed",
                           silent[0].name)
        up = health.servers_up(ctx.probe.haproxy())
        if up:
            return Verdict(False, f"HAProxy's 5432 still routes to {', '.join(up)}")
        return Verdict(True, "no node accepts writes and HAProxy's 5432 has no server")
    return check


def healthy(ctx: LabContext) -> Callable[[], Verdict]:
    return ctx.health


def etcd_running(ctx: LabContext) -> int:
    states = [ctx.docker.state(n) for n in ctx.topology.etcd]
    return sum(1 for s in states if s.running and s.on_lab_network)


def expectation_for(ctx: LabContext, action: str, node: Node, role: str, cluster: Cluster, *,
                    peers: str | None = None, clear: bool = False) -> Expectation:
    p = ctx.profile
    failover_s = p.failover_bound_s()
    rejoin_s = 120.0   # a rewind or a fresh base backup on a laptop
    leader = cluster.leader_name
    timeline = cluster.timeline
    killed_at = datetime.now(timezone.utc)   # the action has just run: a restart must come after it

    losing = action in ("kill", "pause", "stop", "isolate") or (action == "partition" and not clear)
    returning = action in ("start", "resume", "heal") or (action == "partition" and clear)

    if node.role is Role.DB:
        if losing and role == "leader" and (action != "partition" or "etcd" in (peers or "")):
            return Expectation(
                f"{node.name} was the leader. It can no longer renew its leader key, which expires within ttl "
                f"({p.ttl}s); a replica then takes the key and promotes, and HAProxy moves 5432 to it "
                f"(bound ~{failover_s:.0f}s). A leader that still runs but cannot reach etcd demotes itself "
                f"after retry_timeout ({p.retry_timeout}s).",
                new_leader(ctx, node.name), failover_s + 30)
        if losing and leader:
            return Expectation(
                f"{node.name} was a {role.replace('_', ' ')}. {leader} stays leader; with synchronous_mode on "
                f"(not strict) Patroni drops a lost synchronous standby from synchronous_standby_names, so writes "
                f"resume after at most a loop ({p.loop_wait}s) plus the replication timeout.",
                same_leader(ctx, leader, timeline), failover_s + 30)
        if returning or action == "degrade":
            if leader == node.name:   # back before its key expired, or a degraded leader
                return Expectation(f"{node.name} still holds the leader key and carries on as leader.",
                                   same_leader(ctx, node.name), 60)
            if action == "degrade":
                text = f"{node.name} keeps working through the loss (TCP retransmits) and keeps streaming."
            else:
                text = (f"{node.name} comes back. Had it led before, it finds the leader key held by another, "
                        f"steps down and rejoins as a replica (pg_rewind where its timeline diverged), so no write "
                        f"reaches it; otherwise Patroni starts it as a replica. Either way it streams again.")
            return Expectation(text, streams_as_replica(ctx, node.name), rejoin_s)
        if action == "kill-postgres":
            if role == "leader":
                return Expectation(
                    f"{node.name} still holds the leader key, so Patroni restarts PostgreSQL in place as primary "
                    f"('starting primary after failure', primary_start_timeout 300s): no failover, same timeline.",
                    restarted_since(ctx, node, killed_at, same_leader(ctx, node.name, timeline)), 60)
            return Expectation(f"Patroni restarts PostgreSQL on {node.name} as a replica; it streams again.",
                               restarted_since(ctx, node, killed_at, streams_as_replica(ctx, node.name)), 60)
    if node.role is Role.ETCD:
        total = len(ctx.topology.etcd)
        quorum = total // 2 + 1
        if losing:
            left = etcd_running(ctx)
            if left >= quorum:
                keeps = f"{leader} stays leader." if leader else "it elects a leader as usual."
                return Expectation(
                    f"etcd keeps its quorum ({left} of {total} members, {quorum} needed); Patroni carries on and "
                    f"{keeps}", same_leader(ctx, leader, timeline) if leader else healthy(ctx), 60)
            return Expectation(
                f"etcd has lost its quorum ({left} of {total}, {quorum} needed). Patroni cannot renew the leader "
                f"key, so within retry_timeout/ttl ({p.retry_timeout}s/{p.ttl}s) the primary demotes itself to "
                f"read-only (failsafe_mode is off in this lab) and HAProxy's 5432 has no server; reads on 5433 go on.",
                no_primary(ctx), p.ttl + 30)
        if returning:
            return Expectation(f"{node.name} rejoins etcd; with a quorum Patroni holds or elects a leader and "
                               f"HAProxy routes 5432 again.", healthy(ctx), failover_s + 60)
    if node.role is Role.HAPROXY:
        if losing:
            return Expectation("Clients lose 5432 and 5433 until HAProxy is back; the cluster itself does not change.",
                               same_leader(ctx, leader, timeline, via_haproxy=False) if leader else None, 30)
        return Expectation("HAProxy routes 5432 to the leader and 5433 to the replicas again.", healthy(ctx), 60)
    return Expectation("Nothing in particular: watch `pgha-lab status`.")
