"""The rendered configs against the real programs in the lab's images: Patroni's validator,
`haproxy -c`, and a real etcd cluster started from its rendered settings on a test bridge."""
from __future__ import annotations

import socket
import ssl
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass

import docker.errors
import pytest
import requests
from docker.types import EndpointConfig, IPAMConfig, IPAMPool
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

from pgha_lab import node_paths, profiles, secrets, tls

from pgha_lab import render
from pgha_lab.paths import LabPaths
from pgha_lab.topology import Topology

pytestmark = pytest.mark.docker
LABEL = {"org.pgha-lab.test": "rendered"}

# Candidate subnets for the test's own bridge: private, away from the lab's 192.168.56.0/24 and
# Docker's default pools; the first one the engine accepts (no overlap on this host) is used.
CANDIDATE_SUBNETS = [f"10.231.{i}.0/24" for i in range(10, 30)]


def _node(image: str, paths: LabPaths, node) -> DockerContainer:
    """A container of `image` with the node's rendered files and TLS material mounted as the lab mounts them."""
    container = DockerContainer(image)
    for name, target in render.node_mounts(node):
        container.with_volume_mapping(paths.node_dir(node.name) / name, target)
    return container.with_volume_mapping(paths.node_dir(node.name) / "tls", node_paths.TLS_MOUNT)


def _on_network(network: Network, address, *, api_version: str, **kwargs) -> dict:
    """Container kwargs for a fixed address on `network` (testcontainers' with_network gives aliases, not addresses)."""
    endpoint = EndpointConfig(api_version, ipv4_address=str(address))
    return {"network": network.name, "networking_config": {network.name: endpoint}, **kwargs}


def _exit_code_and_output(container: DockerContainer, timeout: float = 120) -> tuple[int, str]:
    """Run the container to completion; its exit code and its output as one stream."""
    with container:
        ran = container.get_wrapped_container()
        return ran.wait(timeout=timeout)["StatusCode"], ran.logs().decode(errors="replace")


def test_rendered_haproxy_cfg_passes_haproxy_check(built_images, tmp_path):
    paths, topo = LabPaths(home=tmp_path), Topology.build(db_nodes=3)
    render.write_lab(paths, topo, profiles.SEED)
    check = (_node(built_images["haproxy"], paths, topo.haproxy).with_kwargs(network="none", labels=LABEL)
             .with_command(["haproxy", "-c", "-f", node_paths.HAPROXY_CONFIG]))
    code, out = _exit_code_and_output(check)
    assert code == 0, out
    assert "Configuration file is valid" in out
    assert "WARNING" not in out


# -- a real etcd cluster from its rendered settings -------------------------------------------
@dataclass
class EtcdCluster:
    paths: LabPaths
    topo: Topology
    network: Network
    members: list[DockerContainer]   # in topo.etcd's order


def _test_network(project: str) -> tuple[Topology, Network]:
    """An internal bridge on the first candidate subnet the engine accepts, and the topology on it."""
    for subnet in CANDIDATE_SUBNETS:
        topo = Topology.build(project=project, subnet=subnet)
        network = Network(docker_network_kw={
            "driver": "bridge", "internal": True, "labels": LABEL,
            "ipam": IPAMConfig(pool_configs=[IPAMPool(subnet=subnet, gateway=str(topo.host_address))])})
        network.name = topo.network_name   # the lab's own name, so a leftover says whose it is
        try:
            return topo, network.create()
        except docker.errors.APIError as exc:
            if "overlap" not in str(exc).lower():
                pytest.fail(f"cannot create the test network: {exc}", pytrace=False)
    pytest.fail(f"every candidate subnet overlaps a network on this host: {CANDIDATE_SUBNETS}", pytrace=False)


@pytest.fixture(scope="module")
def etcd_cluster(docker_client, built_images, tmp_path_factory):
    """Three etcd members on a bridge of the test's own, started from rendered files; removed after."""
    project = f"pgha-t{uuid.uuid4().hex[:8]}"
    api_version = docker_client.api.api_version
    with ExitStack() as cleanup:
        topo, network = _test_network(project)
        cleanup.callback(network.remove)
        paths = LabPaths(home=tmp_path_factory.mktemp("etcdlab"), project=project)
        render.write_lab(paths, topo, profiles.SEED)
        members = []
        for m in topo.etcd:
            member = (_node(built_images["etcd"], paths, m).with_name(topo.container_name(m))
                      .with_kwargs(**_on_network(network, m.address, api_version=api_version,
                                                 hostname=m.name, labels=LABEL)))
            # Started without a wait strategy: a member is ready only once a quorum of them runs.
            members.append(cleanup.enter_context(member))
        member_ready = LogMessageWaitStrategy("ready to serve client requests").with_startup_timeout(90)
        for member in members:   # fails at once, not at the deadline, if a member exits instead
            try:
                member_ready.wait_until_ready(member)
            except RuntimeError as exc:   # testcontainers names the exit code only: the log says why
                exc.add_note(member.get_wrapped_container().logs().decode(errors="replace")[-2000:])
                raise
        client = tls.host_client(paths)
        for m in topo.etcd:   # every test starts from a cluster that answers
            _wait_healthy(f"https://{m.address}:{topo.ports.etcd_client}/health", client)
        yield EtcdCluster(paths, topo, network, members)


