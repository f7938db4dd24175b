"""The cluster state that decides what Patroni does after a fault: one snapshot of the `/sync` key,
every member's role, state, timeline, lag and tags, and the settings Patroni reads from the DCS
(synchronous mode and its strictness, failsafe mode, maximum lag on failover)."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from pgha_lab import dynamic_config
from pgha_lab.chaos.nodes import CHAIN_IN, Inside, NodeReader, dropped_sources, is_patroni
from pgha_lab.dynamic_config import DEFAULT_MAX_LAG
from pgha_lab.gateway import ContainerState
from pgha_lab.probes import Cluster, Member


@dataclass(frozen=True)
class ClusterState:
    """One reading of everything Patroni's failover rules look at."""
    members: tuple[Member, ...]                # each member's lag in bytes (lag_bytes), or None
    leader: str | None
    sync_key: bool = False                     # the /sync key exists
    sync_leader: str | None = None             # /sync "leader": the primary the sync standby belongs to
    sync_standbys: tuple[str, ...] = ()        # /sync "sync_standby" (comma-separated in the key)
    synchronous_mode: bool = False
    synchronous_mode_strict: bool = False
    failsafe_mode: bool = False
    maximum_lag_on_failover: int = DEFAULT_MAX_LAG
    timeline: int | None = None
    down: frozenset[str] = field(default_factory=frozenset)   # db nodes known not to run (container state)
    # db nodes that run but cannot take part, and why, from what the lab itself did to them (isolated,
    # a frozen Patroni...): Patroni still lists them until their member key expires, so its view alone
    # would name them as candidates for up to ttl after the fault.
    impaired: tuple[tuple[str, str], ...] = ()
    config: dict[str, Any] = field(default_factory=dict, compare=False)   # Patroni's dynamic configuration as read

    def impairment(self, name: str) -> str | None:
        return next((why for who, why in self.impaired if who == name), None)

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]


def member_state(m: Member) -> Member:
    """The member as the rules read it: its lag as a byte count (Patroni's "unknown" as None)."""
    return replace(m, lag=m.lag_bytes)


def parse_sync(value: str | None) -> tuple[bool, str | None, tuple[str, ...]]:
    """(key present, leader, sync standbys) of the /sync key's JSON."""
    if not value:
        return False, None, ()
    try:
        doc = json.loads(value)
    except ValueError:
        return False, None, ()
    standbys = doc.get("sync_standby") or ""
    names = tuple(s.strip() for s in standbys.split(",") if s.strip()) if isinstance(standbys, str) else tuple(standbys)
    return True, doc.get("leader"), names


def snapshot(cluster: Cluster, sync_value: str | None, config: dict[str, Any],
             down: frozenset[str] = frozenset(), impaired: tuple[tuple[str, str], ...] = ()) -> ClusterState:
    """The pure part: a ClusterState from what was read."""
    present, sync_leader, standbys = parse_sync(sync_value)
    lag = config.get("maximum_lag_on_failover")
    return ClusterState(
        members=tuple(member_state(m) for m in cluster.members), leader=cluster.leader_name,
        sync_key=present, sync_leader=sync_leader, sync_standbys=standbys,
        synchronous_mode=bool(config.get("synchronous_mode", False)) and config.get("synchronous_mode") != "off",
        synchronous_mode_strict=bool(config.get("synchronous_mode_strict", False)),
        failsafe_mode=bool(config.get("failsafe_mode", False)),
        maximum_lag_on_failover=int(lag) if isinstance(lag, int) else DEFAULT_MAX_LAG,
        timeline=cluster.timeline, down=down, impaired=impaired, config=dict(config))


def read(ctx, cluster: Cluster | None = None, config: dict[str, Any] | None = None) -> ClusterState:
    """Read the state now: Patroni's /cluster (unless given), the /sync key from etcd, the dynamic
    configuration (unless given) from etcd's /config key, else from the first db node whose REST API
    answers, and which db containers run."""
    cluster = ctx.cluster() if cluster is None else cluster
    _, sync_value = ctx.probe.etcd_read(f"/service/{ctx.topology.scope}/sync")
    if not config:
        # The /config key is what every Patroni reads; it stays readable with every db node down.
        config = dynamic_config.read_any(ctx.probe, ctx.topology)
    topo = ctx.topology
    containers = ctx.docker.states(topo.db)
    down = frozenset(name for name, c in containers.items() if not c.running)
    reachable = [n for n in topo.db if containers[n.name].condition == "running"]
    reader = NodeReader(ctx)
    with ThreadPoolExecutor(max_workers=max(1, len(reachable))) as pool:
        inside = dict(zip([n.name for n in reachable], pool.map(reader.inside, reachable), strict=True))
    etcd = {str(n.address) for n in topo.etcd}
    return snapshot(cluster, sync_value, config, down, impairments(containers, inside, etcd))


def impairments(containers: dict[str, ContainerState],
                inside: dict[str, Inside] | None = None,
                etcd: set[str] | None = None) -> tuple[tuple[str, str], ...]:
    """What the lab's own faults leave a db node unable to do, whatever Patroni still lists: paused
    (a frozen VM) and isolated (its cable pulled) nodes, from Docker; a frozen Patroni, a hung
    PostgreSQL (processes in state T) and a cut from every etcd member (the partition chain's DROP
    rules), from `inside`: each running node's reading from inside."""
    out = []
    for name, c in sorted(containers.items()):
        if c.condition == "paused":
            out.append((name, f"{name} is paused (frozen): it cannot reach etcd"))
        elif c.condition == "isolated":
            out.append((name, f"{name} is off the lab network (isolated): it cannot reach etcd"))
        elif inside and name in inside:
            procs, rules = inside[name].procs, inside[name].chain(CHAIN_IN)
            if any(is_patroni(ppid, proc) and st == "T" for _, ppid, st, proc in procs):
                out.append((name, f"{name}'s Patroni is frozen: it cannot take the leader key"))
            elif any(proc == "postgres" and st == "T" for _, _, st, proc in procs):
                out.append((name, f"{name}'s PostgreSQL hangs: its Patroni cannot promote it"))
            elif etcd and etcd <= dropped_sources(rules):
                out.append((name, f"{name} is cut off from every etcd member: it cannot take the leader key"))
    return tuple(out)
