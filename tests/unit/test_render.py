"""Rendered etcd, Patroni and HAProxy configs: they parse and say what the model says."""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
import yaml

from pgha_lab import node_paths, profiles, secrets

from pgha_lab import render
from pgha_lab.errors import LabError
from pgha_lab.paths import LabPaths
from pgha_lab.topology import Topology

SEED, FAST = profiles.SEED, profiles.FAST


@pytest.fixture()
def lab(tmp_path: Path):
    paths, topo = LabPaths(home=tmp_path), Topology.build()
    render.write_lab(paths, topo, SEED)
    return paths, topo


def _yaml(paths: LabPaths, node: str, name: str) -> dict:
    return yaml.safe_load((paths.node_dir(node) / name).read_text())


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


# -- etcd ------------------------------------------------------------------------------------
def test_etcd_members_have_their_own_name_dir_and_urls_and_the_whole_initial_cluster(lab):
    paths, topo = lab
    seen_dirs = set()
    for m in topo.etcd:
        conf = _yaml(paths, m.name, "etcd.conf.yml")
        assert conf["name"] == m.name
        assert conf["data-dir"] == f"{node_paths.ETCD_DATA_ROOT}/{m.name}"
        seen_dirs.add(conf["data-dir"])
        assert conf["advertise-client-urls"] == f"https://{m.address}:2379"
        assert conf["listen-client-urls"].split(",") == [f"https://{m.address}:2379", "https://127.0.0.1:2379"]
        assert conf["listen-peer-urls"] == conf["initial-advertise-peer-urls"] == f"https://{m.address}:2380"
        members = dict(item.split("=", 1) for item in conf["initial-cluster"].split(","))
        assert members == {e.name: f"https://{e.address}:2380" for e in topo.etcd}
        assert conf["initial-cluster-token"] == f"{topo.project}-etcd"
        assert conf["enable-grpc-gateway"] is True
        for section in ("client-transport-security", "peer-transport-security"):
            sec = conf[section]
            assert sec["client-cert-auth"] is True
            assert sec["trusted-ca-file"] == f"{node_paths.ETCD_TLS}/ca.crt"
            assert sec["cert-file"] == f"{node_paths.ETCD_TLS}/etcd.crt"
            assert sec["key-file"] == f"{node_paths.ETCD_TLS}/etcd.key"
    assert len(seen_dirs) == len(topo.etcd)


def test_ectl_env_points_at_every_member_and_the_etcdctl_certificate(lab):
    paths, topo = lab
    text = (paths.node_dir("etcd2") / "ectl.env").read_text()
    env = dict(l.split("=", 1) for l in text.splitlines() if l and not l.startswith("#"))
    assert env["ETCDCTL_API"] == "3"
    assert env["ETCDCTL_ENDPOINTS"].split(",") == [f"https://{m.address}:2379" for m in topo.etcd]
    assert env["ETCDCTL_CACERT"] == f"{node_paths.ETCD_TLS}/ca.crt"
    assert env["ETCDCTL_CERT"] == f"{node_paths.ETCD_TLS}/etcdctl.crt"
    assert env["ETCDCTL_KEY"] == f"{node_paths.ETCD_TLS}/etcdctl.key"


