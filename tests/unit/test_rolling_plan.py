"""The rolling order and the staged CA rotation, without a lab."""
from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pgha_lab import tls
from pgha_lab.paths import LabPaths
from pgha_lab.rolling.plan import RESTART, SWITCHOVER, Roles, plan
from pgha_lab.topology import Topology


def order(steps):
    return [(s.action, s.node) for s in steps]


def test_etcd_followers_then_its_leader_then_replicas_then_a_switchover_then_haproxy():
    topo = Topology.build(db_nodes=3)
    steps = plan(topo, topo.names, Roles(etcd_leader="etcd1", db_leader="dbnode2", sync_standbys=("dbnode1",)))
    assert order(steps) == [
        (RESTART, "etcd2"), (RESTART, "etcd3"), (RESTART, "etcd1"),
        (RESTART, "dbnode3"), (RESTART, "dbnode1"),          # the synchronous standby last of the replicas
        (SWITCHOVER, "dbnode2"), (RESTART, "dbnode2"),
        (RESTART, "haproxy")]


def test_a_replica_alone_needs_no_switchover_and_nothing_else_moves():
    topo = Topology.build()
    assert order(plan(topo, ["dbnode2"], Roles("etcd1", "dbnode1", ("dbnode2",)))) == [(RESTART, "dbnode2")]
    assert order(plan(topo, ["dbnode1"], Roles("etcd1", "dbnode1", ("dbnode2",)))) == \
        [(SWITCHOVER, "dbnode1"), (RESTART, "dbnode1")]
    assert plan(topo, [], Roles("etcd1", "dbnode1")) == []


def _verifies(ca_pem: bytes, cert_pem: bytes) -> bool:
    """Whether a trust bundle accepts a leaf: one of its CAs signed it."""
    leaf = x509.load_pem_x509_certificate(cert_pem)
    for ca in x509.load_pem_x509_certificates(ca_pem):
        try:
            leaf.verify_directly_issued_by(ca)
            return True
        except Exception:   # another CA's signature: try the next one
            continue
    return False


@pytest.mark.parametrize("node,leaf", [("etcd1", "etcd.crt"), ("dbnode1", "postgres.crt"), ("haproxy", "haproxy-check.pem")])
def test_every_stage_keeps_each_node_trusted_by_nodes_one_stage_behind(tmp_path, node, leaf):
    paths, topo = LabPaths(home=tmp_path), Topology.build()
    tls.ensure(paths, topo)
    folder = paths.node_dir(node) / "tls"
    old_ca = tls.trusted_cas(paths)
    assert len(old_ca) == 1 and tls.rotation_stage(paths) is None
    trust, cert = (folder / "ca.crt").read_bytes(), (folder / leaf).read_bytes()
    for stage, left in zip(tls.ROTATION_STAGES, ("trust-both", "new-leaves", None)):
        tls.rotate_stage(paths, topo, stage)
        new_trust, new_cert = (folder / "ca.crt").read_bytes(), (folder / leaf).read_bytes()
        # Mid-roll, a node on this stage's files and one still on the last stage's accept each other.
        assert _verifies(new_trust, cert) and _verifies(trust, new_cert) and _verifies(new_trust, new_cert), stage
        assert tls.rotation_stage(paths) == left
        trust, cert = new_trust, new_cert
    cas = tls.trusted_cas(paths)
    assert len(cas) == 1 and cas[0] != old_ca[0]
    assert not any((paths.certs / f).exists() for f in tls.ROTATION_FILES)
    # The host's client certificate came from the new CA too, and the old CA signs nothing trusted.
    assert _verifies(trust, (paths.certs / "host-client.crt").read_bytes())
    assert trust == cas[0].public_bytes(serialization.Encoding.PEM)
