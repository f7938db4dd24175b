"""HAProxy 2.8 configuration: 5432 to the primary, 5433 to the replicas, a stats page on 8404.

Client traffic is plain TCP pass-through (PostgreSQL negotiates its own TLS inside it); only the
health checks against Patroni's REST API are TLS, with HAProxy's own client certificate.
"""
from __future__ import annotations

from pgha_lab import node_paths, tls
from pgha_lab.profiles import Profile
from pgha_lab.render.common import RenderedFile, header
from pgha_lab.topology import Node, Topology

TLS = node_paths.HAPROXY_TLS
CA = f"{TLS}/{tls.CA_CERT}"
CLIENT_PEM = f"{TLS}/{tls.pem(tls.HAPROXY_CHECK)}"     # certificate + key in one file, as `crt` wants it
FILES = (("haproxy.cfg", node_paths.HAPROXY_CONFIG),)   # host name, container path
STATS_SOCKET = "/run/haproxy/admin.sock"
# The runtime API on the lab network (routing profile only): the lab network is internal, and this
# listener is bound to HAProxy's own lab address, so only the lab's nodes (and the host) reach it.
RUNTIME_API_PORT = 9999


def _listen(topology: Topology, profile: Profile, name: str, port: int, endpoint: str, comment: str) -> list[str]:
    p = profile
    lines = [
        f"listen {name}",
        f"    # {comment}",
        f"    bind *:{port}",
        "    mode tcp",
        "    balance roundrobin" if name == "replicas" else "    balance first",
        "    option httpchk",
        f"    http-check send meth GET uri {endpoint}",
        "    http-check expect status 200",
        *_running_expect(profile, name),
        # check-ssl (not ssl): the check is TLS to Patroni's port, the data stays untouched TCP.
        f"    default-server inter {p.check_inter_ms}ms{_transition_inters(p)} fall {p.check_fall} rise {p.check_rise} "
        f"on-marked-down shutdown-sessions check-ssl port {topology.ports.restapi} "
        f"verify required ca-file {CA} crt {CLIENT_PEM}",
    ]
    for db in topology.db:
        # check-sni/verifyhost: the REST API certificate must name the member being checked.
        lines.append(f"    server {db.name} {db.address}:{topology.ports.postgres} check "
                     f"check-sni {db.name} verifyhost {db.name}")
    return lines


def _running_expect(p: Profile, name: str) -> list[str]:
    # /replica already wants a running PostgreSQL; /primary only wants the leader key (see profiles).
    if not (p.check_running and name == "primary"):
        return []
    return ["    # and PostgreSQL running out of recovery: Patroni says 200 while it holds the key, with PostgreSQL",
            "    # still stopping (an old primary) or not yet promoted (a new one)",
            '    http-check expect rstring "\\"state\\": \\"running\\""',
            '    http-check expect rstring "\\"role\\": \\"primary\\""']


def _transition_inters(p: Profile) -> str:
    out = f" fastinter {p.check_fastinter_ms}ms" if p.check_fastinter_ms else ""
    return out + (f" downinter {p.check_downinter_ms}ms" if p.check_downinter_ms else "")


def runtime_api_lines(topology: Topology, profile: Profile, node: Node | None = None) -> list[str]:
    if not profile.runtime_api:
        return []
    return [f"    stats socket ipv4@{(node or topology.haproxy).address}:{RUNTIME_API_PORT} level admin",
            "    # ^ Patroni's on_role_change callback: 'set server primary/<node> health up|down'"]


def render_text(topology: Topology, profile: Profile, node: Node | None = None) -> str:
    ports = topology.ports
    p = profile
    out = [
        "global",
        "    user haproxy",
        "    group haproxy",
        "    maxconn 1000",
        f"    stats socket {STATS_SOCKET} mode 660 level admin",
        *runtime_api_lines(topology, p, node),
        "    log stdout format raw local0",
        "",
        "defaults",
        "    mode tcp",
        "    log global",
        "    option tcplog",
        "    retries 2",
        "    timeout connect 4s",
        # Long client/server timeouts: an idle psql session must not be cut by the proxy.
        "    timeout client 30m",
        "    timeout server 30m",
        f"    timeout check {p.check_timeout_ms}ms",
        "",
        "listen stats",
        "    mode http",
        f"    bind *:{ports.haproxy_stats}",
        "    stats enable",
        "    stats uri /",
        f"    stats refresh {p.stats_refresh_s}s",
        "",
        *_listen(topology, p, "primary", ports.haproxy_primary, "/primary",
                 "only the member whose REST API answers 200 on /primary (guides use the legacy /master; "
                 "Patroni still answers it)"),
        "",
        *_listen(topology, p, "replicas", ports.haproxy_replicas, "/replica",
                 "every running replica; /replica answers 200 only on a healthy standby"),
        "",
    ]
    return "\n".join(out)


def render(topology: Topology, profile: Profile, node: Node | None = None) -> list[RenderedFile]:
    """HAProxy's file for `node` (the first HAProxy unless given); both nodes of a two-HAProxy lab
    route alike, only the runtime API listens on each node's own address."""
    text = header("HAProxy configuration", topology.project, profile.name) + render_text(topology, profile, node)
    return [RenderedFile(FILES[0][0], FILES[0][1], text)]
