"""The dashboard's reading of the lab: one LabView per tick (container states, Patroni, etcd, the
leader key, HAProxy's routing, chaos rules), read in parallel once for every viewer, and the events
that tell one view from the next (pure, so the event log can be tested without a lab)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from pgha_lab import health
from pgha_lab.chaos.nodes import NodeReader
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.gateway import ContainerState
from pgha_lab.probes import Backend, Cluster, EtcdEndpoint, freshest
from pgha_lab.topology import DEFAULT_PROJECT, Node, Role

PROBE_TIMEOUT_S = 1.0    # a tick must not wait on one dead node longer than this
STALE_CLUSTER_S = 2.0    # how long Patroni's last answer stands in when a reading gets none
ROUTE_PORTS = {health.PRIMARY_BACKEND: "5432", health.REPLICA_BACKEND: "5433"}


@dataclass
class NodeView:
    name: str
    kind: str                   # etcd, dbnode, haproxy
    address: str
    status: str                 # docker's: running, paused, exited, created, restarting, missing
    on_lab_network: bool
    faults: list[str] = field(default_factory=list)   # partitioned, degraded, slow link (chaos iptables/tc)
    patroni_role: str = ""      # leader, sync_standby, replica ... ("" when Patroni does not list it)
    patroni_state: str = ""     # running, streaming, stopped ...
    timeline: int | None = None
    lag: Any = None             # bytes behind the leader, as Patroni's /cluster says
    etcd_leader: bool = False
    etcd_error: str = ""

    @property
    def state(self) -> str:
        """The one word the map shows: stopped, paused, isolated, partitioned or running."""
        word = ContainerState(self.status, self.on_lab_network).condition
        return "partitioned" if word == "running" and "partitioned" in self.faults else word

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state}


@dataclass
class LabView:
    at: float                               # wall-clock time of the reading
    project: str
    up: bool                                # any node container exists and runs
    message: str = ""                       # what to do when it is not up
    nodes: list[NodeView] = field(default_factory=list)
    leader: str | None = None               # Patroni's leader (None: none, or two)
    leader_key: str | None = None           # etcd's /service/<scope>/leader value
    leader_key_read: bool = False           # False: no etcd member answered
    timeline: int | None = None
    etcd_leader: str | None = None
    etcd_health: str = ""
    etcd_ok: bool = False
    routes: dict[str, list[str]] = field(default_factory=dict)   # "5432" -> servers HAProxy has UP
    backends: list[dict[str, Any]] = field(default_factory=list)
    healthy: bool = False
    health: str = ""                        # health.assess_lab's reason, or Docker's word on a node that is down
    writes_ok: bool = False                 # health.write_path: somebody takes writes through 5432
    writes: str = ""                        # ... its sentence ("no leader: writes are refused (...)")
    read_s: float = 0.0                     # how long the reading took (shown; the bench splits delays with it)

    def node(self, name: str) -> NodeView | None:
        return next((n for n in self.nodes if n.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["nodes"] = [n.as_dict() for n in self.nodes]
        return doc


def up_hint(project: str) -> str:
    return "pgha-lab up" if project == DEFAULT_PROJECT else f"pgha-lab --project {project} up"


def page_title(project: str) -> str:
    """The page's heading: the tool, and the lab's name when it is not the default one."""
    return "pgha-lab" if project == DEFAULT_PROJECT else f"pgha-lab: {project}"


def first_reading(view: LabView) -> str:
    if not view.up:
        return f"the lab is down: {view.message}"
    return (f"first reading: leader {view.leader or '(none)'}, timeline {view.timeline or '?'}, "
            f"etcd leader {view.etcd_leader or '(none)'}, {'healthy' if view.healthy else 'unhealthy: ' + view.health}")


def changes(before: LabView | None, after: LabView) -> list[tuple[str, str]]:
    """(kind, text) for everything the event log shows that differs between two readings: node states,
    Patroni roles, the leader key, the timeline, etcd's leader, HAProxy servers going UP or DOWN."""
    if before is None:
        return []
    out: list[tuple[str, str]] = []
    if before.up != after.up:
        out.append(("lab", "the lab is running" if after.up else f"the lab is down: {after.message}"))
    for node in after.nodes:
        old = before.node(node.name)
        if old is None:
            continue
        if old.state != node.state:
            out.append(("node", f"{node.name}: {old.state} -> {node.state}"))
        if node.kind == Role.DB.value and old.patroni_role != node.patroni_role:
            # A node Patroni no longer lists (powered off, cut off) is "gone", not a role change to "".
            out.append(("role", f"{node.name}: {_role(old.patroni_role)} -> {_role(node.patroni_role)}"))
    if before.leader_key_read and after.leader_key_read and before.leader_key != after.leader_key:
        out.append(("leader-key", f"leader key: {before.leader_key or '(none)'} -> {after.leader_key or '(none)'}"))
    if before.timeline is not None and after.timeline is not None and before.timeline != after.timeline:
        out.append(("timeline", f"timeline {before.timeline} -> {after.timeline}"))
    if before.etcd_leader != after.etcd_leader and (before.etcd_leader or after.etcd_leader):
        out.append(("etcd", f"etcd leader: {before.etcd_leader or '(none)'} -> {after.etcd_leader or '(none)'}"))
    old_status = {(b["backend"], b["server"]): b["status"] for b in before.backends}
    for b in after.backends:
        was = old_status.get((b["backend"], b["server"]))
        if was is not None and _up(was) != _up(b["status"]):
            port = ROUTE_PORTS.get(b["backend"], b["backend"])
            out.append(("haproxy",
                        f"HAProxy {port} ({b['backend']}): {b['server']} {'UP' if _up(b['status']) else 'DOWN'}"))
    return out


