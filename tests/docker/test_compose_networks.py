"""The lab's bridge comes up whatever pool the engine gives the edge network next.

Compose creates a project's networks in no fixed order, and the engine hands out automatic subnets
round-robin over its default pools. When the edge network (HAProxy's published ports, an automatic
subnet) came first and the engine's next pool held the lab's fixed subnet, the lab's bridge failed
with "Pool overlaps" (seen for 192.168.56.0/24 inside 192.168.48.0/20). Here the lab's subnet is put
inside the very pool the engine hands out next, with the networks `up` renders, four times: with the
edge network first half the time, the old order failed all but one run in 16."""
from __future__ import annotations

import ipaddress
import json
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from pgha_lab.errors import LabError
from pgha_lab.gateway import BASE_IMAGE, LabDocker, edge_network_name, network_name
from pgha_lab.paths import LabPaths
from pgha_lab.render.compose import EDGE_NET, LAB_NET, compose_document
from pgha_lab.topology import Topology

pytestmark = pytest.mark.docker

# The engine's default address pools, in the order it hands them out (no daemon.json changes them here).
DEFAULT_POOLS = ([ipaddress.ip_network(f"172.{i}.0.0/16") for i in range(17, 32)]
                 + list(ipaddress.ip_network("192.168.0.0/16").subnets(new_prefix=20)))


def _subnets(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = subprocess.run(["docker", "network", "inspect", "-f", "{{json .IPAM.Config}}", name],
                         capture_output=True, text=True, check=True).stdout
    return [ipaddress.ip_network(c["Subnet"]) for c in json.loads(out)]


def _in_use() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    ids = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True, check=True).stdout.split()
    return [s for i in ids for s in _subnets(i)]


def _next_pool() -> ipaddress.IPv4Network:
    """The pool the engine gives the next network of an automatic subnet: one past the last it gave
    (a probe's), skipping pools in use."""
    probe = f"pgha-pool-probe-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "network", "create", probe], capture_output=True, check=True)
    try:
        given = _subnets(probe)[0]
    finally:
        subprocess.run(["docker", "network", "rm", probe], capture_output=True)
    assert given in DEFAULT_POOLS, f"the engine gave {given}, outside its default pools: this test assumes them"
    used = _in_use()
    start = DEFAULT_POOLS.index(given)   # type: ignore[arg-type]
    for pool in DEFAULT_POOLS[start + 1:] + DEFAULT_POOLS[:start + 1]:
        if not any(pool.overlaps(u) for u in used if u.version == 4):
            return pool   # type: ignore[return-value]
    raise AssertionError("every default pool is in use")


def _lab_in(pool: ipaddress.IPv4Network, tmp: Path) -> LabDocker:
    """A lab project whose subnet is a /24 inside `pool`: the rendered networks, and two services
    that only hold them (created, never started)."""
    project = f"pgha-pooltest-{uuid.uuid4().hex[:6]}"
    subnet = list(pool.subnets(new_prefix=24))[-1]
    topo = Topology.build(project=project, subnet=str(subnet))
    doc = compose_document(topo, LabPaths(tmp, project))
    assert set(doc["networks"]) == {LAB_NET, EDGE_NET}, "the default lab publishes ports through its edge network"
    holder = {"image": BASE_IMAGE, "command": ["sleep", "infinity"]}
    doc["services"] = {"etcd1": {**holder, "networks": {LAB_NET: {}}},
                       "haproxy": {**holder, "networks": {LAB_NET: {}, EDGE_NET: {}}}}
    doc.pop("volumes")
    compose_file = tmp / project / "compose.yaml"
    compose_file.parent.mkdir(parents=True)
    compose_file.write_text(yaml.safe_dump(doc))
    return LabDocker(project, compose_file)


@pytest.mark.parametrize("run", range(4))
def test_the_lab_bridge_is_made_even_when_the_next_automatic_pool_holds_its_subnet(run: int, tmp_path: Path) -> None:
    for attempt in range(3):
        lab = _lab_in(_next_pool(), tmp_path)
        try:
            lab.compose("up", "--no-start")
        except LabError as refused:
            lab.compose("down", check=False)
            # Another worker's network took the pool between the probe and this `up` (the refusal
            # names it): probe again. Any other refusal, this lab's own networks clashing, is the bug.
            message = str(refused)
            if "overlaps Docker network" not in message or lab.project in message or attempt == 2:
                raise
            continue
        try:
            (lab_subnet,) = _subnets(network_name(lab.project))
            edge = _subnets(edge_network_name(lab.project))
            assert not any(lab_subnet.overlaps(e) for e in edge), (lab_subnet, edge)
        finally:
            lab.compose("down", check=False)
        # compose took the network made ahead of it for its own: `down` removes it with the rest.
        assert subprocess.run(["docker", "network", "inspect", network_name(lab.project)],
                              capture_output=True).returncode != 0
        return


def test_a_subnet_another_network_holds_is_refused_naming_that_network(tmp_path: Path) -> None:
    pool = _next_pool()
    squatter = f"pgha-pooltest-squatter-{uuid.uuid4().hex[:6]}"
    subprocess.run(["docker", "network", "create", "--subnet", str(pool), squatter], capture_output=True, check=True)
    lab = _lab_in(pool, tmp_path)
    try:
        with pytest.raises(LabError) as refused:
            lab.compose("up", "--no-start")
        assert str(refused.value) == (
            f"the lab's subnet {list(pool.subnets(new_prefix=24))[-1]} overlaps Docker network {squatter!r} ({pool}): "
            f"remove that network (`docker network rm {squatter}`) or bring the lab up on another --subnet.")
        # Refused before compose ran: nothing of the lab was made.
        assert subprocess.run(["docker", "network", "inspect", edge_network_name(lab.project)],
                              capture_output=True).returncode != 0
    finally:
        lab.compose("down", check=False)
        subprocess.run(["docker", "network", "rm", squatter], capture_output=True)
