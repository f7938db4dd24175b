"""The lab's topology model: which nodes exist, their roles, names, addresses and ports.

Everything else (certificates, rendered configs, the compose project, probes) is derived
from a Topology; nothing restates an address by hand.
"""
from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

from pgha_lab import gateway  # container and network names are the gateway's to give

SCHEMA = "pgha-lab/v1"
DEFAULT_SUBNET = "192.168.56.0/24"   # VirtualBox's default host-only network
DEFAULT_PROJECT = "pgha-lab"
DEFAULT_SCOPE = "18/main"               # Patroni's scope, named like the Ubuntu cluster it stands for
DB_NODE_RANGE = range(2, 10)         # 2..9
ETCD_SIZES = (1, 3, 5)               # odd, so a majority is well defined

# Host offsets inside the subnet. The defaults reproduce the original VM estate:
# dbnode1 .10, dbnode2 .20, haproxy .30; further db nodes keep stepping by ten,
# skipping the HAProxy's .30; etcd members sit at .11 upwards.
HOST_OFFSET = 1
HAPROXY_OFFSET = 30
# A second HAProxy (`up --haproxy-nodes 2`) sits next to the first at .31 and the virtual address
# keepalived moves between them at .32: db nodes step by ten (.40 after .20) and etcd stays within
# .11-.15, so neither can ever grow into .31-.39.
HAPROXY2_OFFSET = 31
VIP_OFFSET = 32
HAPROXY_NODE_COUNTS = (1, 2)
ETCD_FIRST_OFFSET = 11
# A db node's own data disk (`up --disk-size`): room for initdb, max_wal_size of WAL and a drill's tables.
DISK_SIZE_RANGE = (1 << 30, 64 << 30)

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


class TopologyError(ValueError):
    """A topology a user asked for that the lab cannot build; the message says what is allowed."""


def check_project(project: str) -> str:
    """A lab's name is a compose project and a folder under labs/ and certs/: no path, no capitals."""
    if not _NAME_RE.match(project):
        raise TopologyError(f"project name {project!r} must be lowercase letters, digits and dashes.")
    return project


class UnknownNode(TopologyError):
    pass


class Role(str, enum.Enum):
    ETCD = "etcd"
    DB = "dbnode"
    HAPROXY = "haproxy"


@dataclass(frozen=True)
class Node:
    name: str
    role: Role
    address: ipaddress.IPv4Address
    index: int  # 1-based position within its role

    @property
    def hostname(self) -> str:
        return self.name


@dataclass(frozen=True)
class Ports:
    """Ports the services listen on inside the lab network."""
    postgres: int = 5432
    restapi: int = 8008
    etcd_client: int = 2379
    etcd_peer: int = 2380
    haproxy_primary: int = 5432
    haproxy_replicas: int = 5433
    haproxy_stats: int = 8404


@dataclass(frozen=True)
class Published:
    """HAProxy ports published on the host (for Docker Desktop, where lab addresses are unreachable)."""
    bind: str = "127.0.0.1"
    primary: int = 5432
    replicas: int = 5433
    stats: int = 8404
    enabled: bool = True

    def validate(self) -> None:
        """Refuse what compose or the certificates could not use; checked even when off, as it is saved."""
        if not isinstance(self.enabled, bool):
            raise TopologyError(f"published.enabled must be true or false, not {self.enabled!r}.")
        try:
            bind = ipaddress.ip_address(self.bind if isinstance(self.bind, str) else "")   # not an int: 127 parses
        except ValueError:
            raise TopologyError(f"the published bind address must be an IPv4 address such as 127.0.0.1, "
                                f"not {self.bind!r}.") from None
        if bind.version != 4:
            # compose.py writes bind:host:container, which an IPv6 literal would need brackets for.
            raise TopologyError(f"the published bind address {self.bind} is IPv6; only IPv4 addresses "
                                f"such as 127.0.0.1 are supported.")
        for port in (self.primary, self.replicas, self.stats):
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise TopologyError(f"published ports must be whole numbers between 1 and 65535, not {port!r}.")
        if len({self.primary, self.replicas, self.stats}) != 3:
            raise TopologyError("the published ports for the primary, the replicas and the stats page must differ.")

    def as_pairs(self, ports: Ports) -> list[tuple[int, int]]:
        """(host port, container port) pairs, empty when publishing is off."""
        if not self.enabled:
            return []
        return [(self.primary, ports.haproxy_primary), (self.replicas, ports.haproxy_replicas),
                (self.stats, ports.haproxy_stats)]


