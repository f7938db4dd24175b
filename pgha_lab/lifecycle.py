"""Bringing a lab up and down with docker compose, and waiting until it is really healthy."""
from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from pgha_lab import health
from pgha_lab.errors import LabError
from pgha_lab.paths import LabPaths
from pgha_lab.probes import LabProbe
from pgha_lab.term.progress import Progress
from pgha_lab.topology import Topology

UP_DEADLINE_S = 240.0      # first boot: initdb, a base backup, and TLS everywhere
POLL_S = 0.5


def compose_cmd(paths: LabPaths, topo: Topology, *args: str) -> list[str]:
    return ["docker", "compose", "-p", topo.project, "-f", str(paths.compose_file), *args]


def run_compose(paths: LabPaths, topo: Topology, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(compose_cmd(paths, topo, *args), capture_output=True, text=True)
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise LabError(f"docker compose {args[0]} failed:\n{tail}")
    return proc


def container_logs(topo: Topology, node: str, lines: int = 30) -> str:
    proc = subprocess.run(["docker", "logs", "--tail", str(lines), topo.container_name(node)],
                          capture_output=True, text=True)
    return (proc.stdout + proc.stderr).strip()


def running_containers(topo: Topology) -> dict[str, str]:
    """node name -> container state for this lab's containers that exist."""
    proc = subprocess.run(["docker", "ps", "-a", "--filter", f"label=pgha-lab.project={topo.project}",
                           "--format", '{{.Label "pgha-lab.node"}} {{.State}}'], capture_output=True, text=True)
    out = {}
    for line in proc.stdout.splitlines():
        name, _, state = line.partition(" ")
        if name:
            out[name] = state
    return out


def lab_volumes(topo: Topology) -> set[str]:
    proc = subprocess.run(["docker", "volume", "ls", "-q", "--filter",
                           f"label=com.docker.compose.project={topo.project}"], capture_output=True, text=True)
    return set(proc.stdout.split())


def check_ports_free(topo: Topology) -> None:
    """Refuse, before anything starts, a published port that something else holds."""
    if not topo.published.enabled:
        return
    ours = set()
    if running_containers(topo).get(topo.haproxy.name) == "running":
        proc = subprocess.run(["docker", "port", topo.container_name(topo.haproxy)], capture_output=True, text=True)
        ours = {line.rsplit(":", 1)[-1] for line in proc.stdout.splitlines()}
    for host_port, _ in topo.published.as_pairs(topo.ports):
        if str(host_port) in ours:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((topo.published.bind, host_port))
            except OSError:
                raise LabError(f"port {host_port} on {topo.published.bind} is already taken; free it or choose "
                               f"another with --publish-ports (e.g. --publish-ports 15432,15433,18404).") from None


def check_stale_dcs(topo: Topology) -> None:
    """Empty data nodes beside an etcd that remembers the cluster would wait for a leader forever."""
    vols = lab_volumes(topo)
    etcd_vols = {f"{topo.project}_{n.name}-data" for n in topo.etcd}
    db_vols = {f"{topo.project}_{n.name}-data" for n in topo.db}
    if etcd_vols & vols and not db_vols & vols:
        raise LabError("etcd still holds this lab's cluster but every db node's data is gone, so Patroni would wait "
                       "for a leader forever; run `pgha-lab down --volumes` to start clean.")


@dataclass
class Wait:
    title: str
    check: Callable[[], health.Verdict]


def wait_for(progress: Progress, waits: list[Wait], topo: Topology, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    for w in waits:
        with progress.step(w.title):
            while True:
                verdict = w.check()
                if verdict.ok:
                    progress.detail(verdict.reason)
                    break
                progress.detail(verdict.reason)
                if time.monotonic() > end:
                    culprit = verdict.culprit
                    logs = f"\n--- last lines of {culprit}'s log ---\n{container_logs(topo, culprit)}" if culprit else ""
                    raise LabError(f"the lab did not become healthy in {deadline_s:.0f}s: {verdict.reason}.{logs}")
                time.sleep(POLL_S)


def health_waits(probe: LabProbe, topo: Topology) -> list[Wait]:
    expected = [n.name for n in topo.db]

    def patroni() -> health.Verdict:
        return health.assess_patroni(probe.members(), expected)

    def haproxy() -> health.Verdict:
        members = probe.members()
        leader = health.leader_of(members)
        replicas = [m.name for m in members if m.role != "leader"]
        return health.assess_haproxy(probe.haproxy(), leader, replicas)

    return [
        Wait("Waiting for etcd: every member healthy, one leader", lambda: health.assess_etcd(probe.etcd())),
        Wait("Waiting for Patroni: one leader, replicas streaming, a synchronous standby", patroni),
        Wait("Waiting for HAProxy: 5432 to the leader, 5433 to the replicas", haproxy),
    ]


def start(paths: LabPaths, topo: Topology, progress: Progress) -> None:
    with progress.step(f"Starting {len(topo.nodes)} nodes"):
        run_compose(paths, topo, "up", "-d", "--remove-orphans")


def down(paths: LabPaths, topo: Topology, volumes: bool, progress: Progress) -> None:
    if not paths.compose_file.exists():
        raise LabError(f"there is no lab {topo.project!r} here ({paths.compose_file} is missing); nothing to stop.")
    title = "Removing nodes, network and data volumes" if volumes else "Stopping nodes (data volumes kept)"
    with progress.step(title):
        args = ["down", "--remove-orphans"] + (["--volumes"] if volumes else [])
        run_compose(paths, topo, *args)
    if volumes:   # the next up bootstraps a new cluster, with the profile it is given then
        from pgha_lab.render import BOOTSTRAP_PROFILE_FILE
        (paths.state / BOOTSTRAP_PROFILE_FILE).unlink(missing_ok=True)

