"""The writer's bookkeeping with a stand-in connection: ids strictly increase per attempt, the
answering node is mapped from its address, notices stay on the attempt, errors force a reconnect."""
from __future__ import annotations

from types import SimpleNamespace

import psycopg

from pgha_lab.drill.clock import Clock
from pgha_lab.drill.ledger import Writer, WriterSettings, read_csv, write_csv

SYNC_WARNING = "canceling wait for synchronous replication due to statement timeout"


class FakeConn:
    """Answers the insert from `addr`, or raises `fail`; may send a notice first, as PostgreSQL does."""

    def __init__(self, script: list):
        self.script = script
        self.closed = False
        self.handlers = []

    def add_notice_handler(self, handler):
        self.handlers.append(handler)

    def execute(self, query, params):
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        addr, notice = step
        if notice:
            for h in self.handlers:
                h(SimpleNamespace(severity="WARNING", message_primary=notice))
        return SimpleNamespace(fetchone=lambda: (addr,))

    def close(self):
        self.closed = True


def test_attempts_ids_servers_notices_and_reconnects():
    script = [("10.0.0.10", None), ("10.0.0.10", SYNC_WARNING), psycopg.OperationalError("server closed the connection"),
              ("10.0.0.20", None)]
    opened = []

    def connect(dsn, **kw):
        if len(opened) == 1 and kw:    # the reconnect after the error fails once: no primary yet
            opened.append("refused")
            raise psycopg.OperationalError("connection refused\nDETAIL: more")
        conn = FakeConn(script)
        opened.append(conn)
        assert kw["connect_timeout"] == 1.0 and "statement_timeout=2000" in kw["options"]
        assert kw["tcp_user_timeout"] == "3000"   # a vanished peer (a killed HAProxy) ends the attempt
        assert kw["keepalives"] == "1" and kw["keepalives_idle"] == "1"   # so does a reply that never comes
        return conn

    w = Writer("host=x", "pw", "run1", {"10.0.0.10": "dbnode1", "10.0.0.20": "dbnode2"}, Clock(),
               WriterSettings(), connect=connect)
    got = [w.attempt(i) for i in range(1, 6)]
    assert [a.id for a in got] == [1, 2, 3, 4, 5]
    assert [a.ok for a in got] == [True, True, False, False, True]
    assert [a.server for a in got] == ["dbnode1", "dbnode1", "", "", "dbnode2"]
    assert got[1].notice == f"WARNING: {SYNC_WARNING}" and got[0].notice == "" and got[4].notice == ""
    assert got[2].error == "server closed the connection"
    assert got[3].error == "connect: connection refused"
    assert all(a.end_s >= a.start_s for a in got)
    assert len([c for c in opened if c != "refused"]) == 2   # a fresh session after the error


def test_the_ledger_csv_round_trips(tmp_path):
    w = Writer("host=x", "pw", "run1", {"10.0.0.10": "dbnode1"}, Clock(),
               connect=lambda dsn, **kw: FakeConn([("10.0.0.10", SYNC_WARNING), ("10.0.0.10", None)]))
    attempts = [w.attempt(1), w.attempt(2)]
    write_csv(attempts, tmp_path / "ledger.csv", Clock())
    assert read_csv(tmp_path / "ledger.csv") == attempts
