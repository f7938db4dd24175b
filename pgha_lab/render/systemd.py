"""How the services start on a host that boots systemd (a bare lab's node, a real VM): the files the
exported playbook installs beside the configs. etcd and HAProxy keep Ubuntu's own units (etcd's reads
/etc/default/etcd, where its config file is named); Patroni, installed with pip, gets a unit in the
shape of the one Patroni ships. The ready lab starts the same programs with the same files from its
images' entrypoints instead; nothing else differs."""
from __future__ import annotations

from pgha_lab import node_paths
from pgha_lab.render.common import RenderedFile, header
from pgha_lab.topology import Node, Role, Topology

ETCD_DEFAULTS = ("etcd.default", "/etc/default/etcd")               # host name, path on the node
PATRONI_UNIT = ("patroni.service", "/etc/systemd/system/patroni.service")
PATRONI_ENV = ("patroni.env", "/etc/patroni/patroni.env")           # the passwords (secrets.render())
# What each role's unit is called (the playbook enables and starts these).
UNITS = {Role.ETCD: "etcd", Role.DB: "patroni", Role.HAPROXY: "haproxy"}
# Long enough for Patroni to stop PostgreSQL with a fast shutdown and release the leader key (as the
# ready lab's stop grace period).
PATRONI_STOP_S = 60


def etcd_defaults(topology: Topology, node: Node) -> RenderedFile:
    text = header(f"etcd's start-up options on {node.name} (read by Ubuntu's etcd.service)", topology.project) + \
        "# With a config file etcd ignores the ETCD_* variables Ubuntu's unit sets; every setting is in it.\n" + \
        f'DAEMON_ARGS="--config-file {node_paths.ETCD_CONFIG}"\n'
    return RenderedFile(ETCD_DEFAULTS[0], ETCD_DEFAULTS[1], text)


def patroni_unit(topology: Topology, node: Node) -> RenderedFile:
    text = header(f"Patroni's systemd unit on {node.name}", topology.project) + f"""\
[Unit]
Description=Patroni: PostgreSQL high availability ({topology.scope}, member {node.name})
Documentation=https://patroni.readthedocs.io/
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=postgres
Group=postgres
# The passwords, as the ready lab's db node has them in its environment (Patroni reads PATRONI_*).
EnvironmentFile={PATRONI_ENV[1]}
ExecStart={node_paths.PATRONI_VENV}/bin/patroni {node_paths.PATRONI_CONFIG}
ExecReload=/bin/kill -s HUP $MAINPID
# Patroni stops PostgreSQL itself (a fast shutdown, then it lets the leader key go): systemd must
# signal Patroni alone, not every process of the unit at once.
KillMode=process
TimeoutStopSec={PATRONI_STOP_S}
Restart=no

[Install]
WantedBy=multi-user.target
"""
    return RenderedFile(PATRONI_UNIT[0], PATRONI_UNIT[1], text)


def render(topology: Topology, node: Node) -> list[RenderedFile]:
    """The start-up files of one node; HAProxy needs none (Ubuntu's unit reads /etc/haproxy/haproxy.cfg)."""
    if node.role is Role.ETCD:
        return [etcd_defaults(topology, node)]
    if node.role is Role.DB:
        return [patroni_unit(topology, node)]
    return []