def _role(role: str) -> str:
    return role.replace("_", " ") if role else "gone"


def _up(status: str) -> bool:
    return status.startswith("UP")


class LabReader:
    """Reads one lab into LabViews. Only nodes that can answer are asked (a stopped, frozen or
    unplugged node would make every tick wait for a timeout), and they are asked in parallel."""

    def __init__(self, ctx: LabContext, faults_every_s: float = 5.0) -> None:
        self.ctx = ctx
        self.topo = ctx.topology
        self.nodes = NodeReader(ctx)
        self.faults_every_s = faults_every_s
        self._faults: dict[str, list[str]] = {}
        self._faults_read_at = 0.0
        self._faults_due = threading.Event()
        self._faults_jobs: dict[str, Future] = {}
        self._last_states: dict[str, ContainerState] | None = None
        self._last_cluster: tuple[Cluster, float] | None = None
        # Probes and the slow chaos-rule execs get pools of their own, so a tick never queues behind an exec.
        self._pool = ThreadPoolExecutor(max_workers=12, thread_name_prefix="dashboard-probe")
        self._exec_pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="dashboard-exec")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._exec_pool.shutdown(wait=False, cancel_futures=True)

    def recheck_faults(self) -> None:
        """Read the chaos rules on the next tick (after an action), not at the next slow round."""
        self._faults_due.set()

    def read(self) -> LabView:
        project = self.ctx.project
        now = time.time()
        if not self.ctx.paths.topology_file.exists():
            return LabView(now, project, False,
                           f"there is no lab {project!r} here yet; start it with `{up_hint(project)}`.")
        # Docker's view and the services' are read at the same time; which nodes to ask comes from the
        # previous tick's Docker view (a tick costs the slower of the two, not their sum).
        inspect = self._pool.submit(self._states)
        previous = self._last_states or inspect.result()
        if not any(s.running for s in previous.values()):
            return self._down(inspect.result())

        def reachable(node: Node) -> bool:
            s = previous[node.name]
            return s.running and s.on_lab_network

        probe = self.ctx.probe
        clusters = {n.name: self._pool.submit(probe.rest, n, "/cluster", PROBE_TIMEOUT_S)
                    for n in self.topo.db if reachable(n)}
        etcd = {n.name: self._pool.submit(probe.etcd_status, n) for n in self.topo.etcd if reachable(n)}
        key = self._pool.submit(probe.etcd_read, probe.leader_key_path, PROBE_TIMEOUT_S) if etcd else None
        haproxy = self._pool.submit(probe.haproxy, PROBE_TIMEOUT_S) if reachable(self.topo.haproxy) else None
        states = self._last_states = inspect.result()
        if not any(s.running for s in states.values()):
            return self._down(states)
        faults = self._read_faults(states)

        cluster = Cluster.of([])
        fresh = freshest({name: job.result() for name, job in clusters.items()})   # each within PROBE_TIMEOUT_S
        if fresh is not None:
            cluster = fresh
            self._last_cluster = (cluster, time.monotonic())
        elif clusters and self._last_cluster and time.monotonic() - self._last_cluster[1] < STALE_CLUSTER_S:
            # Asked, but no answer in time (a busy machine): one missed reading is not "every member gone".
            cluster = self._last_cluster[0]
        endpoints = [etcd[n.name].result() if n.name in etcd else
                     EtcdEndpoint(n.name, probe.etcd_url(n), error=states[n.name].status if not states[n.name].running
                                  else "off the lab network") for n in self.topo.etcd]
        backends: list[Backend] = haproxy.result() if haproxy else []
        key_read, key_value = key.result() if key else (False, None)

        nodes = []
        for n in self.topo.nodes:
            view = self._bare(n, states[n.name])
            view.faults = faults.get(n.name, []) if view.status == "running" else []
            # A node that is down keeps its member key (and its last figures) for up to ttl: not shown.
            member = cluster.member(n.name) if view.state in ("running", "partitioned") else None
            if member is not None:
                view.patroni_role, view.patroni_state = member.role.value, member.state
                view.timeline, view.lag = member.timeline, member.lag
            ep = next((e for e in endpoints if e.name == n.name), None)
            if ep is not None:
                view.etcd_leader, view.etcd_error = ep.is_leader, ep.error
            nodes.append(view)
        etcd_verdict = health.assess_etcd(endpoints)
        verdict = health.assess_lab(endpoints, cluster, backends, [n.name for n in self.topo.db])
        down = next((f"{n.name} is {states[n.name].text()}" for n in self.topo.nodes
                     if states[n.name].condition != "running"), None)
        writes = health.write_path(cluster, states, backends if haproxy else [], answered=bool(cluster))
        etcd_leaders = [e.name for e in endpoints if e.is_leader]
        return LabView(
            at=now, project=project, up=True, nodes=nodes, leader=cluster.leader_name, leader_key=key_value,
            leader_key_read=key_read, timeline=cluster.timeline,
            etcd_leader=etcd_leaders[0] if len(etcd_leaders) == 1 else None,
            etcd_health=etcd_verdict.reason, etcd_ok=etcd_verdict.ok,
            routes=({port: health.servers_up(backends, backend) for backend, port in ROUTE_PORTS.items()}
                    if backends else {}),
            backends=[{"backend": b.backend, "server": b.server, "status": b.status, "check": b.last_check}
                      for b in backends],
            healthy=verdict.ok, health=down or verdict.reason, writes_ok=writes.ok, writes=writes.reason,
            read_s=round(time.time() - now, 3))

    def _down(self, states: dict[str, ContainerState]) -> LabView:
        self._last_states = None
        project = self.ctx.project
        return LabView(time.time(), project, False,
                       f"lab {project!r} is not running (no node container runs); start it with `{up_hint(project)}`.",
                       nodes=[self._bare(n, states[n.name]) for n in self.topo.nodes])

    def _states(self) -> dict[str, ContainerState]:
        try:
            return self.ctx.docker.states(list(self.topo.nodes))
        except OSError:   # no docker command at all
            return {n.name: ContainerState("missing", False) for n in self.topo.nodes}

    def _bare(self, node: Node, state: ContainerState) -> NodeView:
        return NodeView(node.name, node.role.value, str(node.address), state.status, state.on_lab_network)

    def _read_faults(self, states: dict[str, ContainerState]) -> dict[str, list[str]]:
        """Chaos rules need one `docker exec` per node, so they are read every few seconds (and right
        after an action from the page) rather than every tick, and in the background: a tick uses the
        last complete reading and never waits for the execs."""
        if self._faults_jobs and all(job.done() for job in self._faults_jobs.values()):
            self._faults = {name: job.result() for name, job in self._faults_jobs.items()}
            self._faults_jobs = {}
        due = self._faults_due.is_set() or time.monotonic() - self._faults_read_at >= self.faults_every_s
        if due and not self._faults_jobs:
            self._faults_due.clear()
            self._faults_read_at = time.monotonic()
            self._faults_jobs = {n.name: self._exec_pool.submit(self._faults_of, n)
                                 for n in self.topo.nodes if states[n.name].running}
        return self._faults

    def _faults_of(self, node: Node) -> list[str]:
        try:
            return sorted(self.nodes.network_faults(node))
        except LabError:   # the exec timed out: the node is busy or stuck; show no rule rather than stall
            return []


class Ticker:
    """Reads the lab every `interval_s` in its own thread and hands each view to `on_view`."""

    def __init__(self, reader: LabReader, on_view: Callable[[LabView], None], interval_s: float = 0.5) -> None:
        self.reader = reader
        self.on_view = on_view
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dashboard-ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.reader.close()

    def _loop(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                view = self.reader.read()
            except Exception as exc:   # a reading that breaks must not end the page's updates
                view = LabView(time.time(), self.reader.ctx.project, False, f"could not read the lab: {exc}")
            self.on_view(view)
            due += self.interval_s
            now = time.monotonic()
            if due < now:   # a slow tick: carry on from now rather than catch up in a burst
                due = now
            self._stop.wait(due - now)