def db_offset(index: int) -> int:
    """Host offset of db node `index` (1-based): .10, .20, .40, .50 ... (.30 is HAProxy's)."""
    offset = index * 10
    return offset + 10 if offset >= HAPROXY_OFFSET else offset


@dataclass(frozen=True)
class Topology:
    project: str
    subnet: ipaddress.IPv4Network
    prefix: str
    etcd: tuple[Node, ...]
    db: tuple[Node, ...]
    haproxy: Node
    scope: str = DEFAULT_SCOPE
    ports: Ports = field(default_factory=Ports)
    published: Published = field(default_factory=Published)
    haproxy2: Node | None = None   # the second HAProxy of a two-HAProxy lab (keepalived moves the VIP)
    db_disk_size: int | None = None   # bytes of each db node's own data disk (disks.py); None: a plain volume
    bare: bool = False   # nodes boot systemd with nothing configured, like fresh VMs (`up --bare`, bare/)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def build(cls, *, db_nodes: int = 2, etcd_nodes: int = 3, subnet: str = DEFAULT_SUBNET,
              prefix: str = "", project: str = DEFAULT_PROJECT, published: Published | None = None,
              scope: str = DEFAULT_SCOPE, haproxy_nodes: int = 1, db_disk_size: int | None = None,
              bare: bool = False) -> Topology:
        if db_nodes not in DB_NODE_RANGE:
            raise TopologyError(f"db nodes must be between {DB_NODE_RANGE.start} "
                                f"and {DB_NODE_RANGE.stop - 1}, not {db_nodes}.")
        if etcd_nodes not in ETCD_SIZES:
            raise TopologyError("etcd members must be 1, 3 or 5 (an odd count "
                                f"keeps a clear majority), not {etcd_nodes}.")
        if isinstance(haproxy_nodes, bool) or haproxy_nodes not in HAPROXY_NODE_COUNTS:
            raise TopologyError(f"HAProxy nodes must be 1 or 2 (two share a virtual address through keepalived), "
                                f"not {haproxy_nodes}.")
        if db_disk_size is not None and not DISK_SIZE_RANGE[0] <= db_disk_size <= DISK_SIZE_RANGE[1]:
            raise TopologyError(f"a db node's disk must be between {DISK_SIZE_RANGE[0] >> 30} and "
                                f"{DISK_SIZE_RANGE[1] >> 30} GiB (room for max_wal_size of WAL), "
                                f"not {db_disk_size} bytes.")
        if not isinstance(bare, bool):
            raise TopologyError(f"bare must be true or false, not {bare!r}.")
        if bare and (haproxy_nodes != 1 or db_disk_size is not None):
            raise TopologyError("a bare lab has one HAProxy node and its db nodes keep their data in Docker volumes; "
                                "leave out --haproxy-nodes 2 and --disk-size.")
        check_project(project)
        if prefix and not re.match(r"^[a-z][a-z0-9-]{0,15}$", prefix):
            raise TopologyError(f"name prefix {prefix!r} must start with a letter and hold "
                                "only lowercase letters, digits and dashes (16 at most).")
        try:
            net = ipaddress.IPv4Network(subnet, strict=True)
        except ValueError as exc:
            raise TopologyError(f"subnet {subnet!r} is not an IPv4 network such as {DEFAULT_SUBNET} ({exc}).") from None
        if not net.is_private:
            raise TopologyError(f"subnet {net} is not a private range; use one such as {DEFAULT_SUBNET}.")

        # Size the advice by the highest offset any node needs, not the first one that misses.
        highest = max(ETCD_FIRST_OFFSET + etcd_nodes - 1, db_offset(db_nodes), HAPROXY_OFFSET,
                      VIP_OFFSET if haproxy_nodes == 2 else 0)
        if highest >= net.num_addresses - 1:
            raise TopologyError(
                f"subnet {net} is too small for {db_nodes} db nodes and {etcd_nodes} etcd members; "
                f"use a /{_smallest_prefix_for(highest)} or larger.")

        def make(role: Role, base: str, index: int, offset: int) -> Node:
            return Node(f"{prefix}{base}{index}" if index else f"{prefix}{base}", role, net[offset], index)

        etcd = tuple(make(Role.ETCD, "etcd", i, ETCD_FIRST_OFFSET + i - 1) for i in range(1, etcd_nodes + 1))
        db = tuple(make(Role.DB, "dbnode", i, db_offset(i)) for i in range(1, db_nodes + 1))
        haproxy = make(Role.HAPROXY, "haproxy", 0, HAPROXY_OFFSET)
        # Node 1 keeps its name and address, so a lab grown to two HAProxy nodes changes nothing else.
        haproxy2 = make(Role.HAPROXY, "haproxy", 2, HAPROXY2_OFFSET) if haproxy_nodes == 2 else None
        topo = cls(project=project, subnet=net, prefix=prefix, etcd=etcd, db=db, haproxy=haproxy,
                   scope=scope, published=published or Published(), haproxy2=haproxy2, db_disk_size=db_disk_size,
                   bare=bare)
        topo.validate()
        return topo

    def validate(self) -> None:
        """Refuse clashing names or addresses, and addresses outside the subnet."""
        seen_names: dict[str, Node] = {}
        seen_addrs: dict[ipaddress.IPv4Address, Node] = {}
        reserved = {self.subnet.network_address, self.subnet.broadcast_address, self.host_address}
        if self.vip is not None:
            reserved.add(self.vip)
        for node in self.nodes:
            if node.name in seen_names:
                raise TopologyError(f"node name {node.name} is used twice; every node needs its own name.")
            if node.address in seen_addrs:
                raise TopologyError(f"{node.name} and {seen_addrs[node.address].name} both "
                                    f"have {node.address}; every node needs its own address.")
            if node.address not in self.subnet or node.address in reserved:
                raise TopologyError(f"{node.name}'s address {node.address} is not a usable "
                                    f"host address in {self.subnet} (.1 is the host's).")
            seen_names[node.name] = node
            seen_addrs[node.address] = node
        self.published.validate()

    # -- views ----------------------------------------------------------------------------
    @property
    def nodes(self) -> tuple[Node, ...]:
        return (*self.etcd, *self.db, *self.haproxies)

    @property
    def haproxies(self) -> tuple[Node, ...]:
        return (self.haproxy, self.haproxy2) if self.haproxy2 else (self.haproxy,)

    @property
    def vip(self) -> ipaddress.IPv4Address | None:
        """The virtual address keepalived moves between two HAProxy nodes (None with one)."""
        return self.subnet[VIP_OFFSET] if self.haproxy2 else None

    @property
    def vip_reserved(self) -> ipaddress.IPv4Address | None:
        """The address a VIP has or would have (certificates name it either way, so growing to two
        HAProxy nodes re-issues no PostgreSQL certificate); None when the subnet is too small."""
        return self.subnet[VIP_OFFSET] if self.subnet.num_addresses - 1 > VIP_OFFSET else None

    @property
    def entry_address(self) -> ipaddress.IPv4Address:
        """Where clients connect: the VIP with two HAProxy nodes, the one HAProxy's address otherwise."""
        return self.vip or self.haproxy.address

    def published_pairs(self) -> list[tuple[int, int]]:
        """Host ports actually published: none with two HAProxy nodes, as a port published from one
        container would not follow the VIP (it would be a single entry point again)."""
        return [] if self.haproxy2 else self.published.as_pairs(self.ports)

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def host_address(self) -> ipaddress.IPv4Address:
        """The host's own address on the lab network, as a VirtualBox host-only adapter has it."""
        return self.subnet[HOST_OFFSET]

    @property
    def network_name(self) -> str:
        return gateway.network_name(self.project)

    def container_name(self, node: Node | str) -> str:
        name = node.name if isinstance(node, Node) else node
        return gateway.container_name(self.project, name)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise UnknownNode(f"unknown node {name!r}; valid nodes are: {', '.join(self.names)}.")

    def by_role(self, role: Role) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role is role)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    # -- persistence (a kind-like versioned document) ------------------------------------
    def to_dict(self) -> dict[str, Any]:
        disk = {"dbDiskSize": self.db_disk_size} if self.db_disk_size is not None else {}
        bare = {"bare": True} if self.bare else {}   # a ready lab's document stays as it was
        return {
            "apiVersion": SCHEMA,
            "project": self.project,
            "subnet": str(self.subnet),
            "prefix": self.prefix,
            "scope": self.scope,
            "dbNodes": len(self.db),
            **disk,
            "etcdNodes": len(self.etcd),
            "haproxyNodes": len(self.haproxies),
            **bare,
            "published": {"enabled": self.published.enabled, "bind": self.published.bind,
                          "primary": self.published.primary, "replicas": self.published.replicas,
                          "stats": self.published.stats},
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Topology:
        if not isinstance(doc, dict):
            raise TopologyError("a topology document must be a mapping of keys such as apiVersion and dbNodes.")
        if doc.get("apiVersion") != SCHEMA:
            raise TopologyError(f"unsupported topology apiVersion {doc.get('apiVersion')!r}; expected {SCHEMA!r}.")
        pub = doc.get("published") or {}
        if not isinstance(pub, dict):
            raise TopologyError("published must be a mapping of keys such as bind and primary.")
        _known_keys(doc, _DOC_KEYS, "the topology")
        _known_keys(pub, _PUBLISHED_KEYS, "published")
        try:
            return cls.build(db_nodes=_count(doc, "dbNodes", 2), etcd_nodes=_count(doc, "etcdNodes", 3),
                             subnet=str(doc.get("subnet", DEFAULT_SUBNET)), prefix=str(doc.get("prefix", "")),
                             project=str(doc.get("project", DEFAULT_PROJECT)),
                             scope=str(doc.get("scope", DEFAULT_SCOPE)),
                             published=replace(Published(), **pub), haproxy_nodes=_count(doc, "haproxyNodes", 1),
                             db_disk_size=_count(doc, "dbDiskSize", 0) or None, bare=doc.get("bare", False))
        except TopologyError:
            raise
        except (TypeError, ValueError, KeyError) as exc:   # a safety net: callers catch TopologyError only
            raise TopologyError(f"the topology document is not one pgha-lab can read ({exc}).") from None


_DOC_KEYS = ("apiVersion", "project", "subnet", "prefix", "scope", "dbNodes", "etcdNodes", "haproxyNodes",
             "dbDiskSize", "bare", "published")
_PUBLISHED_KEYS = tuple(f.name for f in fields(Published))


def _known_keys(doc: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = [k for k in doc if k not in allowed]
    if unknown:
        raise TopologyError(f"{where} has an unknown key {unknown[0]!r}; the allowed keys are {', '.join(allowed)}.")


def _count(doc: dict[str, Any], key: str, default: int) -> int:
    value = doc.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise TopologyError(f"{key} must be a whole number, not {value!r}.")


def _smallest_prefix_for(offset: int) -> int:
    """Longest prefix length whose network still has `offset` as a usable host."""
    for length in range(30, 0, -1):
        if offset < 2 ** (32 - length) - 1:
            return length
    return 1
