"""Two HAProxy nodes and a keepalived VIP: the model, the rendered files and the refusals (no Docker)."""
import argparse
import ipaddress

import pytest

from pgha_lab import profiles, render, tls, vip
from pgha_lab.chaos.actions import Chaos
from pgha_lab.commands.lifecycle import requested_topology
from pgha_lab.context import LabContext
from pgha_lab.drill import scenarios
from pgha_lab.drill.runner import run_drill
from pgha_lab.errors import LabError
from pgha_lab.paths import LabPaths
from pgha_lab.render import keepalived
from pgha_lab.render.compose import compose_document
from pgha_lab.topology import Topology, TopologyError

PAIR = Topology.build(haproxy_nodes=2)
ONE = Topology.build()


def test_one_haproxy_stays_as_it_was():
    assert ONE.haproxy2 is None and ONE.vip is None
    assert [n.name for n in ONE.haproxies] == ["haproxy"]
    assert ONE.entry_address == ipaddress.ip_address("192.168.56.30")
    assert ONE.published_pairs() == [(5432, 5432), (5433, 5433), (8404, 8404)]


def test_a_second_haproxy_sits_next_to_the_first_and_clients_use_the_vip():
    assert PAIR.haproxy.name == "haproxy" and str(PAIR.haproxy.address) == "192.168.56.30"
    assert PAIR.haproxy2.name == "haproxy2" and str(PAIR.haproxy2.address) == "192.168.56.31"
    assert str(PAIR.vip) == str(PAIR.entry_address) == "192.168.56.32"
    assert PAIR.published_pairs() == []   # a port published from one container would not follow the VIP


def test_no_grown_db_node_or_etcd_member_can_take_haproxy2_or_the_vip():
    big = Topology.build(db_nodes=9, etcd_nodes=5, haproxy_nodes=2)
    taken = {n.address for n in big.nodes if n.name != "haproxy2"}
    assert big.haproxy2.address not in taken and big.vip not in {n.address for n in big.nodes}


@pytest.mark.parametrize("count", [0, 3, True])
def test_other_haproxy_counts_are_refused(count):
    with pytest.raises(TopologyError, match="HAProxy nodes must be 1 or 2"):
        Topology.build(haproxy_nodes=count)


def test_the_count_is_saved_and_a_document_without_it_has_one():
    assert Topology.from_dict(PAIR.to_dict()) == PAIR
    doc = ONE.to_dict()
    del doc["haproxyNodes"]
    assert Topology.from_dict(doc) == ONE


def _up_args(**kw):
    base = dict(publish_ports=None, db_nodes=None, etcd_nodes=None, subnet=None, haproxy_nodes=None)
    return argparse.Namespace(**{**base, **kw})


def test_up_remembers_the_count_and_refuses_a_bad_one():
    assert requested_topology(_up_args(), PAIR).haproxy2 is not None      # remembered like --db-nodes
    assert requested_topology(_up_args(haproxy_nodes=1), PAIR).haproxy2 is None
    with pytest.raises(LabError, match="HAProxy nodes must be 1 or 2"):
        requested_topology(_up_args(haproxy_nodes=3), ONE)


def test_keepalived_master_on_haproxy_backup_on_haproxy2_unicast_to_each_other():
    first = keepalived.render_text(PAIR, PAIR.haproxy)
    second = keepalived.render_text(PAIR, PAIR.haproxy2)
    assert "state MASTER" in first and "priority 150" in first
    assert "state BACKUP" in second and "priority 100" in second
    assert "unicast_src_ip 192.168.56.30" in first and "        192.168.56.31" in first
    assert "unicast_src_ip 192.168.56.31" in second and "        192.168.56.30" in second
    for text in (first, second):
        assert "192.168.56.32/24 dev eth0" in text and "advert_int 1" in text
        assert "track_script {\n        haproxy_alive" in text and "pgrep -x haproxy" in text
    with pytest.raises(ValueError):
        keepalived.render_text(ONE, ONE.haproxy)


def test_the_vrrp_bound_is_three_adverts_plus_skew_plus_a_margin():
    assert keepalived.failover_bound_s() == pytest.approx(3 + 156 / 256 + 1)


def test_only_a_two_haproxy_lab_renders_and_mounts_keepalived(tmp_path):
    prof = profiles.get("instant")   # the routing profile: the runtime API on each node's own address
    files = {f.name: f.content for f in render.node_files(PAIR, PAIR.haproxy2, prof)}
    assert set(files) == {"haproxy.cfg", "keepalived.conf"}
    assert "stats socket ipv4@192.168.56.31:9999" in files["haproxy.cfg"]
    assert [f.name for f in render.node_files(ONE, ONE.haproxy, prof)] == ["haproxy.cfg"]
    paths = LabPaths(home=tmp_path)
    pair = compose_document(PAIR, paths)["services"]
    for name in ("haproxy", "haproxy2"):
        assert any(v.endswith(":/etc/keepalived/keepalived.conf:ro") for v in pair[name]["volumes"])
        assert pair[name]["cap_add"] == ["NET_ADMIN", "NET_RAW", "NET_BROADCAST"]
        assert "ports" not in pair[name]
    one = compose_document(ONE, paths)["services"]["haproxy"]
    assert not any("keepalived" in v for v in one["volumes"]) and one["cap_add"] == ["NET_ADMIN"]
    assert "ports" in one


def test_write_lab_drops_keepalived_conf_when_back_to_one_haproxy(tmp_path):
    paths = LabPaths(home=tmp_path)
    prof = profiles.get("fast")
    render.write_lab(paths, PAIR, prof)
    conf = paths.node_dir("haproxy") / "keepalived.conf"
    assert conf.exists() and (paths.node_dir("haproxy2") / "haproxy.cfg").exists()
    changed = render.write_lab(paths, ONE, prof)
    assert conf in changed and not conf.exists() and not paths.node_dir("haproxy2").exists()


def test_postgres_certificates_name_the_vip_whatever_the_haproxy_count():
    for topo in (ONE, PAIR):
        pg = next(s for s in tls.plan(topo) if s.stem == "dbnode1-postgres")
        assert "192.168.56.32" in pg.ips
    assert {s.stem for s in tls.plan(PAIR)} - {s.stem for s in tls.plan(ONE)} == {"haproxy2-check"}


def _ctx(tmp_path, topo):
    return LabContext(LabPaths(home=tmp_path), topo)


def test_naming_haproxy2_in_a_one_haproxy_lab_is_one_sentence_before_anything(tmp_path):
    # No lab runs here: reaching the cluster or Docker would fail differently, so the refusal came first.
    with pytest.raises(LabError) as exc:
        Chaos(_ctx(tmp_path, ONE)).run("kill-haproxy", "haproxy2")
    assert str(exc.value) == vip.ONE_HAPROXY
    assert "up --haproxy-nodes 2" in str(exc.value) and str(exc.value).count(".") <= 2


def test_a_wrong_haproxy_name_in_a_pair_is_refused(tmp_path):
    with pytest.raises(LabError, match="kill-haproxy takes haproxy or haproxy2"):
        Chaos(_ctx(tmp_path, PAIR)).run("kill-haproxy", "dbnode1")


def test_the_vip_drill_refuses_a_one_haproxy_lab_before_it_starts(tmp_path):
    with pytest.raises(LabError) as exc:
        run_drill(_ctx(tmp_path, ONE), scenarios.get("kill-haproxy-vip"), "r1")
    assert str(exc.value) == vip.ONE_HAPROXY
