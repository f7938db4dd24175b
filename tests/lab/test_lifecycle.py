"""up / down as a DBA uses them: idempotent up, data kept across down, removed by down --volumes."""
from __future__ import annotations

import socket
import subprocess
import time

import sys

import psycopg
import pytest

from pgha_lab import disks
from pgha_lab.gateway import volume_name
from tests.labkit import PORTS, PROJECT, REPO

pytestmark = [pytest.mark.docker, pytest.mark.lab]


def containers(lab) -> dict[str, tuple[str, str]]:
    """node -> (container id, started at) for the test lab's containers, running or not."""
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=pgha-lab.project={lab.topo.project}"],
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


def test_resizing_etcd_in_place_is_refused_and_changes_nothing(healthy_lab):
    lab = healthy_lab
    before, topology = containers(lab), lab.paths.topology_file.read_text()
    proc = lab.cli("up", "--etcd-nodes", "5", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "the etcd membership of an existing lab cannot change in place" in proc.stderr
    assert containers(lab) == before and lab.paths.topology_file.read_text() == topology


def test_moving_the_data_to_disks_of_another_size_in_place_is_refused_and_changes_nothing(healthy_lab):
    lab = healthy_lab
    before, topology = containers(lab), lab.paths.topology_file.read_text()
    for size in ("4G", "off"):
        proc = lab.cli("up", "--disk-size", size, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.strip() == ("pgha-lab: the db nodes' data cannot move to disks of another size in place; run "
                                       "`pgha-lab down --volumes` first, then `up` with the new --disk-size."), proc.stderr
    assert containers(lab) == before and lab.paths.topology_file.read_text() == topology
    d = disks.disk(lab.paths, lab.topo.db[0].name)
    assert d.mounted and d.usage()[1] > (1 << 30)   # still its 2 GiB disk


def test_down_of_a_lab_that_does_not_exist_is_refused(healthy_lab):
    ghost = PROJECT + "-ghost"
    proc = subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", ghost, "down"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"there is no lab {ghost!r} here" in proc.stderr and "nothing to stop" in proc.stderr
    assert not (REPO / "labs" / ghost).exists()
    assert len(containers(healthy_lab)) == len(healthy_lab.topo.nodes)   # ours untouched


def published_port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_publish_ports_off_then_on_again(healthy_lab):
    lab = healthy_lab
    lab.cli("up", "--publish-ports", "off")
    assert lab.ctx.docker.published_ports(lab.topo.haproxy) == set()
    assert not published_port_open(PORTS.primary) and not published_port_open(PORTS.stats)
    # Inside the lab nothing changed: HAProxy still routes to the primary.
    with psycopg.connect(lab.dsn(), password=lab.password(), connect_timeout=5) as conn:
        assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is False
    lab.up()   # the suite's ports back: conftest's up passes them
    assert lab.ctx.docker.published_ports(lab.topo.haproxy) >= {str(PORTS.primary), str(PORTS.replicas), str(PORTS.stats)}
    with psycopg.connect(lab.dsn(published=True), password=lab.password(), connect_timeout=5) as conn:
        assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is False


def test_down_then_up_keeps_the_data_and_down_volumes_removes_it(healthy_lab):
    lab = healthy_lab
    marker = time.time_ns()
    with psycopg.connect(lab.dsn(), password=lab.password(), autocommit=True) as conn:
        conn.execute("create table if not exists keep_me (id bigint primary key)")
        conn.execute("insert into keep_me values (%s)", (marker,))
    lab.cli("down")
    assert containers(lab) == {}
    down = lab.cli("status", check=False)
    assert down.returncode == 1 and f"lab {lab.topo.project!r} is not running; start it with `pgha-lab up`." in down.stderr
    # As after a host reboot: the db nodes' disks are not mounted. Docker must refuse to start a node
    # (its volume's folder exists only inside the disk) rather than give Patroni an empty directory.
    for node in lab.topo.db:
        subprocess.run(["umount", str(disks.disk(lab.paths, node.name).mountpoint)], check=True)
    started = subprocess.run(["docker", "compose", "-f", str(lab.paths.compose_file), "up", "-d", "--no-deps",
                              lab.topo.db[0].name], capture_output=True, text=True)
    assert started.returncode != 0 and "failed to mount local volume" in started.stderr, started.stderr
    lab.up()   # mounts them again
    with psycopg.connect(lab.dsn(), password=lab.password()) as conn:
        assert conn.execute("select count(*) from keep_me where id = %s", (marker,)).fetchone()[0] == 1

    # Data nodes wiped beside an etcd that remembers the cluster: up refuses before starting anything.
    lab.cli("down")
    db_volumes = [volume_name(lab.topo.project, n.name) for n in lab.topo.db]
    subprocess.run(["docker", "volume", "rm", *db_volumes], capture_output=True, text=True, check=True)
    stale = lab.cli("up", check=False)
    assert stale.returncode == 1 and "etcd still holds this lab's cluster" in stale.stderr, stale.stderr
    assert "pgha-lab down --volumes" in stale.stderr and containers(lab) == {}

    lab.cli("down", "--volumes")
    vols = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={lab.topo.project}"],
                          capture_output=True, text=True).stdout.split()
    assert vols == []
    assert not list((lab.paths.state / "disks").glob("*")), "down --volumes left a disk behind"
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
    assert (config["ttl"], config["loop_wait"], config["retry_timeout"]) == (20, 1, 6)


@pytest.fixture()
def grown_lab(healthy_lab):
    """The lab grown by a test, which shrinks it back itself; taken down afterwards only if it did
    not, with its saved shape, so a later `up` builds the usual two db nodes."""
    yield healthy_lab
    if len(healthy_lab.ctx.topology.db) != 2 or not healthy_lab.ctx.health().ok:
        healthy_lab.cli("down", "--volumes")
        healthy_lab.paths.topology_file.unlink(missing_ok=True)


def test_up_db_nodes_3_grows_a_running_lab_and_db_nodes_2_shrinks_it_back(grown_lab):
    lab = grown_lab
    probe = lab.probe()
    leader = probe.cluster().leader_name
    etcd_started = {n.name: started_at(lab, n) for n in lab.topo.etcd}
    db_started = {n.name: started_at(lab, n) for n in lab.topo.db}
    with psycopg.connect(lab.dsn(), password=lab.password(), autocommit=True) as conn:
        conn.execute("create table if not exists grown (id bigint primary key)")
        conn.execute("insert into grown values (1) on conflict do nothing")
    lab.cli("up", "--db-nodes", "3")
    ctx = lab.ctx   # the topology on disk now has three db nodes
    assert [n.name for n in ctx.topology.db] == ["dbnode1", "dbnode2", "dbnode3"]
    cluster = ctx.cluster()
    # Growth adds dbnode3 and nothing in the existing db nodes' files names it (the role-change
    # callback asks HAProxy for the servers), so `up` leaves them running and the leader stays.
    assert cluster.leader_name == leader, "growing the lab moved the leader"
    assert {n.name: started_at(lab, n) for n in lab.topo.db} == db_started, "growing the lab restarted db nodes"
    third = cluster.member("dbnode3")
    assert third is not None and third.role.is_replica and third.state == "streaming", third
    assert {n.name: started_at(lab, n) for n in lab.topo.etcd} == etcd_started   # etcd untouched
    assert disks.disk(ctx.paths, "dbnode3").mounted   # the newcomer has its own disk like the others
    up = {(b.backend, b.server) for b in ctx.probe.haproxy() if b.status == "UP"}
    assert ("replicas", "dbnode3") in up, up
    node3 = ctx.topology.node("dbnode3")
    dsn = (f"host={node3.address} port={ctx.topology.ports.postgres} dbname=postgres user=postgres "
           f"sslmode=verify-full sslrootcert={ctx.ca_file}")
    with psycopg.connect(dsn, password=lab.password()) as conn:
        assert conn.execute("select count(*) from grown").fetchone()[0] == 1

    # And back: `up --db-nodes 2` retires dbnode3 (container, data volume, member key); the members
    # that stay keep running, and the leader too unless it was dbnode3.
    lab.cli("up", "--db-nodes", "2")
    ctx = lab.ctx
    assert [n.name for n in ctx.topology.db] == ["dbnode1", "dbnode2"]
    cluster = ctx.cluster()
    assert sorted(cluster.names) == ["dbnode1", "dbnode2"] and cluster.leader_name == leader
    assert ctx.probe.etcd_read(ctx.probe.member_key_path("dbnode3")) == (True, None), "dbnode3's member key is left"
    assert "dbnode3" not in ctx.docker.containers()
    assert volume_name(ctx.project, "dbnode3") not in ctx.docker.volumes()
    assert not disks.disk(ctx.paths, "dbnode3").image.exists(), "dbnode3's disk is left"
    assert {n.name: started_at(lab, n) for n in lab.topo.db} == db_started, "shrinking the lab restarted db nodes"
    assert ctx.health().ok, ctx.health().reason
