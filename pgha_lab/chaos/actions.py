"""`Chaos`: a fault of the catalogue (chaos/catalogue.py) acting on one lab. Every request is checked
first; an impossible one is refused with a reason and changes nothing. The faults themselves, their
refusals and expected outcomes are the catalogue's entries; this module resolves the target, reads
the one view they act on, and puts every node back (heal-all)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pgha_lab import disks, vip
from pgha_lab.chaos import catalogue, cluster_state, expectations
from pgha_lab.chaos.catalogue import NO_OWN_DISK
from pgha_lab.chaos.fault import DB_NODE, HAPROXY_NODE, NO_NODE, Act, Done, Options, Outcome
from pgha_lab.chaos.fault import wait as wait  # re-exported: the front ends import it from here
from pgha_lab.chaos.network import Network

# Re-exported for the callers (and tests) that read them here; chaos/nodes.py owns them.
from pgha_lab.chaos.nodes import CHAIN_IN as CHAIN_IN
from pgha_lab.chaos.nodes import LOSS_IN as LOSS_IN
from pgha_lab.chaos.nodes import LOSS_OUT as LOSS_OUT
from pgha_lab.chaos.nodes import NodeReader
from pgha_lab.chaos.nodes import parse_rate as parse_rate
from pgha_lab.chaos.nodes import slow_rate as slow_rate
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.probes import Cluster
from pgha_lab.topology import Node, Role, TopologyError


def __getattr__(name: str):
    # Read from the catalogue when asked, so a fault registered later is in them too.
    if name == "ACTIONS":
        return tuple(catalogue.chaos_names())
    if name == "NO_TARGET":   # with one HAProxy the target goes without saying
        return tuple(f.name for f in catalogue.CATALOGUE.values() if f.chaos and f.takes in (HAPROXY_NODE, NO_NODE))
    raise AttributeError(name)


class Chaos:
    """The fault catalogue acting on one lab."""

    def __init__(self, ctx: LabContext) -> None:
        self.ctx = ctx
        self.topo = ctx.topology
        self.ctl = ctx.docker
        self.read = NodeReader(ctx)
        self.net = Network(ctx, self.read)

    # -- targets and roles -----------------------------------------------------------------
    def role_of(self, node: Node, cluster: Cluster | None = None) -> str:
        if node.role is Role.HAPROXY and self.topo.haproxy2 is not None:
            return "VIP holder" if node.name in vip.holders(self.ctx) else "VIP backup"
        if node.role is not Role.DB:
            return node.role.value
        cluster = self.ctx.cluster() if cluster is None else cluster
        return cluster.role_of(node.name)

    def resolve(self, target: str, cluster: Cluster | None = None) -> Node:
        """A node name, or `leader` / `replica` resolved now from Patroni's view (`cluster`, when
        the caller has just read it)."""
        if target in ("leader", "replica"):
            cluster = self.ctx.cluster() if cluster is None else cluster
            if target == "leader":
                if cluster.leader is None:
                    raise LabError("there is no leader right now to target; `pgha-lab status` shows the cluster.")
                return self.topo.node(cluster.leader.name)
            replicas = [m for m in cluster.replicas if m.role.is_replica]
            if not replicas:
                raise LabError("there is no replica right now to target; `pgha-lab status` shows the cluster.")
            return self.topo.node(replicas[0].name)
        try:
            return self.topo.node(target)
        except TopologyError as exc:
            raise LabError(f"{exc} (or `leader` / `replica`)") from None

    def _haproxy_target(self, action: str, target: str | None, boots: bool = False) -> str:
        topo = self.topo
        names = [n.name for n in topo.haproxies]
        if topo.haproxy2 is None:
            if target in (None, "", topo.haproxy.name):
                return topo.haproxy.name
            if target == f"{topo.prefix}haproxy2":
                raise LabError(vip.ONE_HAPROXY)
            raise LabError(f"{action} takes no target (or {topo.haproxy.name}): the lab has one HAProxy.")
        if target in names:
            return target
        if target:
            raise LabError(f"{action} takes {' or '.join(names)} (or no target), not {target!r}.")
        if not boots:   # the fault worth drilling: the VIP's holder
            return next(iter(vip.holders(self.ctx)), topo.haproxy.name)
        return next((n for n in names if not self.ctl.state(topo.node(n)).running), topo.haproxy.name)

    # -- the faults ------------------------------------------------------------------------
    def run(self, action: str, target: str | None, **options) -> Outcome:
        """Inject the catalogue's fault `action` on `target` (its own default when None); options are
        the CLI's flags (peers, clear, loss, delay, rate, every, duration, leave)."""
        fault = catalogue.get(action)
        if fault is None:
            raise LabError(f"unknown chaos action {action!r}; choose one of: {', '.join(catalogue.chaos_names())}, "
                           f"{catalogue.HEAL_ALL}.")
        opts = Options(**{**fault.options, **{k: v for k, v in options.items() if v is not None}})
        target = fault.target if target is None else target
        act = Act(self.ctx, fault, opts, self.read, self.net, self.run, self.peers, target=target)
        if fault.takes == NO_NODE:
            return self._outcome(act, fault.inject(act))
        if fault.takes == HAPROXY_NODE:   # refused before anything is read or changed
            target = self._haproxy_target(action, target, fault.boots)
        if fault.needs_disks:
            act.need(self.topo.db_disk_size is not None, NO_OWN_DISK)
        cluster = self.ctx.cluster()   # one reading: the target and its role come from the same view
        node = self.resolve(target or "", cluster)
        act.node, act.cluster, act.role, act.state = node, cluster, self.role_of(node, cluster), self.ctl.state(node)
        if act.state.status == "missing":
            raise LabError(f"{node.name} has no container; start the lab with `pgha-lab up`.")
        if fault.takes == DB_NODE:
            act.need(node.role is Role.DB, f"{node.name} runs no PostgreSQL or Patroni; {action} takes a db node")
        if fault.in_node_network:
            act.need(node.role is not Role.HAPROXY,
                     f"{node.name} has no iptables inside to {action} it with; cut it whole with `chaos "
                     f"isolate {node.name}`, or cut a db node off from it with `chaos partition DBNODE --from "
                     f"{node.name}`")
        # The state that decides what follows, read before the fault changes it (the settings and
        # the /sync key may not be readable afterwards, e.g. with every db node down).
        act.before = cluster_state.read(self.ctx, cluster) if node.role is not Role.HAPROXY else None
        done = fault.inject(act)
        if done.expectation is None:
            done.expectation = act.expectation()
        if self.topo.bare and fault.boots:   # a VM's boot comes first
            done.expectation = expectations.boots_through_systemd(self.ctx, node, done.expectation)
        return self._outcome(act, done)

    @staticmethod
    def _outcome(act: Act, done: Done) -> Outcome:
        return Outcome(action=act.fault.name, node=done.node or (act.node.name if act.node else ""),
                       role_before=done.role or act.role, done=done.text,
                       expectation=done.expectation or act.expectation(), figures=done.figures,
                       extra_targets=done.extra_targets)

    def heal_all(self) -> list[str]:
        """Put every node back: free its disk, thaw, boot, reconnect, and drop every chaos rule. Disks
        and containers first for every node (what clients wait on), then the slower checks inside each
        node; nodes heal independently, so each phase runs on every node at once."""
        nodes = list(self.topo.nodes)
        freed = [f"freed {d.node}'s disk ({disks.human(disks.free(d))} filler removed)"
                 for d in disks.all_disks(self.ctx.paths) if d.filler_size()]
        states = {node.name: self.ctl.state(node) for node in nodes}
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            outside = list(pool.map(lambda n: self._heal_container(n, states[n.name]), nodes))
            inside = list(pool.map(lambda n: self._heal_inside(n) if states[n.name].status != "missing" else [],
                                   nodes))
        return freed + [line for lines in outside + inside for line in lines]

    def _heal_container(self, node: Node, state) -> list[str]:
        actions: list[str] = []
        if state.status == "missing":
            return actions
        if state.status == "paused":
            self.ctl.unpause(node)
            actions.append(f"resumed {node.name}")
        if state.status in ("exited", "created"):
            self.ctl.start(node)
            actions.append(f"started {node.name}")
        if not state.on_lab_network:
            self.ctl.connect(node, str(node.address))
            actions.append(f"reconnected {node.name}")
        return actions

    def _heal_inside(self, node: Node) -> list[str]:
        actions: list[str] = []
        if not self.ctl.state(node).running:
            return actions
        inside = self.read.inside(node)
        if node.role is Role.DB and inside.stopped_pids:   # a frozen Patroni or a hung PostgreSQL
            self.ctl.exec(node, "kill", "-CONT", *map(str, inside.stopped_pids))
            actions.append(f"thawed {len(inside.stopped_pids)} stopped process(es) on {node.name}")
        if inside.has_chaos_rules or inside.has_qdisc:
            self.net.clear_all(node)
            actions.append(f"cleared {node.name}'s network faults")
        return actions

    # -- helpers -----------------------------------------------------------------------------
    def peers(self, node: Node, spec: str | None) -> list[Node]:
        """--from etcd | NODE[,NODE...]: the nodes to cut `node` off from."""
        if not spec:
            raise LabError("partition needs --from etcd or --from NODE[,NODE] (or --clear).")
        out: list[Node] = []
        for part in spec.split(","):
            part = part.strip()
            if part == "etcd":
                out.extend(self.topo.etcd)
            else:
                out.append(self.resolve(part))
        out = [n for n in dict.fromkeys(out) if n != node]
        if not out:
            raise LabError(f"--from {spec} leaves no node to cut {node.name} off from.")
        return out

    # -- readings, for the callers that had them here (chaos/nodes.py reads them) ------------
    def network_faults(self, node: Node) -> set[str]:
        return self.read.network_faults(node)

    def slow_links(self, queues: dict[str, str] | None = None) -> dict[str, int]:
        return self.read.slow_links(queues)

    def netem_available(self, node: Node) -> bool:
        return self.read.netem_available(node)
