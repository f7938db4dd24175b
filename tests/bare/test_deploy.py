"""`export ansible` + ansible-playbook over the docker connection turn a bare lab into the cluster the
ready lab runs. Checked the way a DBA would, from the host over the lab's network: Patroni's REST API
and etcd's health over TLS with the lab's CA and client certificate, patronictl on a node, a write
through HAProxy's primary port; a second run changes nothing; each service runs the file the lab's
renderer makes for that node (what the ready lab's node of the same name mounts). In the suite the
cluster checked is the one the track's reference solution built tag by tag (the bare chain's order)."""
from __future__ import annotations

import json
import os
import uuid

import psycopg
import pytest
import requests

from pgha_lab import node_paths, render, tls
from pgha_lab.deploy import export, run_playbook
from pgha_lab.render import systemd
from pgha_lab.topology import Role
from pgha_lab.wait import Verdict, wait_until

# The bare lab's chain: one lab, one worker (test.sh: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("bare")


def rest(lab, node, path: str) -> requests.Response:
    """GET on a node's API over TLS, verified against the lab's CA, with the host's client certificate."""
    files = tls.host_client(lab.ctx.paths)
    port = lab.ctx.topology.ports.restapi if node.role is Role.DB else lab.ctx.topology.ports.etcd_client
    return requests.get(f"https://{node.address}:{port}{path}", verify=str(files.ca),
                        cert=(str(files.cert), str(files.key)), timeout=10)


def test_the_export_is_the_project_the_playbook_built_the_cluster_with(configured_bare_lab, tmp_path):
    """What `export ansible` writes is what the runs used (what a user runs by hand). In the suite the
    cluster is the track's reference solution, site.yml run tag by tag from a fresh bare lab
    (test_track_solve, before this file in the bare chain); run alone, configured_bare_lab runs it whole."""
    lab = configured_bare_lab
    used = export.default_out(lab.ctx)
    assert "PLAY RECAP" in (used / "last-run.log").read_text()
    out = tmp_path / "project"
    proc = lab.cli("export", "ansible", "--out", str(out))
    assert f"cd {out} && ansible-playbook -i inventory/lab.yml site.yml" in proc.stdout, proc.stdout
    for name in ("site.yml", "inventory/lab.yml", "files/lab/dbnode1/patroni.yml", "files/lab/etcd2/etcd.conf.yml"):
        assert (out / name).read_bytes() == (used / name).read_bytes(), name


def test_the_playbook_built_cluster_is_healthy_seen_from_the_network(configured_bare_lab):
    lab = configured_bare_lab
    ctx, topo = lab.ctx, lab.ctx.topology

    # etcd: every member healthy over TLS with a client certificate, and none without one.
    for node in topo.etcd:
        assert rest(lab, node, "/health").json()["health"] == "true", node.name
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{topo.etcd[0].address}:{topo.ports.etcd_client}/health",
                     verify=str(tls.host_client(ctx.paths).ca), timeout=10)

    # Patroni's REST API: one leader running, every other member streaming, a synchronous standby.
    members = rest(lab, topo.db[0], "/cluster").json()["members"]
    roles = sorted((m["role"], m["state"]) for m in members)
    assert sorted(m["name"] for m in members) == [n.name for n in topo.db], members
    assert roles.count(("leader", "running")) == 1, members
    assert all(state == "streaming" for role, state in roles if role != "leader"), members
    assert any(role in ("sync_standby", "quorum_standby") for role, _ in roles), members
    leader = next(m["name"] for m in members if m["role"] == "leader")
    # patronictl, as the course runs it on a db node (it reads etcd over TLS with its own certificate).
    listed = json.loads(lab.sh(topo.db[-1].name, f"patronictl -c {node_paths.PATRONI_CONFIG} list -f json").stdout)
    assert {(m["Member"], m["Role"]) for m in listed} >= {(leader, "Leader")}, listed

    # A write through HAProxy's primary port (verify-full from the host) lands on the leader and
    # reaches a replica through the replicas' port.
    mark = uuid.uuid4().hex
    with psycopg.connect(ctx.dsn(), password=lab.password(), connect_timeout=10, autocommit=True) as conn:
        conn.execute("create table if not exists deploy_check (mark text)")
        conn.execute("insert into deploy_check values (%s)", (mark,))
        addr, in_recovery = conn.execute("select host(inet_server_addr()), pg_is_in_recovery()").fetchone()
    assert (addr, in_recovery) == (str(topo.node(leader).address), False)

    def replicated() -> Verdict:
        with psycopg.connect(ctx.dsn(replica=True), password=lab.password(), connect_timeout=10) as conn:
            seen = conn.execute("select count(*) from deploy_check where mark = %s", (mark,)).fetchone()[0]
            standby = conn.execute("select pg_is_in_recovery()").fetchone()[0]
        return Verdict(seen == 1 and standby, f"replica: in recovery {standby}, the write seen {seen} times")
    verdict = wait_until(replicated, 30, interval_s=0.5)
    assert verdict.ok, verdict.reason
    verdict = ctx.health()   # and the lab's own assessment (health.assess_lab, as `up` waits for) agrees
    assert verdict.ok, verdict.reason

    # Services under systemd, enabled at boot; each node named as the topology says.
    for node in topo.nodes:
        unit = systemd.UNITS[node.role]
        assert lab.sh(node.name, f"systemctl is-enabled {unit}; systemctl is-active {unit}").stdout.split() == \
            ["enabled", "active"], node.name
        assert lab.sh(node.name, "hostname").stdout.strip() == node.name


