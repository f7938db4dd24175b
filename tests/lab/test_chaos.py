"""Role changes and VM failures on the real cluster (fast profile), each outcome checked through
HAProxy and Patroni's REST API, not only through the command's exit code."""
from __future__ import annotations

import json
import subprocess
import threading
import time

import psycopg
import pytest

from pgha_lab.chaos.actions import LOSS_IN, LOSS_OUT

pytestmark = [pytest.mark.docker, pytest.mark.lab]


@pytest.fixture()
def lab(healthy_lab):
    """A healthy lab before the test, and put back together after it whatever the test broke."""
    yield healthy_lab
    healthy_lab.cli("chaos", "heal-all", check=False)
    healthy_lab.up()


def leader(lab) -> str:
    name = lab.probe().cluster().leader_name
    assert name, "no leader"
    return name


def replicas(lab) -> list[str]:
    return sorted(m.name for m in lab.probe().members() if m.role != "leader")


def write_through_haproxy(lab, timeout: float = 3.0) -> str:
    """Commit one row through HAProxy's 5432 and return the db node that took it."""
    addresses = {str(n.address): n.name for n in lab.topo.db}
    with psycopg.connect(lab.dsn(), password=lab.password(), connect_timeout=timeout, autocommit=True) as conn:
        conn.execute(f"set statement_timeout = '{int(timeout * 1000)}ms'")
        conn.execute("create table if not exists chaos_writes (id bigserial primary key, at timestamptz default now())")
        addr = conn.execute("insert into chaos_writes default values returning host(inet_server_addr())").fetchone()[0]
    return addresses[addr]


def wait_until(predicate, deadline_s: float, what: str):
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # the cluster is mid-change; keep polling until the deadline
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {deadline_s}s (last: {last!r})")


def chaos(lab, *args: str, check: bool = True) -> dict:
    proc = lab.cli("chaos", *args, "--json", check=check)
    return json.loads(proc.stdout) if proc.stdout.strip() else {"returncode": proc.returncode, "stderr": proc.stderr}


def rest_code(lab, node: str, path: str) -> int:
    probe = lab.probe()
    return probe.rest(lab.topo.node(node), path)[0]


def test_switchover_to_a_named_node(lab):
    old, target = leader(lab), replicas(lab)[0]
    out = lab.cli("switchover", "--to", target).stdout
    assert f"{target} takes writes through HAProxy" in out
    assert rest_code(lab, target, "/primary") == 200
    assert write_through_haproxy(lab) == target
    wait_until(lambda: rest_code(lab, old, "/replica") == 200, 60, f"{old} streaming as a replica")


def test_failover_when_the_leader_is_killed_and_the_old_leader_rejoins(lab):
    old = leader(lab)
    out = chaos(lab, "kill", "leader", "--wait")
    assert out["node"] == old and out["happened"] is True
    new = leader(lab)
    assert new != old
    assert write_through_haproxy(lab) == new
    back = chaos(lab, "start", old, "--wait")
    assert back["happened"] is True
    assert rest_code(lab, old, "/replica") == 200
    assert rest_code(lab, old, "/primary") == 503


def test_paused_leader_steps_down_on_resume_and_takes_no_write_after_the_election(lab):
    old = leader(lab)
    chaos(lab, "pause", old, "--wait")
    new = leader(lab)
    assert new != old
    landed: list[str] = []
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            try:
                landed.append(write_through_haproxy(lab, timeout=2))
            except psycopg.Error:
                pass
            time.sleep(0.1)

    t = threading.Thread(target=writer)
    t.start()
    try:
        chaos(lab, "resume", old)
        wait_until(lambda: rest_code(lab, old, "/replica") == 200, 90, f"{old} stepping down to a replica")
        time.sleep(2)   # keep writing a little after it rejoined
    finally:
        stop.set()
        t.join()
    assert landed, "no write went through during the resume"
    assert old not in landed, f"writes landed on the old leader after the election: {landed.count(old)}"


def test_isolated_leader_demotes_itself_and_rejoins_after_heal(lab):
    old = leader(lab)
    out = chaos(lab, "isolate", old, "--wait")
    assert out["happened"] is True and leader(lab) != old
    assert write_through_haproxy(lab) == leader(lab)

    def demoted() -> bool:
        # Cut off from the lab, the node is reached on its console (docker exec), as a VM would be.
        proc = subprocess.run(["docker", "exec", "-u", "postgres", lab.topo.container_name(old),
                               "psql", "-tAc", "select pg_is_in_recovery()"], capture_output=True, text=True)
        return proc.stdout.strip() == "t" or "Connection refused" in proc.stderr or "No such file" in proc.stderr
    wait_until(demoted, 60, f"{old} demoting itself")
    refused = chaos(lab, "isolate", old, check=False)
    assert refused["returncode"] == 1 and "already isolated" in refused["stderr"]
    chaos(lab, "heal", old, "--wait")
    assert rest_code(lab, old, "/replica") == 200


def test_kill_postgres_on_the_leader_restarts_it_in_place(lab):
    # Patroni still holds the leader key when the postmaster dies, so recover() starts PostgreSQL
    # again as primary ('starting primary after failure'; primary_start_timeout 300 s by default)
    # instead of failing over: same leader, same timeline.
    old = leader(lab)
    tl_before = next(m.timeline for m in lab.probe().members() if m.name == old)
    out = chaos(lab, "kill-postgres", "leader", "--wait")
    assert out["happened"] is True
    assert leader(lab) == old
    assert next(m.timeline for m in lab.probe().members() if m.name == old) == tl_before
    assert write_through_haproxy(lab) == old
    logs = subprocess.run(["docker", "logs", lab.topo.container_name(old)], capture_output=True, text=True)
    assert "starting primary after failure" in logs.stdout + logs.stderr