# -- Patroni ---------------------------------------------------------------------------------
def test_patroni_config_follows_the_model(lab):
    paths, topo = lab
    for db in topo.db:
        c = _yaml(paths, db.name, "patroni.yml")
        assert c["scope"] == topo.scope == "18/main"
        assert c["name"] == db.name
        assert c["restapi"]["listen"] == "0.0.0.0:8008"
        assert c["restapi"]["connect_address"] == f"{db.address}:8008"
        assert c["restapi"]["verify_client"] == "required"
        assert {c["restapi"]["certfile"], c["restapi"]["keyfile"], c["restapi"]["cafile"]} == \
            {f"{node_paths.PATRONI_TLS}/{n}" for n in ("restapi.crt", "restapi.key", "ca.crt")}
        assert c["ctl"]["certfile"].endswith("/patronictl.crt") and c["ctl"]["keyfile"].endswith("/patronictl.key")
        e = c["etcd3"]
        assert e["protocol"] == "https"
        assert e["hosts"] == [f"{m.address}:2379" for m in topo.etcd]
        assert e["cert"].endswith("/etcd-client.crt") and e["key"].endswith("/etcd-client.key")
        pg = c["postgresql"]
        assert pg["listen"] == "0.0.0.0:5432" and pg["connect_address"] == f"{db.address}:5432"
        assert pg["data_dir"] == node_paths.PG_DATA and pg["bin_dir"] == node_paths.PG_BIN
        assert pg["pgpass"].startswith(node_paths.PG_HOME + "/")
        assert pg["parameters"]["ssl"] == "on"
        assert pg["parameters"]["ssl_cert_file"] == f"{node_paths.PATRONI_TLS}/postgres.crt"
        assert pg["parameters"]["ssl_key_file"] == f"{node_paths.PATRONI_TLS}/postgres.key"
        for who, name in (("superuser", "postgres"), ("replication", "replicator"), ("rewind", "rewind_user")):
            auth = pg["authentication"][who]
            assert auth["username"] == name
            assert "password" not in auth
            assert auth["sslmode"] in ("verify-ca", "verify-full") and auth["sslrootcert"].endswith("/ca.crt")
        dcs = c["bootstrap"]["dcs"]
        assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (SEED.ttl, SEED.loop_wait, SEED.retry_timeout)
        assert dcs["synchronous_mode"] is True
        assert dcs["postgresql"]["use_pg_rewind"] is True
        assert dcs["postgresql"]["parameters"]["shared_buffers"] == "128MB"
        assert dcs["postgresql"]["parameters"]["password_encryption"] == "scram-sha-256"
        tags = c["tags"]
        assert {"failover_priority", "sync_priority", "clonefrom"} <= set(tags)
        assert tags["failover_priority"] > 0 and tags["sync_priority"] > 0 and tags["noloadbalance"] is False
        # Patroni 4.1 refuses a priority next to its boolean twin
        assert "nofailover" not in tags and "nosync" not in tags


def test_pg_hba_is_tls_and_scram_only_with_the_local_replication_line(lab):
    paths, topo = lab
    hba = _yaml(paths, "dbnode1", "patroni.yml")["postgresql"]["pg_hba"]
    rows = [line.split() for line in hba]
    assert not [r for r in rows if r[0] == "host" or r[0] == "hostnossl"]
    assert ["hostssl", "replication", "replicator", "127.0.0.1/32", "scram-sha-256"] in rows
    assert ["hostssl", "replication", "replicator", str(topo.subnet), "scram-sha-256"] in rows
    for r in rows:
        if r[0] == "hostssl":
            assert r[-1] == "scram-sha-256"
            net = ipaddress.ip_network(r[3])
            assert net.is_loopback or net == topo.subnet
        else:
            assert r[0] == "local"


