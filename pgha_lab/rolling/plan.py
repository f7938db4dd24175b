"""The safe order to restart nodes of a running lab, one at a time (pure: no I/O).

etcd members first, followers before the leader, so quorum holds and there is one election at
most; then the db replicas, the synchronous standby last, each back to streaming before the
next; then a switchover to an updated replica and the old leader; HAProxy last (its restart is
the one short outage of client connections a single HAProxy node cannot avoid)."""
from __future__ import annotations

from dataclasses import dataclass

from pgha_lab.topology import Role, Topology

RESTART, SWITCHOVER = "restart", "switchover"


@dataclass(frozen=True)
class Step:
    action: str        # RESTART (recreate the node's container) or SWITCHOVER (away from `node`)
    node: str
    role: Role
    why: str           # what the step waits for, shown in the plan and its progress line

    def title(self) -> str:
        if self.action == SWITCHOVER:
            return f"switchover away from {self.node}: {self.why}"
        return f"restart {self.node}: {self.why}"


@dataclass(frozen=True)
class Roles:
    """Who leads now: the order depends on it."""
    etcd_leader: str | None
    db_leader: str | None
    sync_standbys: tuple[str, ...] = ()


def plan(topology: Topology, nodes: list[str], roles: Roles) -> list[Step]:
    """Steps that restart every node in `nodes` without losing etcd's quorum or the primary
    for longer than one switchover."""
    wanted = set(nodes)
    steps: list[Step] = []
    etcd = [n.name for n in topology.etcd if n.name in wanted]
    etcd.sort(key=lambda name: (name == roles.etcd_leader, name))
    for name in etcd:
        steps.append(Step(RESTART, name, Role.ETCD,
                          "wait until it rejoins and every etcd member answers with one leader"))
    db = [n.name for n in topology.db if n.name in wanted]
    replicas = [n for n in db if n != roles.db_leader]
    replicas.sort(key=lambda name: (name in roles.sync_standbys, name))
    for name in replicas:
        steps.append(Step(RESTART, name, Role.DB, "wait until it streams again and a synchronous standby is back"))
    if roles.db_leader in wanted:
        steps.append(Step(SWITCHOVER, roles.db_leader, Role.DB,
                          "the synchronous standby takes over; wait until writes land on it"))
        steps.append(Step(RESTART, roles.db_leader, Role.DB,
                          "wait until the old leader streams as a replica and is synchronous again"))
    for proxy in topology.haproxies:
        if proxy.name in wanted:
            steps.append(Step(RESTART, proxy.name, Role.HAPROXY,
                              "clients reconnect after a short outage; wait until both ports route again"))
    return steps


def plan_text(steps: list[Step]) -> str:
    if not steps:
        return "nothing to roll: every node runs with the files, settings and image rendered on the host."
    return "\n".join(f"  {i}. {s.title()}" for i, s in enumerate(steps, 1))
