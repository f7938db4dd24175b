"""The bare lab's pure parts: its topology flag, its compose services, and the judgements over what a node holds."""
from __future__ import annotations

import pytest

from pgha_lab.bare import survey
from pgha_lab.paths import LabPaths
from pgha_lab.render import compose
from pgha_lab.topology import Role, Topology, TopologyError


def test_the_bare_flag_round_trips_and_a_ready_lab_s_document_is_unchanged():
    bare = Topology.build(project="b", bare=True)
    assert Topology.from_dict(bare.to_dict()).bare is True
    assert "bare" not in Topology.build(project="r").to_dict()
    assert Topology.from_dict(Topology.build(project="r").to_dict()).bare is False


@pytest.mark.parametrize("kw", [{"haproxy_nodes": 2}, {"db_disk_size": 2 << 30}, {"bare": "yes"}])
def test_shapes_a_bare_lab_cannot_have_are_refused(kw):
    with pytest.raises(TopologyError):
        Topology.build(project="b", bare=kw.pop("bare", True), **kw)


def test_a_bare_node_boots_systemd_with_nothing_from_the_host_but_its_data(tmp_path):
    topo = Topology.build(project="b", subnet="10.58.9.0/24", bare=True)
    doc = compose.compose_document(topo, LabPaths(tmp_path, "b"))
    for node in topo.nodes:
        svc = doc["services"][node.name]
        assert svc["image"].startswith(f"pgha-lab/bare-{node.role.value}:")
        assert "init" not in svc and "hostname" not in svc and "env_file" not in svc and "healthcheck" not in svc
        assert svc["cap_add"] == ["SYS_ADMIN", "NET_ADMIN"] and svc["cgroup"] == "private"
        assert svc["stop_signal"] == "SIGRTMIN+3" and svc["tmpfs"] == ["/run", "/run/lock"]
        assert svc["networks"]["lab"] == {"ipv4_address": str(node.address)}
        volumes = svc.get("volumes", [])
        assert all(not v.startswith((".", "/")) for v in volumes)   # named volumes only, no host file
        assert len(volumes) == (0 if node.role is Role.HAPROXY else 1)
    assert doc["networks"]["lab"]["internal"] is True


def test_a_ready_lab_s_compose_file_does_not_change(tmp_path):
    topo = Topology.build(project="r")
    doc = compose.compose_document(topo, LabPaths(tmp_path, "r"))
    assert all(svc["init"] is True and "cgroup" not in svc for svc in doc["services"].values())


NODE = Topology.build(project="b", bare=True).db[0]


def reading(**kw) -> survey.NodeReading:
    out = "system=running\nenabled=\nactive=inactive\nfailed=\nconfigured=no\n"
    for key, value in kw.items():
        out = "\n".join(f"{key}={value}" if line.startswith(f"{key}=") else line for line in out.splitlines())
    return survey.parse(NODE, "running", out)


def test_a_node_s_reading_names_its_unit_and_what_is_missing():
    r = reading()
    assert (r.unit, r.enabled, r.active, r.configured) == ("patroni.service", "no unit file", "inactive", False)
    assert "not configured yet (no Patroni in /opt/patroni" in r.text()


def test_booted_wants_systemd_running_everywhere_and_names_the_node_that_is_not():
    assert survey.booted([reading(), reading()]).ok
    verdict = survey.booted([reading(system="degraded", failed="etcd.service")])
    assert not verdict.ok and verdict.culprit == NODE.name and "etcd.service failed" in verdict.reason
    assert not survey.booted([survey.NodeReading(NODE.name, "exited")]).ok


def test_an_enabled_unit_must_be_active_once_booted():
    assert survey.services_started([reading(enabled="enabled", active="active")]).ok
    verdict = survey.services_started([reading(enabled="enabled", active="failed")])
    assert not verdict.ok and "enabled on dbnode1 but failed" in verdict.reason
    assert survey.configured([reading(enabled="enabled", configured="yes")])
    assert not survey.configured([reading(enabled="disabled", configured="yes")])
