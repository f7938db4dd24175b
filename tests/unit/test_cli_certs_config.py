"""`pgha-lab certs` and `pgha-lab config show`: thin commands over tls and render."""
from __future__ import annotations

import json

from pgha_lab import cli, profiles, render
from pgha_lab.paths import LabPaths
from pgha_lab.topology import Topology


def _snapshot(root):
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def test_certs_makes_then_leaves_alone_then_rotates(tmp_path, capsys):
    home = str(tmp_path)
    assert cli.main(["--home", home, "certs"]) == 0
    out = capsys.readouterr().out
    assert "certificates written to" in out and "dbnode1-postgres.crt" in out
    certs = LabPaths(home=tmp_path).certs
    before = _snapshot(certs)
    assert cli.main(["--home", home, "certs"]) == 0
    assert "are current; nothing changed." in capsys.readouterr().out
    assert _snapshot(certs) == before
    assert cli.main(["--home", home, "certs", "--rotate", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["changed"] and doc["ca_renewed"] and doc["reasons"] == ["rotation was asked for"]
    assert any(c["file"] == "etcd1-etcd.crt" and c["purpose"] == "server+client" for c in doc["certificates"])


def test_config_show_prints_every_file_with_a_header(tmp_path, capsys):
    paths = LabPaths(home=tmp_path)
    render.write_lab(paths, Topology.build(), profiles.SEED)
    assert cli.main(["--home", str(tmp_path), "config", "show", "etcd1"]) == 0
    out = capsys.readouterr().out
    assert "==> /etc/etcd/etcd.conf.yml" in out and "==> /etc/etcd/ectl.env" in out
    assert "initial-cluster: etcd1=https://192.168.56.11:2380" in out
    assert "==> /run/pgha-lab/tls" in out and "etcd.key" in out
    assert "BEGIN" not in out          # names of TLS files only, never their content
    assert cli.main(["--home", str(tmp_path), "config", "show", "dbnode2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [f["path"] for f in doc["files"]] == ["/etc/patroni/config.yml", "/etc/patroni/haproxy_callback.py"]
    assert "name: dbnode2" in doc["files"][0]["content"]


def test_config_show_unknown_node_is_one_sentence_and_exit_1(tmp_path, capsys):
    assert cli.main(["--home", str(tmp_path), "config", "show", "dbnode7"]) == 1
    err = capsys.readouterr().err
    assert err == ("pgha-lab: unknown node 'dbnode7'; valid nodes are: etcd1, etcd2, etcd3, dbnode1, dbnode2, haproxy.\n")
    assert not (tmp_path / "labs").exists()


def test_config_show_before_up_names_the_fix(tmp_path, capsys):
    assert cli.main(["--home", str(tmp_path), "config", "show", "haproxy"]) == 1
    assert "run `pgha-lab up`" in capsys.readouterr().err


def test_certs_live_under_certs_project_with_private_keys(tmp_path, capsys):
    assert cli.main(["--home", str(tmp_path), "--project", "lab2", "certs"]) == 0
    certs = tmp_path / "certs" / "lab2"
    assert f"certificates written to {certs}" in capsys.readouterr().out
    assert (certs / "ca.crt").is_file()
    keys = list(certs.glob("*.key"))
    assert keys and all(k.stat().st_mode & 0o777 == 0o600 for k in keys)
    assert not (tmp_path / "labs" / "lab2" / "certs").exists()


def test_a_lab_from_before_certs_keeps_its_certificates_when_moved(tmp_path, capsys):
    # An existing lab kept its TLS material in labs/<project>/certs: the next command moves it,
    # byte for byte and with its times, and remakes nothing (no node would restart).
    paths = LabPaths(home=tmp_path)
    render.write_lab(paths, Topology.build(), profiles.SEED)
    paths.certs.rename(paths.legacy_certs)
    before = {p.name: v for p, v in ((p, (p.read_bytes(), p.stat().st_mtime_ns)) for p in paths.legacy_certs.iterdir())}
    assert cli.main(["--home", str(tmp_path), "certs"]) == 0
    assert "are current; nothing changed." in capsys.readouterr().out
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths.certs.iterdir()}
    assert after == before
    assert not paths.legacy_certs.exists()
