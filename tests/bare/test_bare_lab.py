"""A bare lab (`up --bare`) is a set of freshly installed Ubuntu 24.04 VMs: systemd is PID 1 and
runs, the software is where Ubuntu puts it, and nothing is configured or listening."""
from __future__ import annotations

import json
import subprocess

import pytest

from pgha_lab.topology import Role

# One bare lab for all of them: the tests stay on one worker (test.sh runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("bare")
LAB_PORTS = (2379, 2380, 5432, 8008, 8404)


def listening_ports(lab, node: str) -> set[int]:
    """TCP ports in LISTEN on the node (IPv4 and IPv6), read from /proc like `ss -ltn`."""
    out = lab.sh(node, "cat /proc/net/tcp /proc/net/tcp6").stdout
    ports = set()
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":   # TCP_LISTEN
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_every_node_boots_systemd_and_nothing_listens(fresh_bare_lab):
    lab = fresh_bare_lab
    for node in lab.ctx.topology.nodes:
        assert lab.sh(node.name, "cat /proc/1/comm").stdout.strip() == "systemd", node.name
        assert lab.sh(node.name, "systemctl is-system-running").stdout.strip() == "running", node.name
        assert not listening_ports(lab, node.name) & set(LAB_PORTS), node.name
        # As VMs made from one template: named "ubuntu" until someone names them.
        assert lab.sh(node.name, "hostname").stdout.strip() == "ubuntu"


def test_software_is_where_ubuntu_puts_it_and_nothing_is_configured(fresh_bare_lab):
    lab = fresh_bare_lab
    topo = lab.ctx.topology
    for node in topo.nodes:
        lab.sh(node.name, "command -v openssl python3 sudo nano vi >/dev/null")
        # No certificate, key or service configuration of the lab anywhere.
        found = lab.sh(node.name, "find /etc /var/lib /opt -name '*.key' -o -name '*.pem' -o -name 'ca.crt' "
                                  "-o -name etcd.conf.yml -o -name config.yml 2>/dev/null").stdout.split()
        assert [f for f in found if not f.startswith("/etc/ssl/")] == [], node.name
        if node.role is Role.ETCD:
            assert "etcd Version: 3.4.30" in lab.sh(node.name, "etcd --version").stdout
            assert lab.sh(node.name, "systemctl is-enabled etcd", check=False).stdout.strip() == "disabled"
            lab.sh(node.name, "test ! -e /var/lib/etcd/default && test -z \"$(ls -A /var/lib/etcd)\"")
        elif node.role is Role.DB:
            assert "(PostgreSQL) 18." in lab.sh(node.name, "/usr/lib/postgresql/18/bin/postgres --version").stdout
            lab.sh(node.name, "test ! -e /var/lib/postgresql/18/main && test ! -e /etc/patroni && test ! -e /opt/patroni")
            lab.sh(node.name, "getent passwd postgres >/dev/null && test -d /run/postgresql")
        else:
            assert "HAProxy version 2.8." in lab.sh(node.name, "haproxy -v").stdout
            assert lab.sh(node.name, "systemctl is-enabled haproxy", check=False).stdout.strip() == "disabled"


def test_patroni_is_not_there_until_the_course_s_pip_install_works_offline(fresh_bare_lab):
    lab = fresh_bare_lab
    node = lab.ctx.topology.db[0].name
    missing = lab.sh(node, "python3 -c 'import patroni'", check=False)
    assert missing.returncode != 0 and "No module named 'patroni'" in missing.stderr
    # Offline for real: the lab network is internal (Docker drops whatever would leave it) and the
    # node has no other network.
    net = lab.ctx.topology.network_name
    assert subprocess.run(["docker", "network", "inspect", "-f", "{{.Internal}}", net], capture_output=True,
                          text=True, check=True).stdout.strip() == "true"
    nets = subprocess.run(["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}",
                           lab.ctx.topology.container_name(node)], capture_output=True, text=True, check=True).stdout
    assert list(json.loads(nets)) == [net]
    try:
        # The course's commands, as typed.
        lab.sh(node, "python3 -m venv /opt/patroni && /opt/patroni/bin/pip install 'patroni[psycopg3,etcd3]'",
               timeout=600)
        assert lab.sh(node, "/opt/patroni/bin/patroni --version").stdout.strip() == "patroni 4.1.5"
        frozen = set(lab.sh(node, "/opt/patroni/bin/pip freeze").stdout.split())
        assert {"patroni==4.1.5", "psycopg==3.3.9", "python-etcd==0.4.5"} <= frozen
        lab.sh(node, "/opt/patroni/bin/python -c 'import patroni.dcs.etcd3, psycopg'")
    finally:
        lab.sh(node, "rm -rf /opt/patroni")