def test_fast_profile_reaches_patroni_and_haproxy(tmp_path):
    paths, topo = LabPaths(home=tmp_path), Topology.build()
    render.write_lab(paths, topo, FAST)
    dcs = _yaml(paths, "dbnode2", "patroni.yml")["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (20, 1, 6)
    cfg = (paths.node_dir("haproxy") / "haproxy.cfg").read_text()
    assert re.search(r"default-server inter 1000ms fall 3 rise 2 ", cfg)


# -- HAProxy ---------------------------------------------------------------------------------
def _sections(cfg: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for line in cfg.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            current = line.strip()
            out[current] = []
        else:
            out[current].append(line.strip())
    return out


def test_haproxy_sends_5432_to_the_primary_5433_to_replicas_checks_over_tls_only(lab):
    paths, topo = lab
    s = _sections((paths.node_dir("haproxy") / "haproxy.cfg").read_text())
    assert "user haproxy" in s["global"] and "group haproxy" in s["global"]
    assert any(l.startswith("stats socket ") for l in s["global"])
    assert {"bind *:8404", "stats uri /"} <= set(s["listen stats"])
    assert any(l.startswith("stats refresh ") for l in s["listen stats"])
    for section, port, endpoint in (("listen primary", 5432, "/primary"), ("listen replicas", 5433, "/replica")):
        lines = s[section]
        assert f"bind *:{port}" in lines and "option httpchk" in lines
        assert f"http-check send meth GET uri {endpoint}" in lines
        assert "http-check expect status 200" in lines
        default = next(l for l in lines if l.startswith("default-server "))
        for piece in ("inter 3000ms", "fall 3", "rise 2", "on-marked-down shutdown-sessions", "check-ssl", "port 8008",
                      "verify required", f"ca-file {node_paths.HAPROXY_TLS}/ca.crt",
                      f"crt {node_paths.HAPROXY_TLS}/haproxy-check.pem"):
            assert piece in default
        servers = [l.split() for l in lines if l.startswith("server ")]
        assert [(v[1], v[2]) for v in servers] == [(d.name, f"{d.address}:5432") for d in topo.db]
        # the data connection stays plain TCP: PostgreSQL negotiates its own TLS inside it
        assert all(" ssl " not in f" {l} " for l in lines)


def test_haproxy_crt_and_ca_are_in_its_tls_folder(lab):
    paths, topo = lab
    names = {p.name for p in (paths.node_dir("haproxy") / "tls").iterdir()}
    cfg = (paths.node_dir("haproxy") / "haproxy.cfg").read_text()
    for ref in re.findall(rf"{node_paths.HAPROXY_TLS}/(\S+)", cfg):
        assert ref in names


# -- the entry point -------------------------------------------------------------------------
def test_write_lab_is_idempotent_and_reports_only_changes(lab):
    paths, topo = lab
    before = _snapshot(paths.state)
    assert render.write_lab(paths, topo, SEED) == []
    assert _snapshot(paths.state) == before
    changed = render.write_lab(paths, topo, FAST)
    # Patroni keeps its bootstrap timings (later ones go to etcd), so no db node restarts for a switch.
    assert set(changed) == {paths.node_dir("haproxy") / "haproxy.cfg"}
    dcs = _yaml(paths, "dbnode1", "patroni.yml")["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (30, 10, 10)


def test_a_new_lab_bootstraps_with_the_profile_it_is_given(tmp_path):
    paths, topo = LabPaths(home=tmp_path), Topology.build()
    render.write_lab(paths, topo, FAST)
    (paths.state / render.BOOTSTRAP_PROFILE_FILE).unlink()   # what `down --volumes` does
    render.write_lab(paths, topo, SEED)
    dcs = _yaml(paths, "dbnode1", "patroni.yml")["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (30, 10, 10)


def test_write_lab_saves_the_topology_it_rendered(lab):
    paths, topo = lab
    assert Topology.from_dict(yaml.safe_load(paths.topology_file.read_text())) == topo


def test_a_smaller_topology_leaves_no_stale_node_behind(lab):
    paths, _ = lab
    bigger = Topology.build(db_nodes=3)
    render.write_lab(paths, bigger, SEED)
    assert (paths.node_dir("dbnode3") / "patroni.yml").is_file()
    render.write_lab(paths, Topology.build(), SEED)
    assert not paths.node_dir("dbnode3").exists()


def test_node_mounts_match_the_rendered_files(lab):
    paths, topo = lab
    for node in topo.nodes:
        files = render.node_files(topo, node, SEED)
        assert render.node_mounts(node) == [(f.name, f.container_path) for f in files]
        for name, _ in render.node_mounts(node):
            assert (paths.node_dir(node.name) / name).is_file()


def test_a_bad_profile_writes_nothing(tmp_path):
    from dataclasses import replace
    paths = LabPaths(home=tmp_path)
    with pytest.raises(LabError):
        render.write_lab(paths, Topology.build(), replace(SEED, ttl=5))
    assert not paths.state.exists()


def test_a_topology_for_another_project_is_refused(tmp_path):
    with pytest.raises(LabError, match="use one project name"):
        render.write_lab(LabPaths(home=tmp_path), Topology.build(project="other"), SEED)
    assert not (tmp_path / "labs").exists()


def test_no_password_or_private_key_reaches_a_rendered_file(lab):
    paths, topo = lab
    found = secrets.load(paths)
    keys = [p.read_text() for p in paths.certs.glob("*.key")]
    for node in topo.nodes:
        for name, _ in render.node_mounts(node):
            text = (paths.node_dir(node.name) / name).read_text()
            for secret in found.passwords():
                assert secret not in text
            assert "PRIVATE KEY" not in text
            for key in keys:
                assert key not in text


def test_rendered_configs_are_readable_by_the_service_user(lab):
    paths, topo = lab
    for node in topo.nodes:
        for name, _ in render.node_mounts(node):
            assert (paths.node_dir(node.name) / name).stat().st_mode & 0o004


@pytest.mark.parametrize("kwargs", [dict(db_nodes=9, etcd_nodes=5), dict(etcd_nodes=1, subnet="10.30.0.0/24", prefix="t-")])
def test_other_shapes_render_consistently(tmp_path, kwargs):
    paths = LabPaths(home=tmp_path)
    topo = Topology.build(**kwargs)
    render.write_lab(paths, topo, SEED)
    for m in topo.etcd:
        conf = _yaml(paths, m.name, "etcd.conf.yml")
        assert len(conf["initial-cluster"].split(",")) == len(topo.etcd)
    cfg = (paths.node_dir(topo.haproxy.name) / "haproxy.cfg").read_text()
    assert len(re.findall(r"^\s+server ", cfg, re.M)) == 2 * len(topo.db)
    for db in topo.db:
        assert _yaml(paths, db.name, "patroni.yml")["etcd3"]["hosts"] == [f"{m.address}:2379" for m in topo.etcd]
    assert {p.name for p in paths.nodes.iterdir()} == set(topo.names)
