"""Labs of another shape than the suite's, made at creation the way a user asks for them: five etcd
members, three db nodes in quorum commit with two synchronous standbys and pg_rewind off (one `up`
serves all of those), and a single etcd member. Each runs beside the suite's lab, on its own project
and subnet (10.59.<slot>.0/24), and is removed at the end."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import psycopg
import pytest

from pgha_lab import disks
from pgha_lab.context import LabContext
from pgha_lab.gateway import LabDocker
from pgha_lab.paths import LabPaths
from tests.labkit import PROJECT, REPO, SLOT

pytestmark = [pytest.mark.docker, pytest.mark.lab]

SHAPE_PROJECT = f"{PROJECT}-shape"
SHAPE_SUBNET = f"10.59.{SLOT}.0/24"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", SHAPE_PROJECT, *args],
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"pgha-lab {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def remove_shape_lab() -> None:
    """Its containers, volumes and network, and everything saved for it (topology, settings, certificates):
    a lab of the same name would otherwise start with the last one's saved settings."""
    paths = LabPaths(home=REPO, project=SHAPE_PROJECT)
    LabDocker(SHAPE_PROJECT, paths.compose_file).remove_everything()
    disks.release_all(paths)
    shutil.rmtree(paths.state, ignore_errors=True)
    shutil.rmtree(paths.certs, ignore_errors=True)


def etcd_member_names(ctx: LabContext) -> list[str]:
    """The membership as `ectl member list` prints it on the first member (id, status, name, ...)."""
    out = ctx.docker.exec(ctx.topology.etcd[0], "ectl", "member", "list").stdout
    return sorted(line.split(", ")[2] for line in out.splitlines() if line.strip())


@pytest.fixture()
def shaped(docker_client, built_images):
    """`up` with the given options from nothing; the lab's JSON outcome and its context. Removed after."""
    remove_shape_lab()

    def make(*options: str) -> tuple[dict, LabContext]:
        out = json.loads(cli("up", "--profile", "fast", "--subnet", SHAPE_SUBNET, "--publish-ports", "off",
                             "--json", *options).stdout)
        return out, LabContext.open(REPO, SHAPE_PROJECT)
    yield make
    remove_shape_lab()


def test_five_etcd_members_and_quorum_commit_over_two_standbys_with_rewind_off_at_creation(shaped):
    out, ctx = shaped("--etcd-nodes", "5", "--db-nodes", "3", "--replication", "quorum", "--sync-count", "2",
                      "--rewind", "off")
    # up --json: what a script reads back.
    assert out["project"] == SHAPE_PROJECT and out["profile"] == "fast"
    assert out["settings"]["replication"] == "quorum" and out["settings"]["sync_count"] == 2, out["settings"]
    assert out["settings"]["rewind"] is False, out["settings"]
    assert sorted(m["name"] for m in out["members"]) == ["dbnode1", "dbnode2", "dbnode3"]

    # Five etcd members, one raft leader, one term.
    endpoints = ctx.probe.etcd()
    assert [e.name for e in endpoints] == [f"etcd{i}" for i in range(1, 6)]
    assert all(e.error == "" for e in endpoints) and len({e.id for e in endpoints}) == 5
    assert sum(e.is_leader for e in endpoints) == 1 and len({e.raft_term for e in endpoints}) == 1
    assert etcd_member_names(ctx) == [f"etcd{i}" for i in range(1, 6)]

    # What Patroni runs, read from its REST API, and what PostgreSQL was told.
    cluster = ctx.cluster()
    leader = ctx.topology.node(cluster.leader_name)
    code, config = ctx.probe.rest(leader, "/config")
    assert code == 200
    assert config["synchronous_mode"] == "quorum" and config["synchronous_node_count"] == 2, config
    assert config["postgresql"]["use_pg_rewind"] is False, config
    standbys = sorted(m.name for m in cluster.members if m.name != leader.name)
    assert {m.role.value for m in cluster.members if m.name != leader.name} == {"quorum_standby"}, cluster
    password = ctx.secrets.superuser_password
    with psycopg.connect(ctx.dsn(), password=password, connect_timeout=5, autocommit=True) as conn:
        names = conn.execute("show synchronous_standby_names").fetchone()[0]
        assert names.startswith("ANY 2 (") and all(s in names for s in standbys), names
        conn.execute("create table if not exists shape_probe (id bigint primary key)")
        # remote_apply over ANY 2 of 2: the commit returns once both standbys have replayed it.
        with conn.transaction():
            conn.execute("set local synchronous_commit = remote_apply")
            conn.execute("insert into shape_probe values (1)")
    for name in standbys:
        node = ctx.topology.node(name)
        dsn = (f"host={node.address} port={ctx.topology.ports.postgres} dbname=postgres user=postgres "
               f"sslmode=verify-full sslrootcert={ctx.ca_file}")
        with psycopg.connect(dsn, password=password, connect_timeout=5) as conn:
            assert conn.execute("select count(*) from shape_probe").fetchone()[0] == 1, name


def test_a_single_etcd_member_at_creation(shaped):
    out, ctx = shaped("--etcd-nodes", "1")
    endpoints = ctx.probe.etcd()
    assert [(e.name, e.error, e.is_leader) for e in endpoints] == [("etcd1", "", True)]
    assert etcd_member_names(ctx) == ["etcd1"]
    assert ctx.health().ok and sorted(m["name"] for m in out["members"]) == ["dbnode1", "dbnode2"]
    with psycopg.connect(ctx.dsn(), password=ctx.secrets.superuser_password, connect_timeout=5) as conn:
        assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is False