def test_status_says_what_is_there_and_what_is_not_configured_yet(fresh_bare_lab):
    lab = fresh_bare_lab
    proc = lab.cli("status")
    for part in ("etcd: not configured yet", "Patroni: not configured yet", "HAProxy: not configured yet"):
        assert part in proc.stdout
    assert "unreachable" not in proc.stdout and "stale" not in proc.stdout and not proc.stderr
    doc = json.loads(lab.cli("status", "--json").stdout)
    assert doc["bare"] is True and doc["etcd"] is None and doc["members"] is None
    assert {n["node"]: (n["system"], n["configured"]) for n in doc["nodes"]} == {
        n.name: ("running", False) for n in lab.ctx.topology.nodes}


def shutdowns(lab, node: str) -> int:
    """How often the node's systemd reached its shutdown target (the journal persists in /var/log/journal).
    The boot's journal is flushed there first: until systemd-journal-flush has run (late on a loaded
    host), it is in /run, and a shutdown then loses it (CI: dbnode2 with no shutdown on record)."""
    out = lab.sh(node, "journalctl --flush; journalctl --no-pager -q -o cat | grep -c 'Reached target shutdown.target'"
                       " || true").stdout
    return int(out.strip() or 0)


def exit_code(lab, node: str) -> int:
    return int(subprocess.run(["docker", "inspect", "-f", "{{.State.ExitCode}}", lab.ctx.topology.container_name(node)],
                              capture_output=True, text=True, check=True).stdout)


def test_docker_stop_shuts_down_through_systemd_and_kill_is_a_power_cut(fresh_bare_lab):
    lab = fresh_bare_lab
    node = lab.ctx.topology.haproxy
    ctl = lab.ctx.docker
    before = shutdowns(lab, node.name)
    ctl.stop(node)
    assert exit_code(lab, node.name) == 0
    ctl.start(node)
    lab.cli("up", "--bare")   # waits for systemd to finish booting again
    assert shutdowns(lab, node.name) == before + 1
    ctl.kill(node)
    assert exit_code(lab, node.name) == 137   # SIGKILL to systemd: no unit was stopped
    ctl.start(node)
    lab.cli("up", "--bare")
    assert shutdowns(lab, node.name) == before + 1


def test_down_shuts_the_nodes_down_and_up_boots_them_with_the_work_on_them(fresh_bare_lab):
    lab = fresh_bare_lab
    nodes = list(lab.ctx.topology.nodes)
    lab.sh("dbnode1", "echo built-by-hand > /root/work.txt")
    before = {n.name: shutdowns(lab, n.name) for n in nodes}
    lab.cli("down")
    states = lab.ctx.docker.states(nodes)
    assert {n: s.status for n, s in states.items()} == {n.name: "exited" for n in nodes}
    assert all(exit_code(lab, n.name) == 0 for n in nodes)   # systemd's clean shutdown, on every node
    lab.up()
    assert lab.sh("dbnode1", "cat /root/work.txt").stdout == "built-by-hand\n"   # the same VM, booted again
    assert {n.name: shutdowns(lab, n.name) for n in nodes} == {n: c + 1 for n, c in before.items()}
    lab.sh("dbnode1", "rm /root/work.txt")


def test_a_snapshot_restore_gives_back_the_names_a_learner_gave_the_nodes(fresh_bare_lab):
    # `docker commit` keeps only Docker's empty placeholders of /etc/hostname and /etc/hosts: before
    # the fix a restored bare lab had nameless nodes (hostname = the container id), failing track step 1.
    lab = fresh_bare_lab
    lab.sh("etcd1", "echo etcd1 > /etc/hostname && hostname etcd1 && echo '10.0.0.11 etcd1-by-hand' >> /etc/hosts")
    lab.cli("snapshot", "save", "named")
    try:
        lab.cli("snapshot", "restore", "named")
        assert lab.sh("etcd1", "cat /etc/hostname").stdout == "etcd1\n"
        assert lab.sh("etcd1", "hostname").stdout == "etcd1\n"
        assert "10.0.0.11 etcd1-by-hand" in lab.sh("etcd1", "cat /etc/hosts").stdout
        assert lab.sh("etcd2", "cat /etc/hostname").stdout == "ubuntu\n"   # an untouched node as it was
    finally:
        lab.cli("snapshot", "delete", "named", check=False)
        # Back to the template's name, so the next test meets a fresh bare lab.
        lab.sh("etcd1", "echo ubuntu > /etc/hostname && hostname ubuntu && sed -i '/etcd1-by-hand/d' /etc/hosts",
               check=False)


def test_a_bare_lab_cannot_turn_ready_in_place(fresh_bare_lab):
    proc = fresh_bare_lab.cli("up", "--bare", "off", check=False)
    assert proc.returncode != 0
    assert "cannot switch between bare and ready nodes in place" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert fresh_bare_lab.ctx.topology.bare


@pytest.mark.parametrize("flags", [["--haproxy-nodes", "2"], ["--disk-size", "2G"]])
def test_bare_lab_shapes_it_cannot_have_are_refused(fresh_bare_lab, flags):
    proc = fresh_bare_lab.cli("up", "--bare", *flags, check=False)
    assert proc.returncode != 0 and "a bare lab has one HAProxy node" in proc.stderr
    assert fresh_bare_lab.ctx.topology.haproxy2 is None and fresh_bare_lab.ctx.topology.db_disk_size is None
