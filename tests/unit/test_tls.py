"""The lab's TLS material: chains, names, usages, modes, and exactly-when-needed regeneration."""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from pgha_lab import tls
from pgha_lab.paths import LabPaths
from pgha_lab.topology import Role, Topology

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture()
def lab(tmp_path: Path) -> tuple[LabPaths, Topology]:
    paths, topo = LabPaths(home=tmp_path), Topology.build()
    tls.ensure(paths, topo, now=NOW)
    return paths, topo


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {str(i) for i in san.get_values_for_type(x509.IPAddress)}


def _eku(cert: x509.Certificate) -> set:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_certificate_verifies_against_the_ca_with_cryptography_and_openssl(lab):
    paths, topo = lab
    ca = _cert(paths.certs / tls.CA_CERT)
    ca_bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert ca_bc.critical and ca_bc.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    for spec in tls.plan(topo):
        crt = paths.certs / f"{spec.stem}.crt"
        _cert(crt).verify_directly_issued_by(ca)
        for purpose, wanted in (("sslserver", spec.server), ("sslclient", spec.client)):
            proc = subprocess.run(["openssl", "verify", "-CAfile", str(paths.certs / tls.CA_CERT), "-purpose", purpose, str(crt)],
                                  capture_output=True, text=True)
            assert (proc.returncode == 0) == wanted, f"{spec.stem} {purpose}: {proc.stdout}{proc.stderr}"


def test_usages_match_each_role(lab):
    paths, topo = lab
    server, client = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    expected = {"etcd": {server, client}, "etcdctl": {client}, "postgres": {server}, "restapi": {server},
                "etcd-client": {client}, "patronictl": {client}, "haproxy-check": {client}}
    for spec in tls.plan(topo):
        cert = _cert(paths.certs / f"{spec.stem}.crt")
        assert _eku(cert) == expected.get(spec.bundle_name, {client}), spec.stem
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_sans_hold_the_node_names_its_ip_and_loopback(lab):
    paths, topo = lab
    for node in topo.nodes:
        for dest, src in tls.node_bundle(topo, node).items():
            if src == tls.CA_CERT or src.endswith(".key"):
                continue
            cert_file = paths.certs / src.replace(".pem", ".crt")
            dns, ips = _sans(_cert(cert_file))
            assert {node.name, topo.container_name(node)} <= dns, cert_file.name
            assert str(node.address) in ips, cert_file.name
            if node.role is not Role.HAPROXY:   # tools on the node connect over loopback
                assert "localhost" in dns and "127.0.0.1" in ips, cert_file.name


def test_postgres_certificates_also_name_haproxy_so_verify_full_works_through_it(lab):
    paths, topo = lab
    hp = topo.haproxy
    for db in topo.db:
        dns, ips = _sans(_cert(paths.certs / f"{db.name}-postgres.crt"))
        assert {hp.name, topo.container_name(hp), "localhost"} <= dns
        assert {str(hp.address), "127.0.0.1", str(db.address)} <= ips
        # and nothing of another db node: a client dialling dbnode2 must not accept dbnode1
        for other in topo.db:
            if other is not db:
                assert other.name not in dns and str(other.address) not in ips


def test_keys_are_0600_certificates_readable_and_the_certs_dir_private(lab):
    paths, _ = lab
    assert stat.S_IMODE(paths.certs.stat().st_mode) == 0o700
    for f in paths.certs.iterdir():
        mode = stat.S_IMODE(f.stat().st_mode)
        if f.suffix in (".key", ".pem") or f.name == tls.STATE_FILE:
            assert mode == 0o600, f.name
        else:
            assert mode == 0o644, f.name


def test_each_node_folder_holds_exactly_what_the_node_needs(lab):
    paths, topo = lab
    expected = {
        Role.ETCD: {"ca.crt", "etcd.crt", "etcd.key", "etcdctl.crt", "etcdctl.key"},
        Role.DB: {"ca.crt", "postgres.crt", "postgres.key", "restapi.crt", "restapi.key",
                  "etcd-client.crt", "etcd-client.key", "patronictl.crt", "patronictl.key"},
        Role.HAPROXY: {"ca.crt", "haproxy-check.pem"},
    }
    for node in topo.nodes:
        folder = paths.node_dir(node.name) / "tls"
        names = {p.name for p in folder.iterdir()}
        assert names == expected[node.role], node.name
        assert tls.CA_KEY not in names
        for p in folder.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == (0o600 if p.suffix in (".key", ".pem") else 0o644)
        for dest, src in tls.node_bundle(topo, node).items():
            assert (folder / dest).read_bytes() == (paths.certs / src).read_bytes()


def test_haproxy_pem_holds_its_certificate_then_its_key(lab):
    paths, topo = lab
    pem = (paths.node_dir(topo.haproxy.name) / "tls" / "haproxy-check.pem").read_text()
    assert pem.index("BEGIN CERTIFICATE") < pem.index("BEGIN PRIVATE KEY")
    assert pem.startswith((paths.certs / "haproxy-check.crt").read_text())


