"""Patroni's on_role_change callback and before_stop hook: a Python script, run by the Patroni venv's
interpreter, that tells HAProxy's runtime API which db node is the primary the moment Patroni
promotes or demotes it, and takes a node off 5432 right before its PostgreSQL stops.

before_stop matters in a switchover: Patroni answers 200 on /primary for as long as it holds the
leader key, and it keeps the key for about a second after PostgreSQL has stopped (Patroni's
demote waits for the replica to receive the shutdown checkpoint). Until then HAProxy would send
new clients to a port that refuses them and retry for a second each; marked down, they are
refused at once and reach the new primary as soon as its on_role_change marks it up.

Forced check states (`set server ... health up|down`) rather than maintenance mode: the next health
check still has the last word, so a lost or stale callback falls back to the checks. The new primary
first marks every other server down and only then itself up, so 5432 never has two servers UP."""
from __future__ import annotations

from pgha_lab import node_paths
from pgha_lab.render.common import RenderedFile, header
from pgha_lab.render.haproxy import RUNTIME_API_PORT
from pgha_lab.topology import Node, Topology

FILE = ("haproxy_callback.py", "/etc/patroni/haproxy_callback.py")   # host name, container path
COMMAND = f"{node_paths.PATRONI_VENV}/bin/python {FILE[1]}"          # Patroni appends: action role scope
BEFORE_STOP = "before_stop"
BEFORE_STOP_COMMAND = f"{COMMAND} {BEFORE_STOP}"                     # Patroni appends nothing
BACKEND = "primary"

SCRIPT = '''
import socket
import sys
import threading

HAPROXIES = {haproxies!r}   # every HAProxy node's runtime API: with two, both must switch
ME = {me!r}
CONNECT_TIMEOUT_S = 0.25


def ask(haproxy, command):
    # A live HAProxy on the lab network accepts within milliseconds; a dead one's address never
    # answers, and before_stop holds the stop (with the other node already told) until it gives up.
    with socket.create_connection(haproxy, timeout=CONNECT_TIMEOUT_S) as s:
        s.settimeout(1.0)
        s.sendall((command + "\\n").encode())
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = s.recv(4096)
            if not data:
                return b"".join(chunks).decode(errors="replace").strip()
            chunks.append(data)


def servers(haproxy):
    # `show servers state`: a version line, a '#' header, then one line a server (its name 4th).
    # Asked of HAProxy, not written in here, so adding a db node leaves this file unchanged.
    lines = ask(haproxy, "show servers state {backend}").splitlines()
    return [f.split()[3] for f in lines if not f.startswith("#") and len(f.split()) > 3]


def commands(role, names):
    # before_stop comes without a role: like a demoted node, it only takes itself off 5432.
    if role in ("primary", "master"):
        others = [n for n in names if n != ME]
        return ["set server {backend}/%s health down" % o for o in others] + ["set server {backend}/%s health up" % ME]
    return ["set server {backend}/%s health down" % ME]


def main(argv):
    if len(argv) < 3 and argv[1:] != [{before_stop!r}]:
        return 0
    action, role = argv[1], (argv[2] if len(argv) > 2 else "")

    def tell(haproxy):
        where = "%s:%d" % haproxy
        try:
            told = commands(role, servers(haproxy) if role in ("primary", "master") else [])
            reply = ask(haproxy, "; ".join(told))
        except OSError as exc:
            # The routing profile is off (nothing listens) or this HAProxy is away: its checks decide.
            print("pgha-lab callback %s %s: HAProxy runtime API at %s not reached (%s); health checks decide"
                  % (action, role, where, exc), file=sys.stderr)
            return
        print("pgha-lab callback %s %s: told HAProxy at %s %s%s" % (action, role, where, "; ".join(told),
                                                                    (" (" + reply + ")") if reply else ""),
              file=sys.stderr)

    # At once: Patroni waits for before_stop, and a dead HAProxy's address costs the connect timeout.
    threads = [threading.Thread(target=tell, args=(h,)) for h in HAPROXIES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
'''


def render(topology: Topology, node: Node) -> RenderedFile:
    haproxies = [(str(h.address), RUNTIME_API_PORT) for h in topology.haproxies]
    body = SCRIPT.format(haproxies=haproxies, me=node.name,
                         backend=BACKEND, before_stop=BEFORE_STOP)
    return RenderedFile(FILE[0], FILE[1], header(f"Patroni on_role_change callback of {node.name}",
                                                 topology.project) + body)
