"""The two places a playbook can build the cluster: the lab's own bare nodes (its topology as it is),
and real hosts at the course's addresses (192.168.56.0/24, the seed's VMs) or at the addresses a
user gives with `--host NAME=ADDRESS`. Real hosts get certificates of their own, made for their
addresses by tls.py beside the lab's (certs/<project>/hosts/), so a re-export changes nothing on them."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path

from pgha_lab.errors import LabError
from pgha_lab.paths import LabPaths
from pgha_lab.topology import DEFAULT_SUBNET, Published, Topology, TopologyError

LAB, HOSTS = "lab", "hosts"
WIDEST_PREFIX = 16            # hosts further apart than a /16 are not one estate's network


@dataclass(frozen=True)
class HostsPaths(LabPaths):
    """The real hosts' TLS material and node folders, beside the lab's and apart from them."""

    @property
    def certs(self) -> Path:
        return super().certs / HOSTS

    @property
    def nodes(self) -> Path:
        return self.state / HOSTS / "nodes"

    @property
    def legacy_certs(self) -> Path:
        return self.state / HOSTS / "no-legacy-certs"   # real hosts' material never lived elsewhere


def parse_hosts(pairs: list[str], topology: Topology) -> dict[str, ipaddress.IPv4Address]:
    """`--host NAME=ADDRESS` values: node name -> address, each checked (one sentence when wrong)."""
    out: dict[str, ipaddress.IPv4Address] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name or not text:
            raise LabError(f"--host takes NAME=ADDRESS such as dbnode1=192.168.56.10, not {pair!r}.")
        if name not in topology.names:
            raise LabError(f"--host names an unknown node {name!r}; the lab's nodes are {', '.join(topology.names)}.")
        try:
            address = ipaddress.IPv4Address(text)
        except ValueError:
            raise LabError(f"--host {name}={text}: {text!r} is not an IPv4 address such as 192.168.56.10.") from None
        if name in out:
            raise LabError(f"--host gives {name} twice; give each node one address.")
        out[name] = address
    return out


def _network_of(addresses: list[ipaddress.IPv4Address]) -> ipaddress.IPv4Network:
    """The smallest network of at least a /24 that holds every address (what pg_hba admits)."""
    for prefix in range(24, WIDEST_PREFIX - 1, -1):
        net = ipaddress.IPv4Network(f"{addresses[0]}/{prefix}", strict=False)
        if all(a in net for a in addresses):
            return net
    raise LabError(f"the hosts' addresses ({', '.join(map(str, addresses))}) do not share a /{WIDEST_PREFIX}; "
                   f"give addresses of one network.")


def hosts_topology(lab: Topology, overrides: dict[str, ipaddress.IPv4Address]) -> Topology:
    """The lab's nodes at the course's addresses, with `overrides` applied; nothing published (real
    hosts are reached at their own addresses)."""
    seed = Topology.build(db_nodes=len(lab.db), etcd_nodes=len(lab.etcd), subnet=DEFAULT_SUBNET, prefix=lab.prefix,
                          project=lab.project, scope=lab.scope, published=replace(Published(), enabled=False))
    address = {n.name: overrides.get(n.name, n.address) for n in seed.nodes}
    by_address: dict[ipaddress.IPv4Address, str] = {}
    for name, addr in address.items():
        if addr in by_address:
            raise LabError(f"{by_address[addr]} and {name} would both be {addr}; give every node its own address.")
        by_address[addr] = name
    if not overrides:
        return seed
    if not all(a.is_private for a in address.values()):
        public = next(a for a in address.values() if not a.is_private)
        raise LabError(f"{public} is not a private address; the cluster's nodes belong on a private network.")
    net = ipaddress.IPv4Network(DEFAULT_SUBNET)
    if not all(a in net for a in address.values()):
        net = _network_of(list(address.values()))

    def moved(nodes):
        return tuple(replace(n, address=address[n.name]) for n in nodes)
    topo = replace(seed, subnet=net, etcd=moved(seed.etcd), db=moved(seed.db), haproxy=moved((seed.haproxy,))[0])
    try:
        topo.validate()
    except TopologyError as exc:
        raise LabError(f"--host: {exc}") from None
    return topo
