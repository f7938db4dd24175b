"""Commands and options no other lab test runs, on the suite's lab: `config show` of a db and an etcd
node and `--json`, `certs --json`, `up --json` of a healthy lab, `exec -u`, `logs -f`, `failover`
without `--to`, `roll NODE` and `roll` of every node, `chaos flap` from the command line, and through
the library `degrade` of an etcd member, `partition --from` a list, `fill-disk --leave` and
`start-haproxy` on a one-HAProxy lab. Where the command line itself is not what is tested, the same
code is called in-process (a CLI start costs seconds on a loaded machine)."""
from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest
import requests
import yaml

from pgha_lab import disks
from pgha_lab.chaos.actions import CHAIN_IN, LOSS_IN, Chaos, wait as wait_outcome
from pgha_lab.errors import EXIT_INTERRUPTED
from tests.labkit import PROJECT, REPO
from tests.lab.test_chaos import leader, replicas, rest_code, wait_until, write_through_haproxy

pytestmark = [pytest.mark.docker, pytest.mark.lab]


def containers(lab) -> dict[str, str]:
    """node -> container id."""
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=pgha-lab.project={lab.topo.project}",
                          "--format", '{{.Label "pgha-lab.node"}} {{.ID}}'], capture_output=True, text=True).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def inside(lab, node: str, path: str) -> str:
    return lab.ctx.docker.exec(lab.topo.node(node), "cat", path).stdout


def test_config_show_prints_what_a_db_and_an_etcd_node_run_and_json_carries_the_same(healthy_lab):
    lab = healthy_lab
    db, etcd = lab.topo.db[0].name, lab.topo.etcd[0].name
    shown = lab.cli("config", "show", db).stdout
    # The exact file the node reads, byte for byte, under its container path.
    patroni = inside(lab, db, "/etc/patroni/config.yml")
    assert "==> /etc/patroni/config.yml" in shown and patroni.rstrip("\n") in shown
    assert f"name: {db}" in patroni and "replication" in shown and "fast profile" in shown
    etcd_shown = lab.cli("config", "show", etcd).stdout
    etcd_conf = inside(lab, etcd, "/etc/etcd/etcd.conf.yml")
    assert etcd_conf.rstrip("\n") in etcd_shown and yaml.safe_load(etcd_conf)["name"] == etcd

    doc = json.loads(lab.cli("config", "show", db, "--json").stdout)
    assert (doc["node"], doc["role"], doc["profile"]) == (db, "dbnode", "fast")
    files = {f["path"]: f["content"] for f in doc["files"]}
    assert files["/etc/patroni/config.yml"] == patroni
    assert doc["settings"]["replication"] == "sync" and {"ca.crt", "restapi.crt", "restapi.key"} <= set(doc["tls"]["files"])
    refused = lab.cli("config", "show", "dbnode9", check=False)
    assert refused.returncode == 1 and "unknown node 'dbnode9'" in refused.stderr


def test_certs_json_and_up_json_describe_the_running_lab_and_change_nothing(healthy_lab):
    lab = healthy_lab
    before = containers(lab)
    certs = json.loads(lab.cli("certs", "--json").stdout)
    assert certs["dir"] == str(lab.paths.certs) and certs["changed"] is False and certs["ca_renewed"] is False, certs
    up = json.loads(lab.cli("up", "--json").stdout)
    assert (up["project"], up["profile"]) == (PROJECT, "fast")
    assert {m["name"] for m in up["members"]} == {n.name for n in lab.topo.db}
    assert [m["name"] for m in up["members"] if m["role"] == "leader"] == [leader(lab)]
    assert up["settings"]["replication"] == "sync" and f"host={lab.topo.haproxy.address} " in up["dsn"]
    assert containers(lab) == before, "up --json of a healthy lab replaced a node"


