"""Planned and unplanned role changes through Patroni's REST API, with patronictl's semantics:
switchover needs a healthy leader and may name a candidate; failover names the candidate and
works without a healthy leader. Both wait until the new leader takes writes through HAProxy."""
from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from pgha_lab.context import LabContext
from pgha_lab.errors import LabError, first_line
from pgha_lab.probes import Cluster, Member
from pgha_lab.rows import one_row
from pgha_lab.wait import Verdict, wait_until


@dataclass
class RoleChange:
    kind: str
    old_leader: str | None
    new_leader: str
    before: list[Member]
    after: list[Member]
    seconds_to_writes: float


def _leader_client(ctx: LabContext, cluster: Cluster):
    """The db node whose REST API should take the request: the leader, else any that answers."""
    order = sorted(ctx.topology.db, key=lambda n: n.name != cluster.leader_name)
    for node in order:
        if ctx.probe.rest(node, "/patroni")[0] == 200:
            return node
    raise LabError("no db node's REST API answers; `pgha-lab status` shows the lab.")


def check_change(ctx: LabContext, kind: str, to: str | None) -> None:
    """Refuse, before anything happens, a change Patroni would refuse or that names no member."""
    _plan(ctx, kind, to)


def request_change(ctx: LabContext, kind: str, to: str | None) -> RoleChange:
    cluster, body, to = _plan(ctx, kind, to)
    node = _leader_client(ctx, cluster)
    r = ctx.probe.rest_change(node, "POST", f"/{kind}", body, ctx.restapi_auth, timeout=60)
    if refused(r.status_code, r.text):
        raise LabError(f"Patroni refused the {kind}: {r.text.strip() or r.status_code}.")
    return RoleChange(kind=kind, old_leader=cluster.leader_name, new_leader=to or "", before=list(cluster.members),
                      after=[], seconds_to_writes=0.0)


def refused(status: int, text: str) -> bool:
    """Whether Patroni's answer to POST /switchover or /failover refuses the change. A 503 "... status
    unknown" is no refusal: Patroni wrote the request into etcd and stopped watching before it was
    carried out (on a loaded host); whether it was, the writes tell."""
    return status != 200 and not (status == 503 and "status unknown" in text.lower())


def _plan(ctx: LabContext, kind: str, to: str | None) -> tuple[Cluster, dict, str | None]:
    """(the cluster now, the REST body, the candidate) of a change, or LabError saying why it cannot be."""
    cluster = ctx.cluster()
    if not cluster:
        raise LabError("Patroni does not answer on any db node; `pgha-lab status` shows the lab.")
    names = cluster.names
    leader = cluster.leader_name
    if to is not None and to not in names:
        raise LabError(f"{to!r} is not a cluster member; members are: {', '.join(names)}.")
    if to is not None and to == leader:
        raise LabError(f"{to} is already the leader; choose another member.")
    if kind == "switchover":
        if leader is None:
            raise LabError("there is no healthy leader to switch over from; use `pgha-lab failover --to NODE`.")
        body: dict = {"leader": leader}
        if to:
            body["candidate"] = to
    else:
        if to is None:
            # cluster.replicas lists synchronous standbys first
            candidates = [m.name for m in cluster.replicas if m.role.is_replica and m.state == "streaming"]
            if not candidates:
                raise LabError("no streaming replica to fail over to.")
            to = candidates[0]
        body = {"candidate": to}
    return cluster, body, to


def wait_for_writes(ctx: LabContext, change: RoleChange, deadline_s: float) -> RoleChange:
    """Poll until a write through HAProxy's 5432 commits on a new leader (the candidate, if named)."""
    started = time.monotonic()
    addresses = {str(n.address): n.name for n in ctx.topology.db}
    dsn, password = ctx.dsn(), ctx.secrets.superuser_password

    def written_on_new_leader() -> Verdict:
        try:
            with psycopg.connect(dsn, password=password, connect_timeout=2, autocommit=True) as conn:
                conn.execute("set statement_timeout = '2s'")
                addr: str = one_row(conn.execute("select host(inet_server_addr())"))[0]   # TCP: never null
                conn.execute("create temp table write_probe (x int)")   # a real write, needs a primary
                conn.execute("insert into write_probe values (1)")
        except psycopg.Error as exc:
            return Verdict(False, first_line(exc))
        server = addresses.get(addr, addr)
        if server != change.old_leader and (not change.new_leader or server == change.new_leader):
            change.new_leader = server
            return Verdict(True, f"writes land on {server}")
        return Verdict(False, f"writes still land on {server}")

    verdict = wait_until(written_on_new_leader, deadline_s)
    if not verdict.ok:
        raise LabError(f"the {change.kind} did not complete in {deadline_s:.0f}s: {verdict.reason}.")
    change.seconds_to_writes = time.monotonic() - started
    change.after = ctx.probe.members()
    return change


def reinit(ctx: LabContext, name: str) -> str:
    """patronictl reinit: wipe a replica's data directory and clone it again from the leader."""
    r = ctx.probe.rest_change(ctx.topology.node(name), "POST", "/reinitialize", {"force": True},
                              ctx.restapi_auth, timeout=30)
    if r.status_code != 200:
        raise LabError(f"Patroni on {name} refused to re-initialise: {r.text.strip() or r.status_code}.")
    return f"re-initialised {name} from the leader (patronictl reinit)"
