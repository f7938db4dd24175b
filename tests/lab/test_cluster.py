"""The running lab, checked through the network with the tools a DBA uses."""
from __future__ import annotations

import json
import time

import psycopg
import pytest
import requests

pytestmark = [pytest.mark.docker, pytest.mark.lab]


def test_etcd_members_are_distinct_with_one_leader(healthy_lab):
    endpoints = healthy_lab.probe().etcd()
    assert [e.error for e in endpoints] == [""] * 3
    assert len({e.id for e in endpoints}) == 3
    assert sum(e.is_leader for e in endpoints) == 1
    assert all(e.version.startswith("3.4.") for e in endpoints)
    assert len({e.raft_term for e in endpoints}) == 1


def test_etcd_refuses_a_client_without_a_certificate(healthy_lab):
    probe = healthy_lab.probe()
    node = healthy_lab.topo.etcd[0]
    with pytest.raises(requests.exceptions.SSLError):   # not any ConnectionError: a dead node is one
        requests.post(f"{probe.etcd_url(node)}/v3/maintenance/status", json={}, timeout=3,
                      verify=probe.etcd_tls.ca)
    # The same request with the client certificate is answered: the refusal is about the certificate.
    assert probe.etcd_status(node).error == ""


def test_rest_api_primary_on_exactly_one_node_and_replica_on_the_others(healthy_lab):
    probe = healthy_lab.probe()
    codes = {n.name: (probe.rest(n, "/primary")[0], probe.rest(n, "/replica")[0], probe.rest(n, "/sync")[0])
             for n in healthy_lab.topo.db}
    primaries = [name for name, (p, _, _) in codes.items() if p == 200]
    assert len(primaries) == 1, codes
    for name, (p, r, _) in codes.items():
        if name not in primaries:
            assert (p, r) == (503, 200), codes
    # The synchronous standby is reported as such, by /sync and by /cluster.
    sync = [name for name, (_, _, s) in codes.items() if s == 200]
    assert len(sync) == 1 and sync[0] not in primaries
    roles = {m.name: m.role for m in probe.members()}
    assert roles[sync[0]] == "sync_standby"


def test_rest_api_refuses_a_client_without_a_certificate(healthy_lab):
    probe = healthy_lab.probe()
    node = healthy_lab.topo.db[0]
    url = probe.rest_url(node, "/patroni")
    # SSLError only: a dead node or a closed port is a plain ConnectionError and fails this test.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=3, verify=probe.patroni_tls.ca)
    # The positive control: the same URL with the client certificate is answered, so the refusal
    # above is about the certificate, not a node that is down or a wrong address.
    answer = requests.get(url, timeout=3, verify=probe.patroni_tls.ca,
                          cert=(probe.patroni_tls.cert, probe.patroni_tls.key))
    assert answer.status_code == 200 and answer.json()["state"] == "running"


def test_psql_through_haproxy_verifies_tls_and_reaches_the_primary(healthy_lab):
    with psycopg.connect(healthy_lab.dsn(), password=healthy_lab.password(), connect_timeout=5) as conn:
        version, in_recovery, ssl_on = conn.execute(
            "select current_setting('server_version_num')::int, pg_is_in_recovery(), "
            "(select ssl from pg_stat_ssl where pid = pg_backend_pid())").fetchone()
    assert 180000 <= version < 190000
    assert in_recovery is False
    assert ssl_on is True


def test_the_replica_port_lands_on_a_replica(healthy_lab):
    with psycopg.connect(healthy_lab.dsn(replica=True), password=healthy_lab.password(), connect_timeout=5) as conn:
        assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is True


def test_published_port_on_localhost_verifies_tls(healthy_lab):
    with psycopg.connect(healthy_lab.dsn(published=True), password=healthy_lab.password(), connect_timeout=5) as conn:
        assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is False


def test_a_connection_without_tls_is_refused(healthy_lab):
    plain = healthy_lab.dsn().replace("sslmode=verify-full", "sslmode=disable")
    with pytest.raises(psycopg.OperationalError, match="no encryption|pg_hba.conf"):
        psycopg.connect(plain, password=healthy_lab.password(), connect_timeout=5)


def test_a_commit_through_haproxy_is_on_the_synchronous_standby_when_it_returns(healthy_lab):
    probe = healthy_lab.probe()
    members = probe.members()
    sync = next(m for m in members if m.role == "sync_standby")
    with psycopg.connect(healthy_lab.dsn(), password=healthy_lab.password(), autocommit=True) as primary:
        states = dict(primary.execute("select application_name, sync_state from pg_stat_replication").fetchall())
        assert states[sync.name] == "sync"
        primary.execute("create table if not exists sync_probe (id bigint primary key, at timestamptz default now())")
        marker = time.time_ns()
        with primary.transaction():
            # remote_apply: the commit returns only once the synchronous standby has replayed it.
            primary.execute("set local synchronous_commit = remote_apply")
            primary.execute("insert into sync_probe (id) values (%s)", (marker,))
    standby_dsn = (f"host={sync.host} port={healthy_lab.topo.ports.postgres} dbname=postgres user=postgres "
                   f"sslmode=verify-full sslrootcert={probe.patroni_tls.ca}")
    with psycopg.connect(standby_dsn, password=healthy_lab.password()) as standby:
        assert standby.execute("select pg_is_in_recovery()").fetchone()[0] is True
        assert standby.execute("select count(*) from sync_probe where id = %s", (marker,)).fetchone()[0] == 1


def test_status_json_holds_members_etcd_and_haproxy(healthy_lab):
    doc = json.loads(healthy_lab.cli("status", "--json").stdout)
    assert {m["name"] for m in doc["members"]} == {n.name for n in healthy_lab.topo.db}
    for key in ("name", "host", "role", "state", "timeline", "lag"):
        assert all(key in m for m in doc["members"])
    assert {e["name"] for e in doc["etcd"]} == {n.name for n in healthy_lab.topo.etcd}
    for key in ("name", "id", "version", "is_leader", "raft_term"):
        assert all(key in e for e in doc["etcd"])
    assert {(h["backend"], h["status"]) for h in doc["haproxy"]} >= {("primary", "UP"), ("replicas", "UP")}


def test_status_table_has_patronictl_columns(healthy_lab):
    out = healthy_lab.cli("status").stdout
    assert "| Member" in out and "Receive LSN" in out and "Replay LSN" in out
    assert "Is Leader" in out and "Raft Term" in out


def test_psql_command_needs_no_psql_on_the_host(healthy_lab):
    out = healthy_lab.cli("psql", "--", "-tAc", "select pg_is_in_recovery()").stdout
    assert out.strip() == "f"
    out = healthy_lab.cli("psql", "--replica", "--", "-tAc", "select pg_is_in_recovery()").stdout
    assert out.strip() == "t"


def test_exec_runs_patronictl_with_the_lab_config(healthy_lab):
    out = healthy_lab.cli("exec", healthy_lab.topo.db[0].name, "--", "patronictl", "-c", "/etc/patroni/config.yml", "list").stdout
    assert "Leader" in out and "Sync Standby" in out


def test_unknown_node_is_refused_with_the_valid_names(healthy_lab):
    proc = healthy_lab.cli("exec", "dbnode7", "--", "true", check=False)
    assert proc.returncode == 1
    assert "unknown node 'dbnode7'; valid nodes are: etcd1, etcd2, etcd3, dbnode1, dbnode2, haproxy." in proc.stderr
    assert "Traceback" not in proc.stderr