def test_a_second_run_changes_nothing(configured_bare_lab, playbook_runs):
    again = run_playbook(configured_bare_lab.ctx)
    playbook_runs.append(again)
    print(f"figure: playbook, second run {again.seconds:.0f} s, load {os.getloadavg()[0]:.1f}")
    assert again.ok and set(again.hosts) == set(configured_bare_lab.ctx.topology.names)
    assert again.changed == 0, {h: s.changed for h, s in again.hosts.items() if s.changed}


# -- each service runs what the lab's renderer makes for its node -----------------------------------
FIND = {  # the service's main process, found in /proc on the node
    Role.ETCD: "grep -lx etcd /proc/[0-9]*/comm",
    Role.DB: "grep -l 'bin/patron[i]' /proc/[0-9]*/cmdline",   # [i]: the grep itself does not match
    Role.HAPROXY: "grep -lx haproxy /proc/[0-9]*/comm",
}
CONFIG_FLAG = {Role.ETCD: "--config-file", Role.HAPROXY: "-f"}   # Patroni takes its file as the last argument


def running_config(lab, node) -> tuple[str, str, str]:
    """(user, config path, config text) of the service's oldest process (HAProxy's master, not a worker)."""
    script = (f"pid=$({FIND[node.role]} 2>/dev/null | cut -d/ -f3 | sort -n | head -n1); "
              "tr '\\0' '\\n' </proc/$pid/cmdline; echo '--'; awk '/^Uid:/ {print $2}' /proc/$pid/status | "
              "xargs getent passwd | cut -d: -f1")
    args, user = lab.sh(node.name, script).stdout.split("--\n")
    argv = args.split()
    path = argv[argv.index(CONFIG_FLAG[node.role]) + 1] if node.role in CONFIG_FLAG else argv[-1]
    return user.strip(), path, lab.sh(node.name, f"cat {path}").stdout


def test_each_service_runs_the_file_the_lab_renders_for_its_node(configured_bare_lab):
    ctx = configured_bare_lab.ctx
    topo = ctx.topology
    boot = render.bootstrap_profile(ctx.paths, ctx.profile), render.bootstrap_settings(ctx.paths, ctx.settings)
    user = {Role.ETCD: "etcd", Role.DB: "postgres", Role.HAPROXY: "root"}   # HAProxy's master; its workers drop to haproxy
    for node in topo.nodes:
        rendered = {f.container_path: f.content for f in render.node_files(topo, node, ctx.profile, *boot)}
        who, path, text = running_config(configured_bare_lab, node)
        assert who == user[node.role], node.name
        # The ready lab's node of this name mounts this very text at this path (render.node_mounts).
        assert path in rendered, (node.name, path, sorted(rendered))
        assert text == rendered[path], (node.name, path)