def test_exec_as_another_user_and_logs_follow(healthy_lab):
    lab = healthy_lab
    db = lab.topo.db[0].name
    # A db node's commands run as postgres unless -u says otherwise.
    assert lab.cli("exec", db, "--", "id", "-un").stdout.strip() == "postgres"
    assert lab.cli("exec", "-u", "root", db, "--", "id", "-un").stdout.strip() == "root"
    # logs -f keeps printing: Patroni's HA loop line arrives again every loop_wait (1 s) while it runs.
    cmd = [sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", PROJECT, "logs", db, "-f", "-n", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: sum(f"({db})" in line for line in lines) >= 3, 60, "three new HA loop lines from logs -f")
        assert proc.poll() is None, "logs -f stopped by itself"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=10)


def test_failover_without_a_candidate_promotes_the_synchronous_standby(lab):
    old = leader(lab)
    sync = next(m.name for m in lab.probe().members() if m.role == "sync_standby")
    out = lab.cli("failover").stdout
    assert f"failover: {old} -> " in out and f"{sync} takes writes through HAProxy" in out, out
    assert leader(lab) == sync and write_through_haproxy(lab) == sync
    wait_until(lambda: rest_code(lab, old, "/replica") == 200, 90, f"{old} streaming as a replica")


def test_roll_of_one_node_then_of_every_node(lab):
    before = containers(lab)
    replica = replicas(lab)[0]
    one = lab.cli("roll", replica)
    after_one = containers(lab)
    assert f"restart {replica}" in one.stderr and "switchover" not in one.stderr, one.stderr
    assert after_one[replica] != before[replica]
    assert {n: c for n, c in after_one.items() if n != replica} == {n: c for n, c in before.items() if n != replica}
    assert lab.ctx.health().ok

    old, replicas_before = leader(lab), replicas(lab)
    every = lab.cli("roll")
    after = containers(lab)
    assert all(after[n] != after_one[n] for n in after_one), (after_one, after)
    # The plan it printed, in the safe order: etcd, the replicas, a switchover away from the leader,
    # the old leader, HAProxy last.
    plan = re.findall(r"^\s+\d+\. (restart|switchover away from) ([\w-]+):", every.stderr, re.M)
    etcd = sorted(n.name for n in lab.topo.etcd)
    assert sorted(n for _, n in plan[:3]) == etcd and all(a == "restart" for a, _ in plan[:3]), plan
    assert plan[3:] == [("restart", r) for r in replicas_before] + [("switchover away from", old), ("restart", old),
                                                                    ("restart", lab.topo.haproxy.name)], plan
    assert leader(lab) != old and lab.ctx.health().ok
    assert write_through_haproxy(lab) == leader(lab)


def test_chaos_flap_from_the_command_line_leaves_a_healthy_lab(lab):
    replica = replicas(lab)[0]
    proc = lab.cli("chaos", "flap", replica, "--from", "etcd", "--every", "2", "--for", "6", "--wait", "--json")
    out = json.loads(proc.stdout)
    assert out["node"] == replica and out["happened"] is True, out
    assert "cut off from etcd1, etcd2, etcd3" in out["done"] and out["figures"]["cuts"] >= 1, out
    # Nothing of the flap is left: the node's chaos chain is empty and the leader never moved.
    rules = lab.ctx.docker.exec(lab.topo.node(replica), "iptables", "-w", "-S", CHAIN_IN).stdout.splitlines()
    assert [r for r in rules if r.startswith("-A ")] == []


