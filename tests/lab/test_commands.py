"""CLI paths the other lab tests leave out: `failover`, `logs`, `status --watch`, chaos on the
leader with stop, on the HAProxy node, a partition from one node, kill-postgres on a replica, the
loss of one etcd member, and `chaos heal-all` putting the lab back by itself after each fault kind."""
from __future__ import annotations

import subprocess
import sys
import threading

import psycopg
import pytest

from pgha_lab.chaos.actions import CHAIN_IN
from pgha_lab.node_paths import PG_DATA
from tests.labkit import PROJECT, REPO
from tests.lab.test_chaos import (chaos, current_lsn, leader, replicas, rest_code, wait_for_replay, wait_until,
                                  write_through_haproxy)

pytestmark = [pytest.mark.docker, pytest.mark.lab]


def test_failover_command_promotes_the_named_replica_and_refuses_the_leader(lab):
    old, target = leader(lab), replicas(lab)[0]
    out = lab.cli("failover", "--to", target).stdout
    assert f"failover: {old} -> {target} requested" in out
    assert f"{target} takes writes through HAProxy" in out
    assert rest_code(lab, target, "/primary") == 200
    assert write_through_haproxy(lab) == target
    wait_until(lambda: rest_code(lab, old, "/replica") == 200, 90, f"{old} streaming as a replica")
    proc = lab.cli("failover", "--to", target, check=False)
    assert proc.returncode == 1 and f"{target} is already the leader" in proc.stderr


def test_logs_prints_the_tail_of_a_nodes_log(lab):
    name = leader(lab)
    proc = lab.cli("logs", name, "-n", "5")
    lines = (proc.stdout + proc.stderr).splitlines()
    assert 1 <= len(lines) <= 5, lines
    # Patroni's HA loop line, written every loop_wait by the node that was asked for.
    assert any(f"I am ({name})" in line for line in lines), lines
    refused = lab.cli("logs", "dbnode9", check=False)
    assert refused.returncode == 1 and "unknown node 'dbnode9'" in refused.stderr


def test_status_watch_prints_one_snapshot_per_interval(lab):
    # Not a terminal: no screen clearing, one table after another, until interrupted.
    cmd = [sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", PROJECT, "status", "--watch", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: "".join(out).count("| Member") >= 2, 60, "two snapshots of status --watch")
        assert proc.poll() is None, "status --watch stopped by itself"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=10)
    text = "".join(out)
    assert text.count("Is Leader") >= 2 and "\033[H" not in text
    refused = lab.cli("status", "--watch", "0", check=False)
    assert refused.returncode == 1 and "--watch takes a refresh interval in seconds above 0" in refused.stderr


def test_chaos_stop_of_the_leader_fails_over_and_start_brings_it_back_as_a_replica(lab):
    old = leader(lab)
    out = chaos(lab, "stop", "leader", "--wait")
    assert out["node"] == old and out["role_before"] == "leader" and out["happened"] is True, out
    assert lab.ctx.docker.state(lab.topo.node(old)).status == "exited"
    new = leader(lab)
    assert new != old and write_through_haproxy(lab) == new
    back = chaos(lab, "start", old, "--wait")
    assert back["happened"] is True, back
    assert rest_code(lab, old, "/replica") == 200


def test_chaos_on_the_haproxy_node_cuts_clients_but_not_the_cluster(lab):
    lead = leader(lab)
    out = chaos(lab, "kill", "haproxy", "--wait")
    assert out["role_before"] == "haproxy" and out["happened"] is True, out
    with pytest.raises(psycopg.OperationalError):
        write_through_haproxy(lab, timeout=2)
    assert leader(lab) == lead and rest_code(lab, lead, "/primary") == 200
    back = chaos(lab, "start", "haproxy", "--wait")
    assert back["happened"] is True, back
    assert write_through_haproxy(lab) == lead


def reaches(lab, node: str, address: str, port: int) -> bool:
    """A TCP connection from `node`'s console to address:port opens within 3 s."""
    proc = lab.ctx.docker.exec(lab.topo.node(node), "timeout", "3", "bash", "-c",
                               f"exec 3<>/dev/tcp/{address}/{port}", check=False)
    return proc.returncode == 0


