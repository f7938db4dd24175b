"""Role changes and VM failures on the real cluster (fast profile), each outcome checked through
HAProxy and Patroni's REST API, not only through the command's exit code."""
from __future__ import annotations

import json
import re
import subprocess
import threading
import time

import psycopg
import pytest

from pgha_lab import wait
from pgha_lab.chaos import expectations
from pgha_lab.chaos.actions import LOSS_IN, LOSS_OUT, Chaos

pytestmark = [pytest.mark.docker, pytest.mark.lab]


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


def wait_until(predicate, deadline_s: float, what: str) -> None:
    """pgha_lab.wait.wait_until on a predicate that may raise while the cluster is mid-change."""
    def check() -> wait.Verdict:
        try:
            answer = predicate()
        except Exception as exc:
            return wait.Verdict(False, repr(exc))
        return wait.Verdict(bool(answer), repr(answer))
    verdict = wait.wait_until(check, deadline_s, interval_s=0.5)
    assert verdict.ok, f"{what} did not happen within {deadline_s}s (last: {verdict.reason})"


def chaos(lab, *args: str, check: bool = True) -> dict:
    proc = lab.cli("chaos", *args, "--json", check=check)
    return json.loads(proc.stdout) if proc.stdout.strip() else {"returncode": proc.returncode, "stderr": proc.stderr}


def rest_code(lab, node: str, path: str) -> int:
    probe = lab.probe()
    return probe.rest(lab.topo.node(node), path)[0]


def replica_dsn(lab, node: str) -> str:
    """Straight to one db node's PostgreSQL (not through HAProxy), TLS verified."""
    n = lab.topo.node(node)
    return (f"host={n.address} port={lab.topo.ports.postgres} dbname=postgres user=postgres "
            f"sslmode=verify-full sslrootcert={lab.ctx.ca_file}")


def current_lsn(lab) -> str:
    with psycopg.connect(lab.dsn(), password=lab.password(), connect_timeout=5) as conn:
        return conn.execute("select pg_current_wal_lsn()::text").fetchone()[0]


def wait_for_replay(lab, node: str, lsn: str, deadline_s: float = 60) -> None:
    """Until `node` has replayed the primary's WAL up to `lsn` (pg_last_wal_replay_lsn, read on it)."""
    def replayed() -> bool:
        with psycopg.connect(replica_dsn(lab, node), password=lab.password(), connect_timeout=3) as conn:
            return conn.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]
    wait_until(replayed, deadline_s, f"{node} replaying up to {lsn}")


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
    # Demoted, not unreachable: every db node answers its REST API and says it is not primary
    # (a node that does not answer at all, code 0, would say nothing about a demotion).
    codes = {n.name: rest_code(lab, n.name, "/primary") for n in lab.topo.db}
    assert set(codes.values()) == {503}, codes
    with pytest.raises(psycopg.Error):
        write_through_haproxy(lab, timeout=2)
    # The expectation itself tells a silent node from a demoted one: freeze a db node and it no
    # longer confirms "no primary".
    frozen = lab.topo.node(replicas(lab)[0])
    lab.ctx.docker.pause(frozen)
    try:
        verdict = expectations.no_primary(lab.ctx)()
    finally:
        lab.ctx.docker.unpause(frozen)
    assert not verdict.ok and f"{frozen.name} does not answer" in verdict.reason, verdict
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
        # Replication under loss: the replica replays the primary's WAL up to the last write.
        wait_for_replay(lab, replica, current_lsn(lab))
        row = next(m for m in lab.probe().members() if m.name == replica)
        assert row.state == "streaming"
    finally:
        chaos(lab, "degrade", replica, "--clear")
    assert loss_rules(lab, replica) == []


def timed_commit(lab, megabytes: int) -> float:
    """Seconds for one commit of `megabytes` of incompressible rows through HAProxy's 5432 (sync mode:
    it returns once the synchronous standby has the WAL)."""
    with psycopg.connect(lab.dsn(), password=lab.password(), connect_timeout=5, autocommit=True) as conn:
        conn.execute("create table if not exists slow_link_rows (payload text)")
        conn.execute("alter table slow_link_rows alter payload set storage external")
        start = time.monotonic()
        conn.execute("insert into slow_link_rows select repeat(md5(random()::text), 256) "
                     "from generate_series(1, %s)", (megabytes * 128,))
        took = time.monotonic() - start
        conn.execute("truncate slow_link_rows")
        return took


def qdiscs(lab, node: str) -> str:
    # Every interface: the lab's is eth1 once a node has been isolated and healed.
    script = "tc qdisc show; for d in $(ls /sys/class/net); do tc class show dev $d; done"
    return lab.ctx.docker.exec(lab.topo.node(node), "sh", "-c", script).stdout