def test_degrade_on_an_etcd_member_and_a_partition_from_a_list(lab):
    ctx = lab.ctx
    chaos = Chaos(ctx)
    etcd3 = ctx.topology.etcd[2]
    chaos.run("degrade", etcd3.name, loss="20%")
    try:
        drops = [r for r in ctx.docker.exec(etcd3, "iptables", "-w", "-S", LOSS_IN).stdout.splitlines() if "statistic" in r]
        assert len(drops) == 1 and "--probability 0.2" in drops[0], drops
        # A lossy member still answers: within a few tries (a dropped segment costs TCP a retransmission,
        # and the 2 s read timed out once in CI at load 25)
        wait_until(lambda: lab.probe().etcd_status(etcd3).error == "", 20, f"{etcd3.name} answering through its loss")
    finally:
        chaos.run("degrade", etcd3.name, clear=True)
    assert not [r for r in ctx.docker.exec(etcd3, "iptables", "-w", "-S", LOSS_IN).stdout.splitlines() if "statistic" in r]

    # A replica cut off from two of the three etcd members: it still reaches the third, so it streams on.
    replica = replicas(lab)[0]
    e1, e2 = ctx.topology.etcd[0], ctx.topology.etcd[1]
    outcome = wait_outcome(chaos.run("partition", replica, peers=f"{e1.name},{e2.name}"))
    assert outcome.happened, outcome.verdict
    rules = sorted(r for r in ctx.docker.exec(ctx.topology.node(replica), "iptables", "-w", "-S", CHAIN_IN)
                   .stdout.splitlines() if r.startswith("-A "))
    assert rules == sorted(f"-A {CHAIN_IN} -s {n.address}/32 -j DROP" for n in (e1, e2)), rules
    cleared = wait_outcome(chaos.run("partition", replica, clear=True))
    assert cleared.happened, cleared.verdict


def test_fill_disk_leaving_room_and_start_haproxy_after_kill_haproxy(lab):
    ctx = lab.ctx
    chaos = Chaos(ctx)
    replica = replicas(lab)[0]
    d = disks.disk(ctx.paths, replica)
    chaos.run("fill-disk", replica, leave="64M")
    try:
        free, size = d.usage()
        # What was asked, give or take what PostgreSQL wrote meanwhile; far from full and from empty.
        assert 48 << 20 <= free <= 72 << 20, (free, size)
    finally:
        freed = wait_outcome(chaos.run("free-disk", replica))
    assert freed.happened and d.filler_size() == 0, freed.verdict

    lead = leader(lab)
    killed = wait_outcome(chaos.run("kill-haproxy", None))
    assert killed.happened and not ctx.docker.state(ctx.topology.haproxy).running, killed.verdict
    started = wait_outcome(chaos.run("start-haproxy", None))
    assert started.happened, started.verdict
    assert write_through_haproxy(lab) == lead


def test_the_dashboard_command_serves_the_lab_until_interrupted(healthy_lab):
    lab = healthy_lab
    with socket.socket() as s:   # a free port, given back before the command binds it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", PROJECT, "dashboard", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        match = re.fullmatch(rf"Dashboard of lab '{PROJECT}': (http://127\.0\.0\.1:{port}/)\?token=([\w-]+)\n", first)
        assert match, first + proc.stderr.read() if proc.poll() is not None else first
        url, token = match.groups()
        http = requests.Session()
        http.trust_env = False
        # The page and its live reading, the lab's own nodes in it once the first tick has run.
        wait_until(lambda: http.get(url, timeout=5).status_code == 200, 60, "the page served")
        def view():
            return http.get(url + "api/state", timeout=5).json()["view"]
        wait_until(view, 60, "a reading of the lab on /api/state")
        doc = view()
        assert doc["project"] == PROJECT and {n["name"] for n in doc["nodes"]} == set(lab.topo.names)
        assert doc["leader"] == leader(lab)
        # The printed token is the one the server wants: a refused resume (nothing is paused) proves it.
        r = http.post(url + "api/chaos", json={"action": "resume", "target": lab.topo.db[0].name},
                      headers={"X-PGHA-Token": token, "Origin": url.rstrip("/")}, timeout=60)
        assert r.status_code == 409 and "not paused" in r.json()["error"], r.text
        proc.send_signal(signal.SIGINT)   # Ctrl-C
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Ctrl-C ends it as it ends every command: exit 130, one line saying so.
    assert (proc.returncode, proc.stderr.read()) == (EXIT_INTERRUPTED, "pgha-lab: interrupted.\n")
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the port still answers after Ctrl-C"
