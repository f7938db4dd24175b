import ipaddress

import pytest

from pgha_lab.topology import Published, Role, Topology, TopologyError, UnknownNode


def test_default_mirrors_the_vm_estate():
    t = Topology.build()
    assert t.subnet == ipaddress.IPv4Network("192.168.56.0/24")
    assert str(t.host_address) == "192.168.56.1"
    assert {n.name: str(n.address) for n in t.db} == {"dbnode1": "192.168.56.10", "dbnode2": "192.168.56.20"}
    assert str(t.haproxy.address) == "192.168.56.30"
    assert [n.name for n in t.etcd] == ["etcd1", "etcd2", "etcd3"]
    assert t.scope == "18/main"


def test_every_name_and_address_is_distinct_at_the_largest_size():
    t = Topology.build(db_nodes=9, etcd_nodes=5)
    assert len(set(t.names)) == len(t.nodes) == 15
    assert len({n.address for n in t.nodes}) == 15
    assert t.haproxy.address not in {n.address for n in t.db}


@pytest.mark.parametrize("kwargs, sentence", [
    (dict(db_nodes=1), "db nodes must be between 2 and 9, not 1."),
    (dict(db_nodes=10), "db nodes must be between 2 and 9, not 10."),
    (dict(etcd_nodes=2), "etcd members must be 1, 3 or 5 (an odd count keeps a clear majority), not 2."),
    (dict(etcd_nodes=4), "etcd members must be 1, 3 or 5 (an odd count keeps a clear majority), not 4."),
    (dict(subnet="192.168.56.0/28"), "subnet 192.168.56.0/28 is too small for 2 db nodes and 3 etcd members; use a /27 or larger."),
    (dict(subnet="10.1.0.0/27", db_nodes=9), "subnet 10.1.0.0/27 is too small for 9 db nodes and 3 etcd members; use a /25 or larger."),
    (dict(subnet="10.1.0.0/26", db_nodes=9), "subnet 10.1.0.0/26 is too small for 9 db nodes and 3 etcd members; use a /25 or larger."),
    (dict(subnet="8.8.8.0/24"), "subnet 8.8.8.0/24 is not a private range; use one such as 192.168.56.0/24."),
    (dict(db_disk_size=512 << 20), "a db node's disk must be between 1 and 64 GiB (room for max_wal_size of WAL), not 536870912 bytes."),
    (dict(project="Bad_Name"), "project name 'Bad_Name' must be lowercase letters, digits and dashes."),
    (dict(published=Published(primary=5432, replicas=5432)), "the published ports for the primary, the replicas and the stats page must differ."),
    (dict(published=Published(bind="localhost")), "the published bind address must be an IPv4 address such as 127.0.0.1, not 'localhost'."),
    (dict(published=Published(bind="::1")), "the published bind address ::1 is IPv6; only IPv4 addresses such as 127.0.0.1 are supported."),
    (dict(published=Published(stats=70000)), "published ports must be whole numbers between 1 and 65535, not 70000."),
    (dict(published=Published(primary=0, enabled=False)), "published ports must be whole numbers between 1 and 65535, not 0."),
])
def test_invalid_topologies_are_refused_with_the_sentence_users_see(kwargs, sentence):
    with pytest.raises(TopologyError) as exc:
        Topology.build(**kwargs)
    assert str(exc.value) == sentence


def test_unknown_node_lists_valid_names():
    with pytest.raises(UnknownNode, match="valid nodes are: etcd1, etcd2, etcd3, dbnode1, dbnode2, haproxy"):
        Topology.build().node("dbnode3")


def test_prefix_and_subnet_carry_through():
    t = Topology.build(subnet="10.77.0.0/24", prefix="t-", project="pgha-test")
    assert t.node("t-dbnode1").address == ipaddress.IPv4Address("10.77.0.10")
    assert t.by_role(Role.ETCD)[0].name == "t-etcd1"
    assert t.container_name("t-dbnode1") == "pgha-test-t-dbnode1"


def test_round_trip_through_the_versioned_document():
    t = Topology.build(db_nodes=3, etcd_nodes=5, subnet="172.30.5.0/24", project="x1")
    assert Topology.from_dict(t.to_dict()) == t
    with pytest.raises(TopologyError, match="apiVersion"):
        Topology.from_dict({**t.to_dict(), "apiVersion": "v0"})
    with_disks = Topology.build(db_disk_size=2 << 30)
    assert with_disks.to_dict()["dbDiskSize"] == 2 << 30 and "dbDiskSize" not in t.to_dict()
    assert Topology.from_dict(with_disks.to_dict()) == with_disks


@pytest.mark.parametrize("change, sentence", [
    ({"dbnodes": 3}, "the topology has an unknown key 'dbnodes'; the allowed keys are apiVersion, project, subnet, prefix, scope, dbNodes, etcdNodes, haproxyNodes, dbDiskSize, bare, published."),
    ({"published": {"host": "127.0.0.1"}}, "published has an unknown key 'host'; the allowed keys are bind, primary, replicas, stats, enabled."),
    ({"published": ["127.0.0.1"]}, "published must be a mapping of keys such as bind and primary."),
    ({"published": {"primary": "5432"}}, "published ports must be whole numbers between 1 and 65535, not '5432'."),
    ({"published": {"enabled": "no"}}, "published.enabled must be true or false, not 'no'."),
    ({"published": {"bind": 127}}, "the published bind address must be an IPv4 address such as 127.0.0.1, not 127."),
    ({"dbNodes": "three"}, "dbNodes must be a whole number, not 'three'."),
])
def test_a_hand_edited_document_is_refused_with_a_topology_error(change, sentence):
    with pytest.raises(TopologyError) as exc:
        Topology.from_dict({**Topology.build().to_dict(), **change})
    assert str(exc.value) == sentence


def test_a_document_that_is_not_a_mapping_is_a_topology_error():
    with pytest.raises(TopologyError, match="must be a mapping"):
        Topology.from_dict(["dbNodes", 3])


def test_publish_ports_out_of_range_get_the_models_sentence():
    import argparse

    from pgha_lab.commands.lifecycle import requested_topology
    from pgha_lab.errors import LabError
    args = argparse.Namespace(publish_ports="5432,5433,70000", db_nodes=None, etcd_nodes=None, subnet=None)
    with pytest.raises(LabError) as exc:
        requested_topology(args, Topology.build())
    assert str(exc.value) == "published ports must be whole numbers between 1 and 65535, not 70000."


def test_publish_ports_on_the_command_line_keep_the_saved_bind_address():
    import argparse
    from dataclasses import replace
    from pgha_lab.commands.lifecycle import requested_topology
    saved = Topology.build(published=replace(Published(), bind="127.0.0.2"))
    args = argparse.Namespace(publish_ports="15432,15433,18404", db_nodes=None, etcd_nodes=None, subnet=None)
    got = requested_topology(args, saved).published
    assert (got.bind, got.primary, got.replicas, got.stats, got.enabled) == ("127.0.0.2", 15432, 15433, 18404, True)
    args.publish_ports = "off"
    assert requested_topology(args, saved).published == replace(saved.published, enabled=False)
