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
    (dict(project="Bad_Name"), "project name 'Bad_Name' must be lowercase letters, digits and dashes."),
    (dict(published=Published(primary=5432, replicas=5432)), "the published ports for the primary, the replicas and the stats page must differ."),
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
