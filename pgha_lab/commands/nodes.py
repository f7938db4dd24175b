"""Reaching into nodes: `pgha-lab psql`, `exec` and `logs`."""
from __future__ import annotations

import argparse
import sys

from pgha_lab import node_paths, reading, tls
from pgha_lab.commands import summary
from pgha_lab.commands._common import lab_context
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.topology import Role, TopologyError

# The example a DBA copies: patronictl needs the config's path, as on the VMs.
PATRONICTL_LIST = f"patronictl -c {node_paths.PATRONI_CONFIG} list"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("psql", help=summary("psql"))
    p.add_argument("--replica", action="store_true", help="connect to the replicas port (5433)")
    p.add_argument("psql_args", nargs=argparse.REMAINDER, help="arguments for psql, after --")
    p.set_defaults(func=cmd_psql)

    e = sub.add_parser("exec", help=summary("exec"))
    e.add_argument("node")
    e.add_argument("-u", "--user", default=None,
                   help="user to run as (default: postgres on db nodes, as after `sudo -iu postgres`; root elsewhere)")
    e.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    e.set_defaults(func=cmd_exec)

    lg = sub.add_parser("logs", help=summary("logs"))
    lg.add_argument("node")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("-n", "--tail", default="200", help="lines from the end (default 200, 'all' for everything)")
    lg.set_defaults(func=cmd_logs)


def _strip_dashes(argv: list[str]) -> list[str]:
    return argv[1:] if argv[:1] == ["--"] else argv


def _node(topo, name: str):
    try:
        return topo.node(name)
    except TopologyError as exc:
        raise LabError(str(exc)) from None


def _require_running(ctx: LabContext, name: str) -> None:
    if ctx.docker.containers().get(name) != "running":
        raise LabError(f"{name} is not running; `pgha-lab status` shows the lab, `pgha-lab up` starts it.")


def _tty() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def cmd_psql(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    topo = ctx.topology
    # The client runs inside a db node: one whose cable is pulled (`chaos isolate`) reaches no HAProxy.
    states = ctx.docker.states(list(topo.db))
    client = next((n for n in topo.db if states[n.name].running and states[n.name].on_lab_network), None)
    if client is None:
        raise LabError(f"no db node of lab {topo.project!r} is running on the lab network; start it with "
                       f"`pgha-lab up` (or `pgha-lab chaos heal-all`).")
    if not args.replica:
        # libpq would only say that the server closed the connection: HAProxy has nowhere to send it.
        writes = reading.write_path(ctx, states)
        if not writes.ok:
            raise LabError(f"{writes.reason}; `pgha-lab status` shows every member, `pgha-lab psql --replica` "
                           f"still reads from a replica.")
    conninfo = ctx.dsn(replica=args.replica, ca=f"{node_paths.PATRONI_TLS}/{tls.CA_CERT}")
    if ctx.topology.bare:
        # A bare node's environment holds no password (its Patroni reads it from a file only root
        # may read): psql gets the lab's, from the host's secrets file.
        return ctx.docker.exec_interactive(client, ["psql", conninfo, *_strip_dashes(args.psql_args)], tty=_tty(),
                                           env={"PGPASSWORD": ctx.secrets.superuser_password})
    # The db node's environment holds the superuser password (from secrets.env); psql reads PGPASSWORD.
    cmd = ["sh", "-c", 'PGPASSWORD="$PATRONI_SUPERUSER_PASSWORD" exec psql "$@"', "psql", conninfo,
           *_strip_dashes(args.psql_args)]
    return ctx.docker.exec_interactive(client, cmd, tty=_tty())


def cmd_exec(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    node = _node(ctx.topology, args.node)
    cmd = _strip_dashes(args.cmd)
    if not cmd:
        raise LabError(f"give the command after --, e.g. `pgha-lab exec dbnode1 -- {PATRONICTL_LIST}`.")
    _require_running(ctx, node.name)
    user = args.user or ("postgres" if node.role is Role.DB else None)
    return ctx.docker.exec_interactive(node, cmd, user=user, tty=_tty())


def cmd_logs(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    node = _node(ctx.topology, args.node)
    if node.name not in ctx.docker.containers():
        raise LabError(f"{node.name} has no container; start the lab with `pgha-lab up`.")
    return ctx.docker.follow_logs(node, args.tail, args.follow)
