"""Snapshots' pure parts: names, the lab's shape and the refusal that compares two shapes, manifests."""
from __future__ import annotations

import pytest

from pgha_lab import snapshots
from pgha_lab.errors import LabError
from pgha_lab.topology import Published, Topology


def test_a_shape_leaves_out_published_ports_and_the_project():
    a = Topology.build(project="one", subnet="10.60.2.0/24")
    b = Topology.build(project="two", subnet="10.60.2.0/24", published=Published(primary=15432, replicas=15433, stats=18404))
    assert snapshots.shape_mismatch(snapshots.shape_of(a), snapshots.shape_of(b)) is None


def test_another_shape_is_named_in_words():
    saved = snapshots.shape_of(Topology.build(subnet="10.60.2.0/24"))
    now = snapshots.shape_of(Topology.build(subnet="10.60.2.0/24", db_nodes=3))
    text = snapshots.shape_mismatch(saved, now)
    assert text == ("the snapshot is of a lab with 3 etcd members, 2 db nodes, 1 HAProxy node on 10.60.2.0/24, "
                    "and this lab has 3 etcd members, 3 db nodes, 1 HAProxy node on 10.60.2.0/24")


def test_a_disk_size_is_part_of_the_shape():
    saved = snapshots.shape_of(Topology.build(db_disk_size=2 << 30))
    now = snapshots.shape_of(Topology.build())
    assert "dbDiskSize 2147483648" in snapshots.shape_mismatch(saved, now)


@pytest.mark.parametrize("name", ["after-etcd", "step3", "a.b_c", "0"])
def test_good_names(name):
    assert snapshots.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "After", "-x", "a/b", "x" * 41, "a b"])
def test_bad_names_are_one_sentence(name):
    with pytest.raises(LabError, match="a snapshot name is up to 40"):
        snapshots.validate_name(name)


def test_a_manifest_survives_its_file():
    m = snapshots.Manifest("s1", "p", "2025-01-01T00:00:00+00:00", {"dbNodes": 2}, [
        snapshots.NodeRecord("dbnode1", "dbnode", "img:s1", True, ["patroni.service"],
                             [snapshots.VolumeCopy("p_dbnode1-data", "/var/lib/postgresql", "copy", 10)], 5)], True, 3.5)
    again = snapshots.Manifest.from_dict(m.as_dict())
    assert again == m and again.bytes == 15 and again.node("dbnode1").services == ["patroni.service"]