def test_losing_two_of_three_etcd_members_demotes_the_primary_until_they_return(lab):
    # failsafe_mode is off: without an etcd quorum the leader cannot renew its key, so Patroni demotes
    # it to read-only rather than risk a second primary. Reads on 5433 keep working.
    e1, e2 = lab.topo.etcd[0].name, lab.topo.etcd[1].name
    chaos(lab, "stop", e1)
    out = chaos(lab, "stop", e2, "--wait")
    assert out["happened"] is True, out
    assert all(rest_code(lab, n.name, "/primary") != 200 for n in lab.topo.db)
    with pytest.raises(psycopg.Error):
        write_through_haproxy(lab, timeout=2)
    chaos(lab, "start", e1)
    back = chaos(lab, "start", e2, "--wait")
    assert back["happened"] is True
    assert write_through_haproxy(lab) == leader(lab)


def test_leader_partitioned_from_etcd_demotes_and_returns_as_a_replica(lab):
    old = leader(lab)
    out = chaos(lab, "partition", old, "--from", "etcd", "--wait")
    assert out["happened"] is True
    new = leader(lab)
    assert new != old and write_through_haproxy(lab) == new
    wait_until(lambda: rest_code(lab, old, "/primary") == 503, 60, f"{old} demoting itself")
    chaos(lab, "partition", old, "--clear", "--wait")
    assert rest_code(lab, old, "/replica") == 200


def loss_rules(lab, node: str) -> list[str]:
    """The random-drop rules in the node's loss chains, as iptables -S prints them."""
    script = f"iptables -w -S {LOSS_IN}; iptables -w -S {LOSS_OUT}"
    out = subprocess.run(["docker", "exec", lab.topo.container_name(node), "sh", "-c", script],
                         capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.startswith("-A ") and "statistic" in line]


def test_ten_percent_packet_loss_on_a_replica_keeps_it_streaming(lab):
    replica = replicas(lab)[0]
    chaos(lab, "degrade", replica, "--loss", "10%")
    try:
        rules = loss_rules(lab, replica)
        assert len(rules) == 2 and all("--probability 0.1" in r and r.endswith("-j DROP") for r in rules), rules
        for _ in range(10):
            write_through_haproxy(lab)
        time.sleep(3)   # a few seconds of replication under loss
        row = next(m for m in lab.probe().members() if m.name == replica)
        assert row.state == "streaming"
    finally:
        chaos(lab, "degrade", replica, "--clear")
    assert loss_rules(lab, replica) == []


def test_delay_needs_netem_and_changes_nothing_without_it(lab):
    replica = replicas(lab)[0]
    container = lab.topo.container_name(replica)
    has_netem = subprocess.run(["docker", "exec", container, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                                "delay", "0ms"], capture_output=True).returncode == 0
    if has_netem:
        subprocess.run(["docker", "exec", container, "tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
        chaos(lab, "degrade", replica, "--delay", "200ms")
        qdisc = subprocess.run(["docker", "exec", container, "tc", "qdisc", "show", "dev", "eth0"], capture_output=True, text=True)
        assert "netem" in qdisc.stdout
        chaos(lab, "degrade", replica, "--clear")
    else:
        out = chaos(lab, "degrade", replica, "--delay", "200ms", check=False)
        assert out["returncode"] == 1
        assert "this kernel has no netem" in out["stderr"] and "nothing was changed" in out["stderr"]
    qdisc = subprocess.run(["docker", "exec", container, "tc", "qdisc", "show", "dev", "eth0"], capture_output=True, text=True)
    assert "netem" not in qdisc.stdout


def test_killing_the_synchronous_standby_lets_writes_continue(lab):
    # synchronous_mode is on but not strict: when the synchronous standby disappears Patroni empties
    # synchronous_standby_names, so commits stop waiting for it and writes go on.
    sync = next(m.name for m in lab.probe().members() if m.role == "sync_standby")
    lead = leader(lab)
    out = chaos(lab, "kill", sync, "--wait")
    assert out["happened"] is True
    assert write_through_haproxy(lab, timeout=5) == lead
    with psycopg.connect(lab.dsn(), password=lab.password()) as conn:
        assert conn.execute("show synchronous_standby_names").fetchone()[0] in ("", "''")
    chaos(lab, "start", sync, "--wait")
    wait_until(lambda: rest_code(lab, sync, "/sync") == 200, 60, f"{sync} synchronous again")


def lab_state(lab) -> tuple:
    """What a refused request must leave as it was: each container's state and lab-network
    plug, and each member's role and timeline."""
    ctl = lab.ctx.docker
    containers = tuple((n.name, ctl.state(n)) for n in lab.topo.nodes)
    members = tuple(sorted((m.name, m.role, m.timeline) for m in lab.probe().members()))
    return containers, members


def refused(lab, *args: str) -> str:
    out = chaos(lab, *args, check=False)
    assert out.get("returncode") == 1, out
    assert "Traceback" not in out["stderr"]
    return out["stderr"]


def test_impossible_requests_are_refused_and_change_nothing(lab):
    running = replicas(lab)[0]
    before = lab_state(lab)
    assert f"{running} is not paused (it is running); nothing to resume." in refused(lab, "resume", running)
    assert "unknown node 'dbnode9'" in refused(lab, "kill", "dbnode9")
    assert "runs no PostgreSQL" in refused(lab, "kill-postgres", lab.topo.etcd[0].name)
    assert lab_state(lab) == before

    chaos(lab, "isolate", running)
    isolated = lab_state(lab)
    assert f"{running} is already isolated" in refused(lab, "isolate", running)
    assert lab_state(lab) == isolated
