"""The data-disk model: sizes as a user types them, the command line's --disk-size, and the compose
volume that binds a db node's data to the folder inside its mounted disk."""
import argparse

import pytest

from pgha_lab import disks
from pgha_lab.commands.lifecycle import requested_topology
from pgha_lab.errors import LabError
from pgha_lab.paths import LabPaths
from pgha_lab.render.compose import compose_document
from pgha_lab.topology import Topology


@pytest.mark.parametrize("text, size", [("2G", 2 << 30), ("512M", 512 << 20), ("1.5GiB", 3 << 29), ("4096", 4096),
                                        ("1m", 1 << 20), (" 3 GB ", 3 << 30)])
def test_sizes_read_as_powers_of_1024(text, size):
    assert disks.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "two gigs", "-1G", "1X", "G"])
def test_a_size_that_is_not_one_is_refused_in_one_sentence(text):
    with pytest.raises(LabError, match=r"^--disk-size takes a size such as 2G or 512M, not .*\.$"):
        disks.parse_size(text)


def _args(**kw):
    base = dict(publish_ports=None, db_nodes=None, etcd_nodes=None, subnet=None, disk_size=None)
    return argparse.Namespace(**{**base, **kw})


def test_disk_size_on_the_command_line_is_kept_until_changed_or_turned_off():
    plain = Topology.build()
    sized = requested_topology(_args(disk_size="2G"), plain)
    assert sized.db_disk_size == 2 << 30
    assert requested_topology(_args(db_nodes=3), sized).db_disk_size == 2 << 30   # a saved lab keeps its disks
    assert requested_topology(_args(disk_size="off"), sized).db_disk_size is None
    with pytest.raises(LabError, match="between 1 and 64 GiB"):
        requested_topology(_args(disk_size="100M"), plain)


def test_a_db_node_with_a_disk_binds_its_volume_inside_the_mounted_filesystem(tmp_path):
    paths = LabPaths(home=tmp_path, project="disky")
    topo = Topology.build(project="disky", db_disk_size=1 << 30)
    vols = compose_document(topo, paths)["volumes"]
    opts = vols["dbnode1-data"]["driver_opts"]
    assert opts == {"type": "none", "o": "bind",
                    "device": str(tmp_path / "labs" / "disky" / "disks" / "dbnode1" / "data")}
    assert vols["etcd1-data"] == {}   # etcd keeps a plain volume
    assert compose_document(Topology.build(project="disky"), paths)["volumes"]["dbnode1-data"] == {}


def test_fill_refuses_a_disk_that_is_not_mounted(tmp_path):
    d = disks.disk(LabPaths(home=tmp_path, project="disky"), "dbnode1")
    with pytest.raises(LabError, match="dbnode1's disk is not mounted; `pgha-lab up` mounts it."):
        disks.fill(d)


def test_fill_disk_on_a_lab_without_its_own_disks_is_refused_before_anything_is_read(tmp_path):
    from pgha_lab.chaos.actions import Chaos
    from pgha_lab.context import LabContext
    chaos = Chaos(LabContext.open(tmp_path, "plain"))   # no lab, no Docker: the refusal comes first
    for action in ("fill-disk", "free-disk"):
        with pytest.raises(LabError) as exc:
            chaos.run(action, "dbnode1")
        assert str(exc.value) == ("this lab's db nodes keep their data in Docker volumes on the host's disk, so filling "
                                  "one would fill the host's; give each db node its own disk: `pgha-lab down "
                                  "--volumes`, then `pgha-lab up --disk-size 2G`.")


def test_status_says_how_full_each_disk_is_and_how_much_is_the_filler():
    full = disks.DiskUsage("dbnode1", 2 << 30, 4096, (2 << 30) - (100 << 20))
    assert full.text() == "dbnode1 2.0 GiB of 2.0 GiB used FULL, 1.9 GiB of it the chaos filler"
    assert disks.DiskUsage("dbnode2", 2 << 30, 1 << 30, 0).text() == "dbnode2 1.0 GiB of 2.0 GiB used"
