"""The assignment a grader holds: the estate the learner is asked to build (node names and roles,
lab addresses, ports, where each certificate goes and what it must allow), derived from the topology
and the TLS plan the export installs, never from what pgha-lab rendered for a lab."""
from __future__ import annotations

from dataclasses import dataclass

from pgha_lab import node_paths, tls
from pgha_lab.topology import Role, Topology

SERVICE_USER = {Role.ETCD: "etcd", Role.DB: "postgres", Role.HAPROXY: "haproxy"}
TLS_DIR = {Role.ETCD: node_paths.ETCD_TLS, Role.DB: node_paths.PATRONI_TLS, Role.HAPROXY: node_paths.HAPROXY_TLS}
PURPOSE = {   # what each certificate is for, in the learner's words
    tls.ETCD: "etcd's client and peer certificate",
    tls.ETCDCTL: "etcdctl's client certificate",
    tls.POSTGRES: "PostgreSQL's server certificate",
    tls.RESTAPI: "Patroni's REST API certificate",
    tls.ETCD_CLIENT: "Patroni's etcd client certificate",
    tls.PATRONICTL: "patronictl's client certificate",
    tls.HAPROXY_CHECK: "HAProxy's health-check client certificate",
}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    role: str            # etcd | dbnode | haproxy
    address: str


@dataclass(frozen=True)
class CertDuty:
    """One certificate the assignment asks for on one node."""
    node: str
    cert: str            # its path on the node
    key: str             # its key's path (the same .pem for HAProxy's)
    purpose: str
    server: bool         # must allow serverAuth
    client: bool         # must allow clientAuth
    names: tuple[str, ...]   # names and addresses it must hold (the node's; PostgreSQL's also HAProxy's)
    owner: str           # who may read the key


@dataclass(frozen=True)
class Assignment:
    nodes: tuple[NodeSpec, ...]
    scope: str
    subnet: str
    etcd_client_port: int
    etcd_peer_port: int
    postgres_port: int
    restapi_port: int
    haproxy_primary_port: int
    haproxy_replicas_port: int
    haproxy_stats_port: int
    certificates: tuple[CertDuty, ...]

    @classmethod
    def of(cls, topo: Topology) -> Assignment:
        nodes = tuple(NodeSpec(n.name, n.role.value, str(n.address)) for n in topo.nodes)
        p = topo.ports
        return cls(nodes, topo.scope, str(topo.subnet), p.etcd_client, p.etcd_peer, p.postgres, p.restapi,
                   p.haproxy_primary, p.haproxy_replicas, p.haproxy_stats, _duties(topo))

    def role(self, role: str) -> tuple[NodeSpec, ...]:
        return tuple(n for n in self.nodes if n.role == role)

    @property
    def etcd(self) -> tuple[NodeSpec, ...]:
        return self.role("etcd")

    @property
    def db(self) -> tuple[NodeSpec, ...]:
        return self.role("dbnode")

    @property
    def haproxy(self) -> NodeSpec:
        return self.role("haproxy")[0]

    def node(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)

    def name_of(self, address: str) -> str | None:
        return next((n.name for n in self.nodes if n.address == address), None)

    def ca_path(self, node: str) -> str:
        return f"{TLS_DIR[Role(self.node(node).role)]}/{tls.CA_CERT}"


def _duties(topo: Topology) -> tuple[CertDuty, ...]:
    """The export's TLS layout (tls.plan, node_paths): the same files in the same places, each asked
    to hold the node's own name and lab address (and PostgreSQL's also HAProxy's, which clients dial),
    not the extra names pgha-lab adds for its own containers."""
    out = []
    hp = topo.haproxy
    for spec in tls.plan(topo):
        if spec.node is None:
            continue
        node = topo.node(spec.node)
        folder = TLS_DIR[node.role]
        names = [node.name, str(node.address)]
        if spec.bundle_name == tls.POSTGRES:
            names += [hp.name, str(hp.address)]
        if spec.combined_pem:
            cert = key = f"{folder}/{tls.pem(spec.bundle_name)}"
        else:
            cert, key = f"{folder}/{tls.crt(spec.bundle_name)}", f"{folder}/{tls.key(spec.bundle_name)}"
        out.append(CertDuty(node.name, cert, key, PURPOSE[spec.bundle_name], spec.server, spec.client,
                            tuple(names), SERVICE_USER[node.role]))
    return tuple(out)
