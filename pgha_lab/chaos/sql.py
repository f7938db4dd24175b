"""SQL straight to one db node's PostgreSQL (not through HAProxy), over TLS with full verification:
the PostgreSQL certificate of each db node names its own address. Faults that need a session on a
given node (an open transaction, a commit waiting for its standby) and final reads of every node
go through here; so does the one commit through HAProxy that tells whether commits wait."""
from __future__ import annotations

import threading

import psycopg

from pgha_lab.chaos import rules
from pgha_lab.context import LabContext
from pgha_lab.errors import first_line
from pgha_lab.topology import Node


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


COMMIT_TABLE = "pgha_chaos_commit"


def commit_wait(ctx: LabContext, wait_s: int = 3) -> str | None:
    """Commit one write through HAProxy's 5432 (one row, updated in place): None when it commits
    without waiting for a standby, else what happened instead. It must write a row: a transaction
    that only takes a transaction id writes no WAL before its commit, and PostgreSQL does not make
    such a commit wait for a synchronous standby. A commit still waiting after `wait_s` is cancelled
    from here (statement_timeout is off by the time a commit waits), and PostgreSQL says so in a
    WARNING: the row stays committed locally."""
    notices: list[str] = []
    try:
        with psycopg.connect(ctx.dsn(), password=ctx.secrets.superuser_password, autocommit=True,
                             connect_timeout=3) as conn:
            conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
            timer = threading.Timer(wait_s, conn.cancel_safe)
            timer.start()
            try:
                conn.execute(f"create table if not exists {COMMIT_TABLE} (id int primary key, at timestamptz)")
                conn.execute(f"insert into {COMMIT_TABLE} values (1, clock_timestamp()) "
                             f"on conflict (id) do update set at = excluded.at")
            finally:
                timer.cancel()
    except psycopg.Error as exc:
        return f"a commit through HAProxy failed: {first_line(exc)}"
    if any(rules.SYNC_CANCEL_TEXT in n for n in notices):
        return f"a commit through HAProxy waited {wait_s}s for a synchronous standby"
    return None
