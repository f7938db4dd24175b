"""Patroni 4.1 configuration (/etc/patroni/config.yml) for one db node, without a single password.

Passwords reach Patroni from the environment (secrets.env through compose's env_file), which
fills what is deliberately absent here; it also names the users, the same names as below.
"""
from __future__ import annotations

import yaml

from pgha_lab import node_paths, tls
from pgha_lab.lab_settings import DEFAULT as DEFAULT_SETTINGS
from pgha_lab.lab_settings import LabSettings
from pgha_lab.profiles import Profile
from pgha_lab.render import callback
from pgha_lab.render.common import RenderedFile, header
from pgha_lab.secrets import REPLICATION_USER, REWIND_USER, SUPERUSER
from pgha_lab.topology import Node, Topology

TLS = node_paths.PATRONI_TLS
CA = f"{TLS}/{tls.CA_CERT}"
FILES = (("patroni.yml", node_paths.PATRONI_CONFIG), callback.FILE)   # host name, container path
PGPASS = f"{node_paths.PG_HOME}/.pgpass_patroni"   # Patroni rewrites it; postgres must own the folder


def _hba(kind: str, db: str, user: str, address: str, method: str) -> str:
    if address:
        return f"{kind:<8}{db:<13}{user:<13}{address:<17}{method}".rstrip()
    return f"{kind:<8}{db:<13}{user:<30}{method}"


def pg_hba(topology: Topology) -> list[str]:
    """TLS and SCRAM for every network connection; nothing unencrypted ('host') at all."""
    net = str(topology.subnet)
    return [
        # Patroni and `sudo -u postgres psql` on the node itself, over the socket.
        _hba("local", "all", "all", "", "peer"),
        # A replica's Patroni reads its local timeline over a replication connection to
        # 127.0.0.1; without this line it logs "no pg_hba.conf entry for replication connection".
        _hba("hostssl", "replication", REPLICATION_USER, "127.0.0.1/32", "scram-sha-256"),
        _hba("hostssl", "all", "all", "127.0.0.1/32", "scram-sha-256"),
        _hba("hostssl", "all", "all", "::1/128", "scram-sha-256"),
        _hba("hostssl", "replication", REPLICATION_USER, net, "scram-sha-256"),
        _hba("hostssl", "all", "all", net, "scram-sha-256"),
    ]


def _auth(username: str) -> dict:
    # verify-full: the peer's certificate must come from the lab CA and name the address we dialled.
    return {"username": username, "sslmode": "verify-full", "sslrootcert": CA}


def settings(topology: Topology, node: Node, profile: Profile, lab: LabSettings = DEFAULT_SETTINGS) -> dict:
    ports = topology.ports
    dcs = lab.dcs()
    return {
        "scope": topology.scope,
        "name": node.name,
        "restapi": {
            "listen": f"0.0.0.0:{ports.restapi}",
            "connect_address": f"{node.address}:{ports.restapi}",
            "certfile": f"{TLS}/{tls.crt(tls.RESTAPI)}",
            "keyfile": f"{TLS}/{tls.key(tls.RESTAPI)}",
            "cafile": CA,
            # Every caller shows a lab certificate: HAProxy's checks, patronictl, the other members.
            "verify_client": "required",
        },
        "ctl": {
            # patronictl's client certificate; Patroni also presents it when it calls another member.
            "insecure": False,
            "certfile": f"{TLS}/{tls.crt(tls.PATRONICTL)}",
            "keyfile": f"{TLS}/{tls.key(tls.PATRONICTL)}",
            "cacert": CA,
        },
        "etcd3": {
            "protocol": "https",
            "hosts": [f"{m.address}:{ports.etcd_client}" for m in topology.etcd],
            "cacert": CA,
            "cert": f"{TLS}/{tls.crt(tls.ETCD_CLIENT)}",
            "key": f"{TLS}/{tls.key(tls.ETCD_CLIENT)}",
        },
        "bootstrap": {
            "dcs": {
                "ttl": profile.ttl,
                "loop_wait": profile.loop_wait,
                "retry_timeout": profile.retry_timeout,
                # The lab's settings (pgha_lab/lab_settings.py; the seed: one synchronous standby, not
                # strict, so a lone primary still takes writes). Later changes go through PATCH /config.
                **{k: v for k, v in dcs.items() if k != "postgresql"},
                "postgresql": {
                    **dcs["postgresql"],
                    "use_slots": True,
                    "parameters": {
                        # A lab on a laptop: small memory, still every HA-relevant setting.
                        "max_connections": 100,
                        "shared_buffers": "128MB",
                        "effective_cache_size": "256MB",
                        "work_mem": "4MB",
                        "maintenance_work_mem": "64MB",
                        "wal_level": "replica",
                        "hot_standby": "on",
                        "wal_log_hints": "on",      # pg_rewind needs it (or checksums)
                        "max_wal_senders": 10,
                        "max_replication_slots": 10,
                        "wal_keep_size": "128MB",
                        "password_encryption": "scram-sha-256",
                    },
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
        },
        "postgresql": {
            "listen": f"0.0.0.0:{ports.postgres}",
            "connect_address": f"{node.address}:{ports.postgres}",
            "data_dir": node_paths.PG_DATA,
            "bin_dir": node_paths.PG_BIN,
            "pgpass": PGPASS,
            "use_unix_socket": True,
            "authentication": {
                # Usernames only; the passwords come from PATRONI_*_PASSWORD in the environment.
                "superuser": _auth(SUPERUSER),
                "replication": _auth(REPLICATION_USER),
                "rewind": _auth(REWIND_USER),
            },
            "parameters": {
                # Node-local: each node serves its own certificate (same paths on every node).
                "ssl": "on",
                "ssl_cert_file": f"{TLS}/{tls.crt(tls.POSTGRES)}",
                "ssl_key_file": f"{TLS}/{tls.key(tls.POSTGRES)}",
                "ssl_ca_file": CA,
                "ssl_min_protocol_version": "TLSv1.2",
                "password_encryption": "scram-sha-256",
                "unix_socket_directories": node_paths.PG_RUN,
            },
            "pg_hba": pg_hba(topology),
            # A replica's clone starts with a checkpoint on the leader: pg_basebackup's default spreads
            # it, napping 100 ms a dirty buffer (12 of them right after the bootstrap: 1.3 s of a
            # 1.5 s checkpoint, measured), which every new replica and reinit then waits for.
            "basebackup": [{"checkpoint": "fast"}],
            # Always installed, so switching the routing profile never touches this file; it acts
            # only where HAProxy's runtime API listens (profiles.INSTANT), else the checks decide.
            "callbacks": {"on_role_change": callback.COMMAND},
            # Right before pg_ctl stop: off 5432 at once rather than when Patroni drops the key.
            "before_stop": callback.BEFORE_STOP_COMMAND,
        },
        "tags": {
            # Patroni 4.1's validator takes at most one of nofailover/failover_priority and of
            # nosync/sync_priority: a priority above 0 already means "may fail over / may be sync".
            "failover_priority": 1,
            "sync_priority": 1,
            "clonefrom": True,
            "noloadbalance": False,
        },
    }


def render(topology: Topology, node: Node, profile: Profile, lab: LabSettings = DEFAULT_SETTINGS) -> list[RenderedFile]:
    text = header(f"Patroni configuration of {node.name}", topology.project, profile.name) + \
        yaml.safe_dump(settings(topology, node, profile, lab), sort_keys=False, default_flow_style=False, width=120)
    return [RenderedFile(FILES[0][0], FILES[0][1], text), callback.render(topology, node)]