def test_partition_from_one_node_cuts_only_that_link(lab):
    lead, rep = leader(lab), replicas(lab)[0]
    lead_node, etcd_node = lab.topo.node(lead), lab.topo.etcd[0]
    out = chaos(lab, "partition", rep, "--from", lead, "--wait")
    assert out["happened"] is True, out
    rules = [r for r in lab.ctx.docker.exec(lab.topo.node(rep), "iptables", "-w", "-S", CHAIN_IN).stdout.splitlines()
             if r.startswith("-A ")]
    assert rules == [f"-A {CHAIN_IN} -s {lead_node.address}/32 -j DROP"], rules
    # From the replica's console: the leader's PostgreSQL is out of reach, etcd is not.
    assert not reaches(lab, rep, str(lead_node.address), lab.topo.ports.postgres)
    assert reaches(lab, rep, str(etcd_node.address), lab.topo.ports.etcd_client)
    assert leader(lab) == lead
    cleared = chaos(lab, "partition", rep, "--clear", "--wait")
    assert cleared["happened"] is True, cleared
    assert reaches(lab, rep, str(lead_node.address), lab.topo.ports.postgres)
    wait_for_replay(lab, rep, current_lsn(lab), 90)


def postmaster_pid(lab, node: str) -> str:
    return lab.ctx.docker.exec(lab.topo.node(node), "head", "-n1", f"{PG_DATA}/postmaster.pid", check=False).stdout.strip()


def test_kill_postgres_on_a_replica_restarts_it_as_a_replica(lab):
    lead, rep = leader(lab), replicas(lab)[0]
    before = postmaster_pid(lab, rep)
    out = chaos(lab, "kill-postgres", rep, "--wait")
    assert out["role_before"] in ("replica", "sync_standby") and out["happened"] is True, out
    assert f"(pid {before}) killed" in out["done"]
    # A killed postmaster leaves its pid file behind: a new pid means Patroni started a new one.
    wait_until(lambda: postmaster_pid(lab, rep) not in ("", before), 60, f"a new postmaster on {rep}")
    wait_for_replay(lab, rep, current_lsn(lab))
    assert leader(lab) == lead


def test_losing_one_etcd_member_keeps_the_leader_and_the_writes(lab):
    lead = leader(lab)
    victim = next(e.name for e in lab.probe().etcd() if e.is_leader)   # the raft leader: the harder case
    out = chaos(lab, "kill", victim, "--wait")
    assert out["happened"] is True and "keeps its quorum (2 of 3 members" in out["expected"], out
    endpoints = {e.name: e for e in lab.probe().etcd()}
    assert [n for n, e in endpoints.items() if e.error] == [victim]
    assert sum(e.is_leader for e in endpoints.values()) == 1   # the two left elected a raft leader
    assert leader(lab) == lead and write_through_haproxy(lab) == lead
    back = chaos(lab, "start", victim, "--wait")
    assert back["happened"] is True, back


def lab_state(lab) -> tuple:
    """What a refused drill must leave as it was: each container's state and lab-network plug, and
    the leader (roles of the broken replica move by themselves as its member key expires)."""
    cluster = lab.probe().cluster()
    return tuple((n.name, lab.ctx.docker.state(n)) for n in lab.topo.nodes), cluster.leader_name, cluster.timeline


# Faults on every kind of node, none on the leader (a failover would only make the test slower;
# heal-all does the same for it). Each round breaks several nodes at once, then heal-all alone
# must bring back a lab that `health` calls healthy, with no `up` after it. (The HAProxy node has
# no iptables, so partition and degrade go to a db node; a lossy etcd member beside a stopped one
# made the leader's etcd calls slow enough to fail over, which only made the test longer.)
HEAL_ROUNDS = {
    "kill-pause-isolate": [("kill", "replica"), ("pause", "etcd3"), ("isolate", "haproxy")],
    "stop-partition-degrade": [("stop", "etcd2"), ("partition", "replica", "--from", "etcd"),
                               ("degrade", "replica", "--loss", "20%")],
}


@pytest.mark.parametrize("faults", list(HEAL_ROUNDS.values()), ids=list(HEAL_ROUNDS))
def test_heal_all_alone_brings_the_lab_back_after_each_fault_kind(lab, faults, tmp_path):
    for action, target, *extra in faults:
        out = chaos(lab, action, target, *extra)
        assert "returncode" not in out, out
    assert not lab.ctx.health().ok
    # A drill refuses a lab that is not healthy, before it touches anything.
    before = lab_state(lab)
    proc = lab.cli("drill", "kill-replica", "--out", str(tmp_path / "refused"), check=False)
    assert proc.returncode == 1 and "the lab is not healthy" in proc.stderr and "Traceback" not in proc.stderr
    assert lab_state(lab) == before
    assert not (tmp_path / "refused").exists(), "a refused drill left its report folder behind"

    healed = lab.cli("chaos", "heal-all").stdout
    assert healed.strip() and "nothing to heal" not in healed
    wait_until(lambda: lab.ctx.health().ok, 180, "a healthy lab after heal-all alone")
    assert lab.cli("chaos", "heal-all").stdout.startswith("nothing to heal")
