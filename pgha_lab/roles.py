"""Planned and unplanned role changes through Patroni's REST API, with patronictl's semantics:
switchover needs a healthy leader and may name a candidate; failover names the candidate and
works without a healthy leader. Both wait until the new leader takes writes through HAProxy."""
from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from pgha_lab import health
from pgha_lab.errors import LabError, first_line
from pgha_lab.probes import LabProbe, Member
from pgha_lab.topology import Topology

POLL_S = 0.3


@dataclass
class RoleChange:
    kind: str
    old_leader: str | None
    new_leader: str
    before: list[Member]
    after: list[Member]
    seconds_to_writes: float


def _leader_client(probe: LabProbe, topo: Topology, members: list[Member]):
    """The db node whose REST API should take the request: the leader, else any that answers."""
    leader = health.leader_of(members)
    order = sorted(topo.db, key=lambda n: n.name != leader)
    for node in order:
        if probe.rest(node, "/patroni")[0] == 200:
            return node
    raise LabError("no db node's REST API answers; `pgha-lab status` shows the lab.")


def request_change(probe: LabProbe, topo: Topology, auth: tuple[str, str], kind: str, to: str | None) -> RoleChange:
    members = probe.members()
    if not members:
        raise LabError("Patroni does not answer on any db node; `pgha-lab status` shows the lab.")
    names = [m.name for m in members]
    leader = health.leader_of(members)
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
            candidates = [m.name for m in members if m.role in ("sync_standby", "replica") and m.state == "streaming"]
            if not candidates:
                raise LabError("no streaming replica to fail over to.")
            to = sorted(candidates, key=lambda n: next(m.role != "sync_standby" for m in members if m.name == n))[0]
        body = {"candidate": to}
    node = _leader_client(probe, topo, members)
    r = probe.rest_change(node, "POST", f"/{kind}", body, auth, timeout=60)
    if r.status_code != 200:
        raise LabError(f"Patroni refused the {kind}: {r.text.strip() or r.status_code}.")
    return RoleChange(kind=kind, old_leader=leader, new_leader=to or "", before=members, after=[], seconds_to_writes=0.0)


def wait_for_writes(probe: LabProbe, topo: Topology, change: RoleChange, dsn: str, password: str,
                    deadline_s: float) -> RoleChange:
    """Poll until a write through HAProxy's 5432 commits on a new leader (the candidate, if named)."""
    started = time.monotonic()
    addresses = {str(n.address): n.name for n in topo.db}
    last = "no write has succeeded yet"
    while time.monotonic() - started < deadline_s:
        try:
            with psycopg.connect(dsn, password=password, connect_timeout=2, autocommit=True) as conn:
                conn.execute("set statement_timeout = '2s'")
                addr = conn.execute("select host(inet_server_addr())").fetchone()[0]
                conn.execute("create temp table write_probe (x int)")   # a real write, needs a primary
                conn.execute("insert into write_probe values (1)")
            server = addresses.get(addr, addr)
            if server != change.old_leader and (not change.new_leader or server == change.new_leader):
                change.new_leader = server
                change.seconds_to_writes = time.monotonic() - started
                change.after = probe.members()
                return change
            last = f"writes still land on {server}"
        except psycopg.Error as exc:
            last = first_line(exc)
        time.sleep(POLL_S)
    raise LabError(f"the {change.kind} did not complete in {deadline_s:.0f}s: {last}.")