def _wait_healthy(url: str, client: tls.ClientFiles, deadline_s: float = 90) -> requests.Response:
    deadline = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            r = requests.get(url, cert=(str(client.cert), str(client.key)), verify=str(client.ca), timeout=3)
            if r.status_code == 200 and r.json().get("health") == "true":
                return r
            last = f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.5)   # poll interval, bounded by the deadline
    pytest.fail(f"{url} not healthy within {deadline_s}s: {last}", pytrace=False)


def test_etcd_members_serve_tls_with_the_lab_ca_and_form_one_cluster(etcd_cluster):
    paths, topo = etcd_cluster.paths, etcd_cluster.topo
    client = tls.host_client(paths)
    for m in topo.etcd:
        _wait_healthy(f"https://{m.address}:{topo.ports.etcd_client}/health", client)
    # The gRPC gateway Patroni's etcd3 client speaks to: on, and the peers (TLS too) agree.
    first = topo.etcd[0]
    r = requests.post(f"https://{first.address}:{topo.ports.etcd_client}/v3/cluster/member/list", json={},
                      cert=(str(client.cert), str(client.key)), verify=str(client.ca), timeout=5)
    assert r.status_code == 200, r.text
    members = r.json()["members"]
    assert sorted(mm["name"] for mm in members) == [m.name for m in topo.etcd]
    assert all(u.startswith("https://") for mm in members for u in mm["peerURLs"] + mm["clientURLs"])
    # `ectl` on a member: its rendered env file and the etcdctl certificate work over loopback and the network.
    health = etcd_cluster.members[0].exec(["ectl", "endpoint", "health", "--cluster"])
    out = health.output.decode(errors="replace")   # stdout and stderr: etcdctl reports on stderr
    assert health.exit_code == 0, out
    assert out.count("is healthy") == len(topo.etcd)


def test_etcd_refuses_a_client_without_a_certificate(etcd_cluster):
    paths, topo = etcd_cluster.paths, etcd_cluster.topo
    client = tls.host_client(paths)
    m = topo.etcd[0]
    _wait_healthy(f"https://{m.address}:{topo.ports.etcd_client}/health", client)
    ctx = ssl.create_default_context(cafile=str(client.ca))   # trusts the lab CA, shows no certificate
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        with socket.create_connection((str(m.address), topo.ports.etcd_client), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=str(m.address)) as conn:
                # TLS 1.3 reports a missing client certificate on the first read, not in the handshake.
                conn.sendall(f"GET /health HTTP/1.1\r\nHost: {m.address}\r\n\r\n".encode())
                answer = conn.recv(1024)
                if not answer:
                    raise ConnectionResetError("closed without an answer")
    # and one whose certificate comes from another CA is refused too
    stranger = LabPaths(home=paths.home / "stranger", project=paths.project)
    tls.ensure(stranger, topo)
    other = tls.host_client(stranger)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{m.address}:{topo.ports.etcd_client}/health",
                     cert=(str(other.cert), str(other.key)), verify=str(client.ca), timeout=5)


@pytest.mark.parametrize("profile", sorted(profiles.PROFILES))
def test_every_rendered_patroni_config_passes_patronis_validator(docker_client, built_images, etcd_cluster, profile):
    """`patroni --validate-config` on each db node's own address, with the etcd members it
    names up and reachable (the validator connects to every DCS host)."""
    paths, topo = etcd_cluster.paths, etcd_cluster.topo
    render.write_lab(paths, topo, profiles.get(profile))
    for db in topo.db:
        validate = (_node(built_images["dbnode"], paths, db).with_envs(**secrets.load(paths).env())
                    .with_kwargs(**_on_network(etcd_cluster.network, db.address,
                                               api_version=docker_client.api.api_version, labels=LABEL))
                    .with_command(["patroni", "--validate-config", node_paths.PATRONI_CONFIG]))
        code, out = _exit_code_and_output(validate)
        assert code == 0, f"{db.name} ({profile}): {out}"
