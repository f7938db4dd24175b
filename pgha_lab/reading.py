"""One reading of the whole lab for `status`: Docker's view of every node first (one `docker
inspect`), then every source at once: each running db node's Patroni (/cluster, /config), every
etcd member, HAProxy, the files each node runs and the db nodes' disks. A reading costs its slowest
source, not their sum, and a node Docker says is down, frozen or unplugged is not waited on."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pgha_lab import disks, health, lab_settings, vip
from pgha_lab.context import LabContext
from pgha_lab.gateway import ContainerState
from pgha_lab.probes import Backend, Cluster, EtcdEndpoint, Member, freshest
from pgha_lab.rolling import staleness
from pgha_lab.wait import Verdict


@dataclass
class Reading:
    containers: dict[str, ContainerState]
    cluster: Cluster                    # Patroni's view, from the freshest member that answered
    answered: list[str]                 # db nodes whose REST API answered /cluster
    members: list[Member]               # every db node of the topology, Docker's state where Patroni cannot say
    writes: Verdict                     # health.write_path: who takes writes, or "no leader: writes are refused"
    etcd: list[EtcdEndpoint]
    haproxy: list[Backend]
    live_settings: lab_settings.LabSettings | None   # what Patroni's /config says now
    stale: list[staleness.NodeFiles] = field(default_factory=list)
    haproxy_nodes: list[vip.ProxyState] = field(default_factory=list)
    disks: list[disks.DiskUsage] = field(default_factory=list)
    read_s: float = 0.0

    @property
    def lab_exists(self) -> bool:
        return any(s.status != "missing" for s in self.containers.values())


def take(ctx: LabContext) -> Reading:
    started = time.monotonic()
    topo, probe = ctx.topology, ctx.probe
    containers = ctx.docker.states(list(topo.nodes))

    def reachable(name: str) -> bool:
        return containers[name].condition == "running"

    db_up = [n for n in topo.db if reachable(n.name)]
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="status") as pool:
        clusters = {n.name: pool.submit(probe.rest, n, "/cluster") for n in db_up}
        config = pool.submit(lab_settings.read_live, probe, topo, db_up)
        etcd = {n.name: pool.submit(probe.etcd_status, n) for n in topo.etcd if reachable(n.name)}
        haproxy = pool.submit(probe.haproxy)
        stale = pool.submit(staleness.stale_nodes, ctx, None, containers)
        proxies = pool.submit(vip.proxies, ctx)
        used = pool.submit(disks.usage, ctx.paths, topo)
        answers = {name: job.result() for name, job in clusters.items()}
        endpoints = [etcd[n.name].result() if n.name in etcd else
                     EtcdEndpoint(n.name, probe.etcd_url(n), error=containers[n.name].condition)
                     for n in topo.etcd]
        backends = haproxy.result()
        live = config.result()
        snap_stale, snap_proxies, snap_disks = stale.result(), proxies.result(), used.result()
    cluster = freshest(answers)
    answered = [name for name, (code, _) in answers.items() if code == 200]
    view = cluster if cluster is not None else Cluster.of([])
    return Reading(
        containers=containers, cluster=view, answered=answered,
        members=health.member_rows([(n.name, str(n.address)) for n in topo.db], view, containers, answered),
        writes=health.write_path(view, containers, backends if containers[topo.haproxy.name].running else [],
                                 answered=cluster is not None),
        etcd=endpoints, haproxy=backends,
        live_settings=live,
        stale=snap_stale, haproxy_nodes=snap_proxies, disks=snap_disks, read_s=time.monotonic() - started)



def write_path(ctx: LabContext, containers: dict[str, ContainerState] | None = None) -> Verdict:
    """health.write_path from a reading of its own (each running db node's /cluster and HAProxy's
    stats, at once; `containers`: Docker's view of the db nodes, when already read): what `psql`
    asks before it connects to the primary port."""
    topo, probe = ctx.topology, ctx.probe
    containers = containers or ctx.docker.states(list(topo.db))
    db_up = [n for n in topo.db if containers[n.name].condition == "running"]
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="writes") as pool:
        clusters = {n.name: pool.submit(probe.rest, n, "/cluster") for n in db_up}
        haproxy = pool.submit(probe.haproxy)
        answers = {name: job.result() for name, job in clusters.items()}
        backends = haproxy.result()
    cluster = freshest(answers)
    return health.write_path(cluster if cluster is not None else Cluster.of([]), containers, backends,
                             answered=cluster is not None)
