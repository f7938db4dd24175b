"""etcd 3.4 member settings (the --config-file YAML) and the env file of the `ectl` wrapper."""
from __future__ import annotations

import yaml

from pgha_lab import node_paths, tls
from pgha_lab.profiles import Profile
from pgha_lab.render.common import RenderedFile, header
from pgha_lab.topology import Node, Topology

TLS = node_paths.ETCD_TLS
CONF, ECTL = "etcd.conf.yml", "ectl.env"
FILES = ((CONF, node_paths.ETCD_CONFIG), (ECTL, node_paths.ECTL_ENV))   # host name, container path


def member_url(topology: Topology, node: Node, port: int) -> str:
    return f"https://{node.address}:{port}"


def client_endpoints(topology: Topology) -> list[str]:
    return [member_url(topology, m, topology.ports.etcd_client) for m in topology.etcd]


def settings(topology: Topology, node: Node) -> dict:
    """The member's settings; keys are etcd 3.4's config-file names (the flag names without --)."""
    ports = topology.ports
    transport = {"cert-file": f"{TLS}/{tls.crt(tls.ETCD)}", "key-file": f"{TLS}/{tls.key(tls.ETCD)}",
                 "trusted-ca-file": f"{TLS}/{tls.CA_CERT}", "client-cert-auth": True, "auto-tls": False}
    return {
        "name": node.name,
        "data-dir": f"{node_paths.ETCD_DATA_ROOT}/{node.name}",
        # Clients on the lab network use the member's address; `ectl` on the node uses loopback.
        "listen-client-urls": f"{member_url(topology, node, ports.etcd_client)},https://127.0.0.1:{ports.etcd_client}",
        "advertise-client-urls": member_url(topology, node, ports.etcd_client),
        "listen-peer-urls": member_url(topology, node, ports.etcd_peer),
        "initial-advertise-peer-urls": member_url(topology, node, ports.etcd_peer),
        "initial-cluster": ",".join(f"{m.name}={member_url(topology, m, ports.etcd_peer)}" for m in topology.etcd),
        "initial-cluster-token": f"{topology.project}-etcd",   # per lab: two labs never merge
        "initial-cluster-state": "new",
        "client-transport-security": dict(transport),
        "peer-transport-security": dict(transport),
        # Patroni's etcd3 client speaks JSON to the gRPC gateway; with a config file etcd 3.4
        # leaves the gateway off unless asked (the flag defaults on, the file's zero value is off).
        "enable-grpc-gateway": True,
        # A member that restarts (a rolling restart, a rebooted VM) asks before campaigning, so it
        # cannot depose a healthy leader with a higher term; etcd 3.5 turns this on by default.
        "pre-vote": True,
        "enable-v2": False,
        "logger": "zap",
        "log-outputs": ["stderr"],
        "auto-compaction-mode": "periodic",
        "auto-compaction-retention": "1h",
    }


def render(topology: Topology, node: Node, profile: Profile) -> list[RenderedFile]:
    conf = header(f"etcd member {node.name}", topology.project) + \
        yaml.safe_dump(settings(topology, node), sort_keys=False, default_flow_style=False)
    env = {
        "ETCDCTL_API": "3",
        "ETCDCTL_ENDPOINTS": ",".join(client_endpoints(topology)),
        "ETCDCTL_CACERT": f"{TLS}/{tls.CA_CERT}",
        "ETCDCTL_CERT": f"{TLS}/{tls.crt(tls.ETCDCTL)}",
        "ETCDCTL_KEY": f"{TLS}/{tls.key(tls.ETCDCTL)}",
    }
    ectl = header("etcdctl settings for the `ectl` wrapper", topology.project) + \
        "".join(f"{k}={v}\n" for k, v in env.items())
    return [RenderedFile(CONF, node_paths.ETCD_CONFIG, conf), RenderedFile(ECTL, node_paths.ECTL_ENV, ectl)]
