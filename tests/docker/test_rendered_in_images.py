"""The rendered configs against the real programs in the lab's images: Patroni's validator,
`haproxy -c`, and a real etcd cluster started from its rendered settings on a test bridge."""
from __future__ import annotations

import socket
import ssl
import subprocess
import time
import uuid

import pytest
import requests

from pgha_lab import node_paths, profiles, tls

from pgha_lab import render
from pgha_lab.paths import LabPaths
from pgha_lab.topology import Topology

pytestmark = pytest.mark.docker

# Candidate subnets for the test's own bridge: private, away from the lab's 192.168.56.0/24 and
# Docker's default pools; the first one the engine accepts (no overlap on this host) is used.
CANDIDATE_SUBNETS = [f"10.231.{i}.0/24" for i in range(10, 30)]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def _mounts(paths: LabPaths, topo: Topology, node) -> list[str]:
    out = []
    for name, target in render.node_mounts(node):
        out += ["-v", f"{paths.node_dir(node.name) / name}:{target}:ro"]
    return out + ["-v", f"{paths.node_dir(node.name) / 'tls'}:{node_paths.TLS_MOUNT}:ro"]


def test_rendered_haproxy_cfg_passes_haproxy_check(built_images, tmp_path):
    paths, topo = LabPaths(home=tmp_path), Topology.build(db_nodes=3)
    render.write_lab(paths, topo, profiles.SEED)
    proc = _run("run", "--rm", "--network", "none", *_mounts(paths, topo, topo.haproxy), built_images["haproxy"],
                "haproxy", "-c", "-f", node_paths.HAPROXY_CONFIG)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Configuration file is valid" in proc.stdout + proc.stderr
    assert "WARNING" not in proc.stdout + proc.stderr


# -- a real etcd cluster from its rendered settings -------------------------------------------
@pytest.fixture(scope="module")
def etcd_cluster(built_images, tmp_path_factory):
    """Three etcd members on a bridge of the test's own, started from rendered files; removed after."""
    project = f"pgha-t{uuid.uuid4().hex[:8]}"
    network = None
    for subnet in CANDIDATE_SUBNETS:
        topo = Topology.build(project=project, subnet=subnet)
        proc = _run("network", "create", "--driver", "bridge", "--internal", "--subnet", subnet,
                    "--gateway", str(topo.host_address), "--label", "pgha-lab.test=1", topo.network_name)
        if proc.returncode == 0:
            network = topo.network_name
            break
        if "overlap" not in proc.stderr.lower():
            pytest.fail(f"cannot create the test network: {proc.stderr.strip()}", pytrace=False)
    if network is None:
        pytest.fail(f"every candidate subnet overlaps a network on this host: {CANDIDATE_SUBNETS}", pytrace=False)
    paths = LabPaths(home=tmp_path_factory.mktemp("etcdlab"), project=project)
    render.write_lab(paths, topo, profiles.SEED)
    names = []
    try:
        for m in topo.etcd:
            name = topo.container_name(m)
            proc = _run("run", "-d", "--name", name, "--hostname", m.name, "--network", network,
                        "--ip", str(m.address), *_mounts(paths, topo, m), built_images["etcd"])
            assert proc.returncode == 0, proc.stderr
            names.append(name)
        client = tls.host_client(paths)
        for m in topo.etcd:   # every test starts from a cluster that answers
            _wait_healthy(f"https://{m.address}:{topo.ports.etcd_client}/health", client)
        yield paths, topo
    finally:
        for name in names:
            _run("rm", "-f", "-v", name)
        _run("network", "rm", network)


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
    paths, topo = etcd_cluster
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
    proc = _run("exec", topo.container_name(first), "ectl", "endpoint", "health", "--cluster", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (proc.stdout + proc.stderr).count("is healthy") == len(topo.etcd)   # etcdctl reports on stderr


def test_etcd_refuses_a_client_without_a_certificate(etcd_cluster):
    paths, topo = etcd_cluster
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
def test_every_rendered_patroni_config_passes_patronis_validator(built_images, etcd_cluster, profile):
    """`patroni --validate-config` on each db node's own address, with the etcd members it
    names up and reachable (the validator connects to every DCS host)."""
    paths, topo = etcd_cluster
    render.write_lab(paths, topo, profiles.get(profile))
    for db in topo.db:
        proc = _run("run", "--rm", "--network", topo.network_name, "--ip", str(db.address),
                    "--env-file", str(paths.secrets_file), *_mounts(paths, topo, db), built_images["dbnode"],
                    "patroni", "--validate-config", node_paths.PATRONI_CONFIG)
        assert proc.returncode == 0, f"{db.name} ({profile}): {proc.stdout}{proc.stderr}"
