"""up / down as a DBA uses them: idempotent up, data kept across down, removed by down --volumes."""
from __future__ import annotations

import socket
import subprocess
import time

import psycopg
import pytest

from tests.labkit import PORTS

pytestmark = [pytest.mark.docker, pytest.mark.lab]


def containers(lab) -> dict[str, tuple[str, str]]:
    """node -> (container id, started at) for the test lab."""
    out = subprocess.run(["docker", "ps", "-q", "--filter", f"label=pgha-lab.project={lab.topo.project}"],
                         capture_output=True, text=True).stdout.split()
    info = subprocess.run(["docker", "inspect", "-f", '{{index .Config.Labels "pgha-lab.node"}} {{.Id}} {{.State.StartedAt}}', *out],
                          capture_output=True, text=True).stdout.split("\n")
    return {parts[0]: (parts[1], parts[2]) for parts in (line.split() for line in info) if parts}


def test_a_second_up_changes_nothing(healthy_lab):
    before = containers(healthy_lab)
    assert len(before) == len(healthy_lab.topo.nodes)
    started = time.monotonic()
    healthy_lab.up()
    elapsed = time.monotonic() - started
    assert containers(healthy_lab) == before
    print(f"second up took {elapsed:.1f}s")


def test_a_taken_port_is_refused_before_anything_starts(healthy_lab):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        before = containers(healthy_lab)
        proc = healthy_lab.cli("up", "--publish-ports", f"{taken},{PORTS.replicas},{PORTS.stats}", check=False)
    assert proc.returncode == 1
    assert f"port {taken} on 127.0.0.1 is already taken" in proc.stderr
    assert containers(healthy_lab) == before
    # Nothing was saved either: the lab keeps its own ports.
    assert str(PORTS.primary) in healthy_lab.paths.compose_file.read_text()


def test_down_then_up_keeps_the_data_and_down_volumes_removes_it(healthy_lab):
    lab = healthy_lab
    marker = time.time_ns()
    with psycopg.connect(lab.dsn(), password=lab.password(), autocommit=True) as conn:
        conn.execute("create table if not exists keep_me (id bigint primary key)")
        conn.execute("insert into keep_me values (%s)", (marker,))
    lab.cli("down")
    assert containers(lab) == {}
    lab.up()
    with psycopg.connect(lab.dsn(), password=lab.password()) as conn:
        assert conn.execute("select count(*) from keep_me where id = %s", (marker,)).fetchone()[0] == 1

    lab.cli("down", "--volumes")
    vols = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={lab.topo.project}"],
                          capture_output=True, text=True).stdout.split()
    assert vols == []
    lab.up()
    with psycopg.connect(lab.dsn(), password=lab.password()) as conn:
        assert conn.execute("select to_regclass('keep_me')").fetchone()[0] is None


def started_at(lab, node) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", lab.topo.container_name(node)],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_switching_the_profile_reaches_etcd_and_haproxy(healthy_lab):
    lab = healthy_lab
    db_started = {n.name: started_at(lab, n) for n in lab.topo.db}
    lab.cli("up", "--profile", "seed")
    # The timings go to etcd through the REST API; no db node is rebooted for them.
    assert {n.name: started_at(lab, n) for n in lab.topo.db} == db_started
    probe = lab.probe()
    leader = next(m.name for m in probe.members() if m.role == "leader")
    config = probe.rest(lab.topo.node(leader), "/config")[1]
    assert (config["ttl"], config["loop_wait"], config["retry_timeout"]) == (30, 10, 10)
    cfg = subprocess.run(["docker", "exec", lab.topo.container_name(lab.topo.haproxy), "cat", "/etc/haproxy/haproxy.cfg"],
                         capture_output=True, text=True).stdout
    assert "inter 3000ms fall 3 rise 2" in cfg
    lab.up()   # back to fast
    config = probe.rest(lab.topo.node(next(m.name for m in probe.members() if m.role == "leader")), "/config")[1]
    assert (config["ttl"], config["loop_wait"], config["retry_timeout"]) == (20, 1, 3)