def test_a_slow_link_holds_a_synchronous_commit_back_until_cleared(lab):
    replica = replicas(lab)[0]
    fast = timed_commit(lab, 2)
    chaos(lab, "degrade", replica, "--rate", "2mbit")
    try:
        # What the standby sends, and what every db and etcd node sends it, goes at 2 Mbit/s.
        assert re.search(r"qdisc tbf .* rate 2Mbit", qdiscs(lab, replica)), qdiscs(lab, replica)
        for peer in (leader(lab), lab.topo.etcd[0].name):
            assert re.search(r"class htb 1:\d+ .* rate 2Mbit ceil 2Mbit", qdiscs(lab, peer)), qdiscs(lab, peer)
        assert "slow link" in Chaos(lab.ctx).network_faults(lab.topo.node(replica))
        # 2 MiB of WAL at 2 Mbit/s takes about 8 s to reach the synchronous standby.
        slow = timed_commit(lab, 2)
        assert slow >= 5.0, f"a 2 MiB commit took {slow:.1f}s over a 2 Mbit/s link ({fast:.1f}s before)"
    finally:
        chaos(lab, "degrade", replica, "--clear")
    for node in (replica, leader(lab), lab.topo.etcd[0].name):
        assert not re.search(r"qdisc (tbf|htb)", qdiscs(lab, node)), qdiscs(lab, node)
    again = timed_commit(lab, 2)
    assert again < 3.0 and fast < 3.0, f"2 MiB commits took {fast:.1f}s before and {again:.1f}s after the slow link"


def kernel_has_netem() -> bool:
    """Asked of the kernel here, not of the code under test: a netem qdisc on the loopback of a new,
    empty network namespace (the nodes share this kernel), gone with the namespace."""
    probe = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                           capture_output=True, text=True)
    return probe.returncode == 0


def has_netem(lab, node: str) -> bool:
    answer = kernel_has_netem()
    # The lab's own probe (the one `degrade --delay` asks before refusing) must agree with the kernel.
    assert Chaos(lab.ctx).netem_available(lab.topo.node(node)) == answer, f"the lab's netem probe disagrees with the kernel ({answer})"
    return answer


def eth0_qdisc(lab, node: str) -> str:
    return lab.ctx.docker.exec(lab.topo.node(node), "tc", "qdisc", "show", "dev", "eth0").stdout


# Two tests, one per kind of kernel: the one that cannot run here is skipped, and says so in the
# summary (-ra) rather than passing silently; the other takes this kernel's path.
def test_delay_adds_200ms_with_netem(lab):
    replica = replicas(lab)[0]
    if not has_netem(lab, replica):
        pytest.skip("this kernel has no netem: --delay is refused here (see the no-netem test)")
    chaos(lab, "degrade", replica, "--delay", "200ms")
    try:
        qdisc = eth0_qdisc(lab, replica)
        assert re.search(r"\bnetem\b.*\bdelay 200(\.0+)?ms\b", qdisc), qdisc
    finally:
        chaos(lab, "degrade", replica, "--clear")
    assert "netem" not in eth0_qdisc(lab, replica)


def test_delay_without_netem_is_refused_and_changes_nothing(lab):
    replica = replicas(lab)[0]
    if has_netem(lab, replica):
        pytest.skip("this kernel has netem: --delay works here (see the 200 ms test)")
    # Every interface's queues, whichever carries the lab (eth1 once a node has been isolated and healed).
    before = qdiscs(lab, replica)
    out = chaos(lab, "degrade", replica, "--delay", "200ms", check=False)
    assert out["returncode"] == 1
    assert out["stderr"] == ("pgha-lab: this kernel has no netem (tc qdisc netem), so --delay cannot work here; "
                             "nothing was changed.\n"), out["stderr"]
    assert qdiscs(lab, replica) == before and "qdisc" in before


def test_killing_the_synchronous_standby_lets_writes_continue(lab):
    # synchronous_mode is on but not strict: when the synchronous standby disappears Patroni empties
    # synchronous_standby_names, so commits stop waiting for it and writes go on.
    sync = next(m.name for m in lab.probe().members() if m.role == "sync_standby")
    lead = leader(lab)
    # The check behind the verdict judges the whole outcome: before the fault it fails on /sync.
    whole = expectations.commits_after_standby_lost(lab.ctx, lead, None, sync, wait=False)
    before = whole()
    assert not before.ok and before.reason == f"Patroni still lists {sync} as synchronous standby", before
    out = chaos(lab, "kill", sync, "--wait")
    assert out["happened"] is True
    assert out["verdict"].endswith(f"{sync} is no synchronous standby, and a commit through HAProxy does not wait"), out
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
    haproxy = lab.topo.haproxy.name
    assert f"{haproxy} has no iptables inside to partition it with" in refused(lab, "partition", haproxy, "--from", "etcd")
    assert f"{haproxy} has no iptables inside to degrade it with" in refused(lab, "degrade", haproxy, "--loss", "10%")
    assert lab_state(lab) == before

    chaos(lab, "isolate", running)
    isolated = lab_state(lab)
    assert f"{running} is already isolated" in refused(lab, "isolate", running)
    assert lab_state(lab) == isolated
