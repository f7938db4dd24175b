"""SQL the lessons run through HAProxy, with full TLS verification, as a learner's psql would:
marker writes before and after a role change, and the answers table a learner fills in."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from pgha_lab.context import LabContext
from pgha_lab.rows import one_row

# Every table a lesson creates starts with this prefix, so `lesson reset` knows what is stray.
TABLE_PREFIX = "lesson_"
ANSWERS = "lesson_answers"
WRITES = "lesson_writes"


@contextmanager
def connect(ctx: LabContext, replica: bool = False, timeout_s: float = 3.0) -> Iterator[psycopg.Connection]:
    with psycopg.connect(ctx.dsn(replica=replica), password=ctx.secrets.superuser_password,
                         connect_timeout=max(1, int(timeout_s)), autocommit=True) as conn:
        conn.execute(f"set statement_timeout = '{int(timeout_s * 1000)}ms'")
        yield conn


def server_name(ctx: LabContext, conn: psycopg.Connection) -> str:
    """The db node behind a connection, from inet_server_addr() as the learner reads it."""
    addr: str = one_row(conn.execute("select host(inet_server_addr())"))[0]   # a TCP session: never null
    return {str(n.address): n.name for n in ctx.topology.db}.get(addr, addr)


def write_marker(ctx: LabContext, label: str) -> tuple[int, str]:
    """Commit one row through 5432; (its id, the node that took it)."""
    with connect(ctx) as conn:
        conn.execute(f"create table if not exists {WRITES} (id bigserial primary key, label text not null, "
                     "server text not null, at timestamptz not null default now())")
        node = server_name(ctx, conn)
        row_id = one_row(conn.execute(f"insert into {WRITES} (label, server) values (%s, %s) returning id",
                                      (label, node)))[0]
    return int(row_id), node


def marker_present(ctx: LabContext, row_id: int) -> bool:
    with connect(ctx) as conn:
        return one_row(conn.execute(f"select count(*) from {WRITES} where id = %s", (row_id,)))[0] == 1


def prepare_answers(ctx: LabContext, lesson_id: int) -> None:
    """The table the learner records findings in (through psql), emptied of this lesson's rows. No
    key on (lesson, question): recording an answer again corrects it, the newest row counts, so a
    learner's second `insert` does not meet a duplicate-key error."""
    with connect(ctx) as conn:
        conn.execute(f"create table if not exists {ANSWERS} (lesson int not null, question text not null, "
                     "answer text not null, id bigserial)")
        conn.execute(f"delete from {ANSWERS} where lesson = %s", (lesson_id,))


def answers(ctx: LabContext, lesson_id: int) -> dict[str, str]:
    """question -> the newest answer recorded for it."""
    with connect(ctx, replica=False) as conn:
        exists = one_row(conn.execute("select to_regclass(%s) is not null", (ANSWERS,)))[0]
        if not exists:
            return {}
        rows = conn.execute(f"select question, answer from {ANSWERS} where lesson = %s order by id",
                            (lesson_id,)).fetchall()
    return {q.strip().lower(): a.strip() for q, a in rows}


def record_answers(ctx: LabContext, lesson_id: int, found: dict[str, str]) -> None:
    """What the reference solution does with psql: one row a finding (a later row corrects an earlier one)."""
    with connect(ctx) as conn:
        for question, answer in found.items():
            conn.execute(f"insert into {ANSWERS} (lesson, question, answer) values (%s, %s, %s)",
                         (lesson_id, question, answer))


def insert_sql(lesson_id: int, question: str, answer: str) -> str:
    return f"insert into {ANSWERS} values ({lesson_id}, '{question}', '{answer}');"


def stray_tables(ctx: LabContext) -> list[str]:
    with connect(ctx) as conn:
        rows = conn.execute("select tablename from pg_tables where schemaname = 'public' and tablename like %s",
                            (TABLE_PREFIX + "%",)).fetchall()
    return sorted(r[0] for r in rows)


def drop_tables(ctx: LabContext, names: list[str]) -> None:
    with connect(ctx) as conn:
        for name in names:
            conn.execute(f'drop table if exists public."{name}"')


@contextmanager
def connect_node(ctx: LabContext, name: str, timeout_s: float = 3.0) -> Iterator[psycopg.Connection]:
    """Straight to one db node (its PostgreSQL certificate names its own address), not through HAProxy."""
    node = ctx.topology.node(name)
    dsn = (f"host={node.address} port={ctx.topology.ports.postgres} dbname=postgres user=postgres "
           f"sslmode=verify-full sslrootcert={ctx.ca_file}")
    with psycopg.connect(dsn, password=ctx.secrets.superuser_password, connect_timeout=max(1, int(timeout_s)),
                         autocommit=True) as conn:
        conn.execute(f"set statement_timeout = '{int(timeout_s * 1000)}ms'")
        yield conn


def setting(ctx: LabContext, node: str, name: str) -> tuple[str, bool, str]:
    """(current value as SHOW prints it, pending_restart, source) of one parameter on one node."""
    with connect_node(ctx, node) as conn:
        row = conn.execute("select current_setting(name), pending_restart, source from pg_settings where name = %s",
                           (name,)).fetchone()
    if row is None:
        return "", False, ""
    return str(row[0]), bool(row[1]), str(row[2])
