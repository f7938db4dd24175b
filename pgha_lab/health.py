"""What a healthy lab looks like, judged from probe readings (pure logic, no I/O).

`assess_lab` is the one meaning of "healthy" that `up`, chaos expectations and drills share; the
per-part assessments say which part is still missing, so a wait that times out names the node to
look at.
"""
from __future__ import annotations

from collections.abc import Collection

from pgha_lab.gateway import ContainerState
from pgha_lab.probes import Backend, Cluster, EtcdEndpoint, Member, MemberRole
from pgha_lab.wait import Verdict

PRIMARY_BACKEND = "primary"
REPLICA_BACKEND = "replicas"
# A former leader that cannot follow the new timeline: Patroni retries pg_rewind and the start every loop,
# printing pg_controldata in between, so the telling line may lie a few hundred lines back.
DIVERGED_TAIL_LINES = 400
DIVERGED = ("is not a child of this server's history", "pg_rewind: error", "failed to rewind from")


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


def assess_patroni(members: list[Member] | Cluster, expected: list[str], sync_required: bool = True) -> Verdict:
    """`sync_required`: the lab's replication mode has synchronous (or quorum) standbys; asynchronous
    replication has none, and a healthy async cluster must not wait for one."""
    cluster = members if isinstance(members, Cluster) else Cluster.of(members)
    for name in expected:
        if cluster.member(name) is None:
            return Verdict(False, f"{name} has not registered with Patroni yet", name)
    leaders = [m for m in cluster if m.role is MemberRole.LEADER]
    if len(leaders) != 1:
        return Verdict(False, f"{len(leaders)} Patroni leaders instead of one", expected[0])
    if leaders[0].state != "running":
        return Verdict(False, f"leader {leaders[0].name} is {leaders[0].state}", leaders[0].name)
    for m in cluster.replicas:
        if m.state != "streaming":
            return Verdict(False, f"{m.name} is {m.state or 'not running'}, not streaming", m.name)
    if not sync_required:
        return Verdict(True, f"leader {leaders[0].name}, {len(cluster.members) - 1} streaming")
    if not cluster.sync_standbys:
        return Verdict(False, "no synchronous standby yet", None)
    return Verdict(True, f"leader {leaders[0].name}, {len(cluster.members) - 1} streaming, synchronous standby "
                         f"{', '.join(m.name for m in cluster.sync_standbys)}")


# The standby role Patroni shows in each replication mode (settings.REPLICATION_MODES' names).
STANDBY_ROLE = {"sync": MemberRole.SYNC_STANDBY, "strict": MemberRole.SYNC_STANDBY,
                "quorum": MemberRole.QUORUM_STANDBY, "async": None}


def assess_standby_roles(cluster: Cluster, replication: str) -> Verdict:
    """Whether Patroni has finished switching to `replication`: the roles it shows are that mode's
    (a lab switched from quorum to sync still shows quorum standbys for a loop or two, then none)."""
    want = STANDBY_ROLE[replication]
    shown = {m.role for m in cluster.members} & {MemberRole.SYNC_STANDBY, MemberRole.QUORUM_STANDBY}
    if want is None and shown:
        return Verdict(False, f"Patroni still shows a {sorted(shown)[0].value.replace('_', ' ')} in async mode", None)
    if want is not None and shown != {want}:
        return Verdict(False, f"no {want.value.replace('_', ' ')} yet: Patroni is still switching to {replication}",
                       None)
    return Verdict(True, f"standby roles match {replication} replication")


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


def assess_routing(backends: list[Backend], cluster: Cluster) -> Verdict:
    """HAProxy sends 5432 to Patroni's leader and 5433 to every other member."""
    return assess_haproxy(backends, cluster.leader_name, [m.name for m in cluster.replicas])


def assess_lab(etcd: list[EtcdEndpoint], cluster: Cluster, backends: list[Backend], expected_db: list[str],
               sync_required: bool = True) -> Verdict:
    """Healthy: every etcd member answers with one leader; Patroni has one running leader, every other
    member streaming and a synchronous standby; HAProxy routes both ports accordingly."""
    for verdict in (assess_etcd(etcd), assess_patroni(cluster, expected_db, sync_required)):
        if not verdict.ok:
            return verdict
    return assess_routing(backends, cluster)


NO_LEADER = "no leader: writes are refused"


def write_path(cluster: Cluster, containers: dict[str, ContainerState], backends: list[Backend] | None,
               answered: bool = True) -> Verdict:
    """Whether a write through HAProxy's 5432 can be taken now, said the way a DBA needs to hear it:
    "no leader: writes are refused" and why, when there is none. `containers` (Docker's view) tells
    a leader that is gone from one Patroni still lists: its key outlives a power cut by up to ttl.
    `backends` None: HAProxy was not asked; `answered` False: no db node's Patroni answered."""
    if not answered:
        return Verdict(False, f"{NO_LEADER} (no db node's Patroni answers its REST API)")
    leaders = [m for m in cluster if m.role is MemberRole.LEADER]
    if len(leaders) > 1:
        return Verdict(False, f"two leaders ({', '.join(m.name for m in leaders)}): split brain", leaders[0].name)
    if not leaders:
        return Verdict(False, f"{NO_LEADER} (Patroni lists no leader)")
    leader = leaders[0]
    state = containers.get(leader.name)
    if state is not None and state.condition != "running":
        return Verdict(False, f"{NO_LEADER} (the leader key still names {leader.name}, which is {state.condition}; "
                              f"another member may take it once it expires, after ttl)", leader.name)
    if leader.state != "running":
        return Verdict(False, f"{NO_LEADER} (leader {leader.name} is {leader.state or 'not running'})", leader.name)
    if backends is None:
        return Verdict(True, f"{leader.name} leads")
    if not backends:
        return Verdict(False, f"writes are refused: HAProxy's stats page does not answer (the leader is {leader.name})",
                       "haproxy")
    up = servers_up(backends, PRIMARY_BACKEND)
    if up != [leader.name]:
        return Verdict(False, f"writes are refused: HAProxy's 5432 routes to {', '.join(up) or 'no server'}, "
                              f"not the leader {leader.name} (its checks follow within a few seconds)", "haproxy")
    return Verdict(True, f"{leader.name} leads and takes writes through HAProxy's 5432")


def member_rows(db: list[tuple[str, str]], cluster: Cluster, containers: dict[str, ContainerState],
                answered: Collection[str] | None = None) -> list[Member]:
    """Every db node of the topology (name, address) as a row of patronictl's list: Patroni's own row
    where its node runs, Docker's state where it does not (a powered-off member's key outlives it by
    up to ttl, its figures frozen at the last loop), and why Patroni does not list a running one
    (`answered`: the nodes whose REST API answered, when they were asked)."""
    rows = []
    for name, address in db:
        member = cluster.member(name)
        state = containers.get(name)
        if state is not None and state.condition != "running":
            rows.append(Member(name, address, MemberRole.UNKNOWN, state.text()))
        elif member is None:
            why = ("running; its Patroni does not answer its REST API" if answered is not None and name not in answered
                   else "running; not a Patroni member")
            rows.append(Member(name, address, MemberRole.UNKNOWN, why))
        else:
            rows.append(member)
    return rows


def diverged_line(log: str) -> str | None:
    """The last line of a db node's log saying it left the leader's timeline for good (pg_rewind
    could not bring it back), None when there is none: `up` and the drill matrix name it."""
    return next((line.strip() for line in reversed(log.splitlines()) if any(s in line.lower() for s in DIVERGED)), None)
