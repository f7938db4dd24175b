"""What a healthy lab looks like, judged from probe readings (pure logic, no I/O).

Each assess_* returns (ok, reason); the reason names what is still missing, so a wait that
times out can say which node to look at.
"""
from __future__ import annotations

from dataclasses import dataclass

from pgha_lab.probes import Backend, EtcdEndpoint, Member

PRIMARY_BACKEND = "primary"
REPLICA_BACKEND = "replicas"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    culprit: str | None = None   # the node to show logs of when waiting fails


def assess_etcd(endpoints: list[EtcdEndpoint]) -> Verdict:
    for ep in endpoints:
        if ep.error:
            return Verdict(False, f"{ep.name} does not answer ({ep.error})", ep.name)
    ids = [ep.id for ep in endpoints]
    if len(set(ids)) != len(ids):
        return Verdict(False, "two etcd members share a member ID", endpoints[0].name)
    leaders = [ep.name for ep in endpoints if ep.is_leader]
    if len(leaders) != 1:
        return Verdict(False, f"{len(leaders)} etcd leaders instead of one", endpoints[0].name)
    return Verdict(True, f"{len(endpoints)} members, leader {leaders[0]}")


def leader_of(members: list[Member]) -> str | None:
    leaders = [m.name for m in members if m.role == "leader"]
    return leaders[0] if len(leaders) == 1 else None


def assess_patroni(members: list[Member], expected: list[str]) -> Verdict:
    by_name = {m.name: m for m in members}
    for name in expected:
        if name not in by_name:
            return Verdict(False, f"{name} has not registered with Patroni yet", name)
    leaders = [m for m in members if m.role == "leader"]
    if len(leaders) != 1:
        return Verdict(False, f"{len(leaders)} Patroni leaders instead of one", expected[0])
    if leaders[0].state != "running":
        return Verdict(False, f"leader {leaders[0].name} is {leaders[0].state}", leaders[0].name)
    for m in members:
        if m.role != "leader" and m.state != "streaming":
            return Verdict(False, f"{m.name} is {m.state or 'not running'}, not streaming", m.name)
    if not any(m.role == "sync_standby" for m in members):
        return Verdict(False, "no synchronous standby yet", None)
    return Verdict(True, f"leader {leaders[0].name}, {len(members) - 1} streaming, synchronous standby "
                         f"{', '.join(m.name for m in members if m.role == 'sync_standby')}")


def servers_up(backends: list[Backend], backend: str = PRIMARY_BACKEND) -> list[str]:
    """The servers HAProxy has UP (or UP, going down) in one backend, sorted."""
    return sorted(b.server for b in backends if b.backend == backend and b.status.startswith("UP"))


def assess_haproxy(backends: list[Backend], leader: str | None, replicas: list[str]) -> Verdict:
    if not backends:
        return Verdict(False, "HAProxy's stats page does not answer", "haproxy")
    if leader is None:
        return Verdict(False, "no leader to route to", None)
    primary_up = servers_up(backends, PRIMARY_BACKEND)
    if primary_up != [leader]:
        return Verdict(False, f"port {PRIMARY_BACKEND} routes to {primary_up or 'nothing'}, not {leader}", "haproxy")
    replica_up = servers_up(backends, REPLICA_BACKEND)
    if replica_up != sorted(replicas):
        return Verdict(False, f"replica port routes to {replica_up or 'nothing'}, not {sorted(replicas)}", "haproxy")
    return Verdict(True, f"primary port to {leader}, replica port to {', '.join(replica_up)}")
