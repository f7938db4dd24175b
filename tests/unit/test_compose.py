"""The committed compose.yaml is exactly what the model renders, and says what the model says."""
from pathlib import Path

import yaml

from pgha_lab.render.compose import render_compose
from pgha_lab.paths import LabPaths
from pgha_lab.topology import Role, Topology

REPO = Path(__file__).resolve().parents[2]


def test_committed_compose_matches_the_model():
    expected = render_compose(Topology.build(), LabPaths(home=REPO))
    assert (REPO / "compose.yaml").read_text() == expected, "compose.yaml is stale: run `pgha-lab up` or regenerate it"


def test_compose_states_every_node_at_its_model_address():
    topo = Topology.build()
    doc = yaml.safe_load((REPO / "compose.yaml").read_text())
    net = doc["networks"]["lab"]
    assert net["internal"] is True
    assert net["ipam"]["config"] == [{"subnet": "192.168.56.0/24", "gateway": "192.168.56.1"}]
    assert set(doc["services"]) == set(topo.names)
    for node in topo.nodes:
        svc = doc["services"][node.name]
        assert svc["networks"]["lab"]["ipv4_address"] == str(node.address)
        assert svc["hostname"] == node.name
        assert svc["init"] is True
    haproxy = doc["services"]["haproxy"]
    assert haproxy["ports"] == ["127.0.0.1:5432:5432", "127.0.0.1:5433:5433", "127.0.0.1:8404:8404"]
    for node in topo.by_role(Role.DB):
        svc = doc["services"][node.name]
        assert svc["env_file"] == ["./labs/pgha-lab/secrets.env"]
        assert f"{node.name}-data:/var/lib/postgresql" in svc["volumes"]
        assert "./labs/pgha-lab/nodes/%s/patroni.yml:/etc/patroni/config.yml:ro" % node.name in svc["volumes"]
        assert svc["stop_grace_period"] == "60s"


def test_other_sizes_and_labs_render_their_own_file():
    topo = Topology.build(db_nodes=3, etcd_nodes=5, subnet="10.20.0.0/24", project="big")
    paths = LabPaths(home=REPO, project="big")
    assert paths.compose_file == REPO / "labs" / "big" / "compose.yaml"
    doc = yaml.safe_load(render_compose(topo, paths))
    assert doc["name"] == "big"
    assert len(doc["services"]) == 3 + 5 + 1
    assert doc["services"]["dbnode3"]["networks"]["lab"]["ipv4_address"] == "10.20.0.40"
    assert doc["services"]["dbnode1"]["env_file"] == ["./secrets.env"]
    assert doc["services"]["dbnode1"]["volumes"][0].startswith("./nodes/dbnode1/")
