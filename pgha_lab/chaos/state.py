"""The cluster state that decides what Patroni does after a fault: one snapshot of the `/sync` key,
every member's role, state, timeline, lag and tags, and the settings Patroni reads from the DCS
(synchronous mode and its strictness, failsafe mode, maximum lag on failover)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pgha_lab.probes import Cluster, Member

DEFAULT_MAX_LAG = 1048576   # Patroni's maximum_lag_on_failover default, in bytes


@dataclass(frozen=True)
class MemberState:
    name: str
    role: str                      # leader, sync_standby, replica, ...
    state: str                     # running, streaming, stopped, starting, ...
    timeline: int | None = None
    lag: int | None = None         # bytes behind the leader; None when Patroni says "unknown"
    nofailover: bool = False
    failover_priority: int | None = None

    @property
    def may_promote(self) -> bool:
        """What the member's own tags allow: nofailover, or failover_priority 0, forbid it."""
        return not self.nofailover and self.failover_priority != 0


@dataclass(frozen=True)
class ClusterState:
    """One reading of everything Patroni's failover rules look at."""
    members: tuple[MemberState, ...]
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
    config: dict[str, Any] = field(default_factory=dict, compare=False)   # Patroni's dynamic configuration as read

    def member(self, name: str) -> MemberState | None:
        return next((m for m in self.members if m.name == name), None)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]


def parse_lag(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def member_state(m: Member) -> MemberState:
    tags = m.tags or {}
    priority = tags.get("failover_priority")
    return MemberState(name=m.name, role=m.role.value, state=m.state, timeline=m.timeline,
                       lag=parse_lag(m.lag if m.lag is not None else m.receive_lag),
                       nofailover=bool(tags.get("nofailover", False)),
                       failover_priority=int(priority) if isinstance(priority, (int, str)) and str(priority).isdigit() else None)


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
             down: frozenset[str] = frozenset()) -> ClusterState:
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
        timeline=cluster.timeline, down=down, config=dict(config))


def read(ctx, cluster: Cluster | None = None, config: dict[str, Any] | None = None) -> ClusterState:
    """Read the state now: Patroni's /cluster (unless given), the /sync key from etcd, the dynamic
    configuration (unless given) from etcd's /config key, else from the first db node whose REST API
    answers, and which db containers run."""
    cluster = ctx.cluster() if cluster is None else cluster
    _, sync_value = ctx.probe.etcd_read(f"/service/{ctx.topology.scope}/sync")
    if config is None:
        # The /config key is what every Patroni reads; it stays readable with every db node down.
        _, text = ctx.probe.etcd_read(f"/service/{ctx.topology.scope}/config")
        try:
            config = json.loads(text) if text else {}
        except ValueError:
            config = {}
    if not config:
        for node in ctx.topology.db:
            code, doc = ctx.probe.rest(node, "/config")
            if code == 200 and isinstance(doc, dict):
                config = doc
                break
    down = frozenset(n.name for n in ctx.topology.db if not ctx.docker.state(n).running)
    return snapshot(cluster, sync_value, config, down)
