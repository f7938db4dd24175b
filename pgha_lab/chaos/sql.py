"""SQL straight to one db node's PostgreSQL (not through HAProxy), over TLS with full verification:
the PostgreSQL certificate of each db node names its own address. Faults that need a session on a
given node (an open transaction, a commit waiting for its standby) and final reads of every node
go through here."""
from __future__ import annotations

import psycopg

from pgha_lab.context import LabContext
from pgha_lab.errors import first_line
from pgha_lab.topology import Node

# One line per process of the node: pid, parent pid, state letter, name (from /proc: the images
# carry no procps).
PROCS = r"""for p in /proc/[0-9]*; do
  [ -r "$p/status" ] || continue
  awk '/^Name:/ {n=$2} /^State:/ {s=$2} /^Pid:/ {p=$2} /^PPid:/ {pp=$2} END {print p, pp, s, n}' "$p/status" 2>/dev/null
done"""


def node_dsn(ctx: LabContext, node: Node, dbname: str = "postgres") -> str:
    return (f"host={node.address} port={ctx.topology.ports.postgres} dbname={dbname} user=postgres "
            f"sslmode=verify-full sslrootcert={ctx.ca_file}")


def connect(ctx: LabContext, node: Node, timeout_s: float = 3.0, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(node_dsn(ctx, node), password=ctx.secrets.superuser_password,
                           connect_timeout=max(2, int(timeout_s)), autocommit=autocommit)


def space_write_error(ctx: LabContext, node: Node) -> str | None:
    """Try, on `node`, a write that needs new disk space (a 2 MiB table, rolled back, so nothing stays
    and no standby is waited for): its error as one line, or None when it succeeded."""
    try:
        with connect(ctx, node, autocommit=False) as conn:
            conn.execute("create table pgha_lab_space_probe as "
                         "select repeat('x', 1024) as filler from generate_series(1, 2048)")
            conn.rollback()
        return None
    except psycopg.Error as exc:
        return first_line(exc)