def test_a_second_run_changes_nothing_byte_for_byte_and_mtime_for_mtime(lab):
    paths, topo = lab
    before = _snapshot(paths.state)
    report = tls.ensure(paths, topo, now=NOW + dt.timedelta(days=100))
    assert not report.changed and not report.written and not report.reasons
    assert _snapshot(paths.state) == before


def _leaf_files(paths: LabPaths) -> dict[str, tuple[bytes, int]]:
    return {k: v for k, v in _snapshot(paths.certs).items() if k != tls.STATE_FILE}


def _remade(before: dict, after: dict) -> set[str]:
    """Stems whose files are new, gone or rewritten."""
    return {Path(k).stem for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def test_a_topology_change_makes_new_leaves_but_keeps_the_ca(lab):
    paths, topo = lab
    before, folders = _leaf_files(paths), {n.name: _snapshot(paths.node_dir(n.name)) for n in topo.nodes}
    report = tls.ensure(paths, Topology.build(db_nodes=3), now=NOW)
    assert report.changed and not report.ca_renewed
    assert report.reasons == [f"dbnode3-{r} is new" for r in ("postgres", "restapi", "etcd-client", "patronictl")]
    assert _remade(before, _leaf_files(paths)) == {f"dbnode3-{r}" for r in ("postgres", "restapi", "etcd-client", "patronictl")}
    # Every existing node keeps its TLS folder byte for byte, so none is restarted.
    assert {n.name: _snapshot(paths.node_dir(n.name)) for n in topo.nodes} == folders
    assert (paths.node_dir("dbnode3") / "tls" / "postgres.crt").is_file()
    # and back: dbnode3's certificates leave the certs folder, and nothing else changes
    report = tls.ensure(paths, topo, now=NOW)
    assert report.reasons == [f"dbnode3-{r} is no longer in the topology" for r in ("etcd-client", "patronictl", "postgres", "restapi")]
    assert _leaf_files(paths) == before
    assert not tls.ensure(paths, topo, now=NOW).changed


def test_a_changed_address_remakes_only_that_nodes_certificates(lab):
    paths, topo = lab
    before = _leaf_files(paths)
    moved = replace(topo, db=(topo.db[0], replace(topo.db[1], address=ipaddress.IPv4Address("192.168.56.21"))))
    report = tls.ensure(paths, moved, now=NOW)
    assert not report.ca_renewed
    assert all(r.startswith("dbnode2-") and r.endswith("no longer matches the topology") for r in report.reasons)
    assert _remade(before, _leaf_files(paths)) == {f"dbnode2-{r}" for r in ("postgres", "restapi", "etcd-client", "patronictl")}
    assert "192.168.56.21" in _sans(_cert(paths.certs / "dbnode2-postgres.crt"))[1]


def test_a_new_published_bind_remakes_only_the_postgres_certificates(lab):
    paths, topo = lab
    before = _leaf_files(paths)
    tls.ensure(paths, replace(topo, published=replace(topo.published, bind="127.0.0.2")), now=NOW)
    assert _remade(before, _leaf_files(paths)) == {f"{db.name}-postgres" for db in topo.db}


def test_a_lab_made_by_the_previous_version_keeps_its_certificates(lab):
    paths, topo = lab
    before = _snapshot(paths.node_dir("dbnode1"))
    (paths.certs / tls.STATE_FILE).write_text(json.dumps({"fingerprint": tls.fingerprint(topo)}))
    leaves = _leaf_files(paths)
    report = tls.ensure(paths, topo, now=NOW)
    assert not report.reasons and report.written == [paths.certs / tls.STATE_FILE]
    assert _leaf_files(paths) == leaves and _snapshot(paths.node_dir("dbnode1")) == before
    assert not tls.ensure(paths, topo, now=NOW).changed


def test_a_lost_state_file_remakes_every_leaf_but_not_the_ca(lab):
    paths, topo = lab
    before = _leaf_files(paths)
    (paths.certs / tls.STATE_FILE).unlink()
    report = tls.ensure(paths, topo, now=NOW)
    assert not report.ca_renewed and len(report.reasons) == 1
    assert _remade(before, _leaf_files(paths)) == {s.stem for s in tls.plan(topo)}


def test_leaves_near_expiry_are_renewed_and_not_a_day_earlier(lab):
    paths, topo = lab
    leaf = _cert(paths.certs / "dbnode1-postgres.crt")
    quiet = leaf.not_valid_after_utc - tls.RENEW_WITHIN - dt.timedelta(days=1)
    assert not tls.ensure(paths, topo, now=quiet).changed
    due = leaf.not_valid_after_utc - tls.RENEW_WITHIN + dt.timedelta(days=1)
    report = tls.ensure(paths, topo, now=due)
    assert report.changed and not report.ca_renewed
    assert any("expires" in r for r in report.reasons)
    assert _cert(paths.certs / "dbnode1-postgres.crt").not_valid_after_utc > leaf.not_valid_after_utc


def test_a_ca_near_expiry_renews_everything(lab):
    paths, topo = lab
    ca = _cert(paths.certs / tls.CA_CERT)
    report = tls.ensure(paths, topo, now=ca.not_valid_after_utc - dt.timedelta(days=1))
    assert report.ca_renewed
    new_ca = _cert(paths.certs / tls.CA_CERT)
    assert new_ca.serial_number != ca.serial_number
    _cert(paths.certs / "etcd1-etcd.crt").verify_directly_issued_by(new_ca)


def test_rotate_forces_a_new_ca_and_new_leaves(lab):
    paths, topo = lab
    before = _snapshot(paths.certs)
    report = tls.ensure(paths, topo, rotate=True, now=NOW)
    assert report.ca_renewed and report.changed
    after = _snapshot(paths.certs)
    for name in ("ca.crt", "ca.key", "dbnode1-postgres.crt", "dbnode1-postgres.key"):
        assert after[name][0] != before[name][0]
    new_ca = _cert(paths.certs / tls.CA_CERT)
    _cert(paths.node_dir("dbnode1") / "tls" / "postgres.crt").verify_directly_issued_by(new_ca)


def test_a_crash_half_way_leaves_the_interrupted_leaves_due(lab, monkeypatch):
    paths, topo = lab
    real = tls.write_if_changed

    def crash_on_the_key(path, data, mode=0o644):
        if path.name == "dbnode1-postgres.key":
            raise KeyboardInterrupt
        return real(path, data, mode)

    due = _cert(paths.certs / "dbnode1-postgres.crt").not_valid_after_utc - dt.timedelta(days=1)
    monkeypatch.setattr(tls, "write_if_changed", crash_on_the_key)
    with pytest.raises(KeyboardInterrupt):
        tls.ensure(paths, topo, now=due)
    # A fresh certificate now sits beside the old key; the state must not vouch for it.
    monkeypatch.setattr(tls, "write_if_changed", real)
    assert "dbnode1-postgres is new" in tls.ensure(paths, topo, now=due).reasons
    key = serialization.load_pem_private_key((paths.certs / "dbnode1-postgres.key").read_bytes(), None)
    assert key.public_key() == _cert(paths.certs / "dbnode1-postgres.crt").public_key()


def test_a_damaged_or_missing_leaf_is_remade(lab):
    paths, topo = lab
    (paths.certs / "etcd2-etcd.crt").write_text("not a certificate")
    before = _leaf_files(paths)
    report = tls.ensure(paths, topo, now=NOW)
    assert report.changed and not report.ca_renewed
    assert report.reasons == ["etcd2-etcd is missing or unreadable"]
    assert _remade(before, _leaf_files(paths)) == {"etcd2-etcd"}
    _cert(paths.certs / "etcd2-etcd.crt")
    (paths.node_dir("etcd2") / "tls" / "etcd.key").unlink()
    assert tls.ensure(paths, topo, now=NOW).changed
    assert (paths.node_dir("etcd2") / "tls" / "etcd.key").is_file()


def test_a_stray_file_in_a_node_folder_is_removed(lab):
    paths, topo = lab
    stray = paths.node_dir("haproxy") / "tls" / "ca.key"
    stray.write_text("must not be here")
    tls.ensure(paths, topo, now=NOW)
    assert not stray.exists()


def test_host_client_files_exist_and_are_a_client_certificate(lab):
    paths, topo = lab
    files = tls.host_client(paths)
    cert = _cert(files.cert)
    assert _eku(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert str(topo.host_address) in _sans(cert)[1]


def test_host_client_without_certs_names_the_fix(tmp_path):
    from pgha_lab.errors import LabError
    with pytest.raises(LabError, match="run `pgha-lab certs`"):
        tls.host_client(LabPaths(home=tmp_path))


def test_fingerprint_follows_the_model_not_the_clock():
    a, b = Topology.build(), Topology.build()
    assert tls.fingerprint(a) == tls.fingerprint(b)
    assert tls.fingerprint(a) != tls.fingerprint(Topology.build(subnet="10.20.0.0/24"))
    assert tls.fingerprint(a) != tls.fingerprint(Topology.build(project="other"))


def _handshake(server_ctx, client_ctx, name: str) -> None:
    """A TLS handshake entirely in memory (no socket), the client checking `name`."""
    import ssl
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=name)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for key, end in (("c", client), ("s", server)):
            if not done[key]:
                try:
                    end.do_handshake()
                    done[key] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize("name, ok", [("haproxy", True), ("192.168.56.30", True), ("127.0.0.1", True),
                                      ("localhost", True), ("dbnode1", True), ("192.168.56.10", True),
                                      ("pgha-lab-haproxy", True), ("dbnode2", False), ("192.168.56.20", False)])
def test_verify_full_through_haproxy_accepts_dbnode1s_postgres_certificate(lab, name, ok):
    """What libpq's verify-full does when a client dials HAProxy (or a published loopback port)
    and meets dbnode1's own certificate behind it."""
    import ssl
    paths, _ = lab
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(paths.certs / "dbnode1-postgres.crt", paths.certs / "dbnode1-postgres.key")
    client_ctx = ssl.create_default_context(cafile=str(paths.certs / tls.CA_CERT))
    if ok:
        _handshake(server_ctx, client_ctx, name)
    else:
        with pytest.raises(ssl.SSLCertVerificationError):
            _handshake(server_ctx, client_ctx, name)
