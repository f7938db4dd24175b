"""The drill's writer and its client-side ledger: one insert of a strictly increasing id per
attempt through HAProxy's 5432, each attempt recorded with its timing, the server that answered
and any notice PostgreSQL sent with the answer."""
from __future__ import annotations

import csv
import select
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

from pgha_lab.drill.clock import Clock
from pgha_lab.errors import first_line

TABLE = "pgha_drill_writes"
# No unique key on (run, id), on purpose: a write that reached the table twice (a retried commit,
# two primaries merging) must stay visible to the reconciliation instead of being refused.
DDL = (f"create table if not exists {TABLE} (run text not null, id bigint not null, "
       f"at timestamptz not null default clock_timestamp(), server inet default inet_server_addr())",
       f"create index if not exists {TABLE}_run on {TABLE} (run)")
INSERT = f"insert into {TABLE} (run, id) values (%s, %s) returning host(inet_server_addr())"


@dataclass
class Attempt:
    id: int
    start_s: float          # seconds since the drill began, when the attempt started
    end_s: float            # when the answer (or the error) came back
    ok: bool                # the client got a success: the write is acknowledged
    server: str = ""        # the db node that answered (mapped from inet_server_addr())
    error: str = ""         # why the attempt failed; "connect: ..." when no session could be opened
    notice: str = ""        # notices that came with the answer, e.g. a cancelled synchronous-replication wait

    @property
    def latency_ms(self) -> float:
        return (self.end_s - self.start_s) * 1000


LEDGER_FIELDS = [f.name for f in fields(Attempt)]


def write_csv(attempts: Iterable[Attempt], path: Path, clock: Clock | None = None) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*LEDGER_FIELDS, "latency_ms", "start_epoch"])
        for a in attempts:
            row = asdict(a)
            w.writerow([*(row[k] for k in LEDGER_FIELDS), f"{a.latency_ms:.1f}",
                        f"{clock.wall(a.start_s):.3f}" if clock else ""])


def read_csv(path: Path) -> list[Attempt]:
    out = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            out.append(Attempt(id=int(row["id"]), start_s=float(row["start_s"]), end_s=float(row["end_s"]),
                               ok=row["ok"] == "True", server=row["server"], error=row["error"],
                               notice=row["notice"]))
    return out


def quick_connect(conninfo: str, timeout_s: float, **params: str) -> psycopg.Connection:
    """A psycopg connection opened under a client-side deadline shorter than libpq's 2 s floor.

    While HAProxy still lists a stopped primary as UP it retries it with a one-second turnaround
    before giving up, and a writer stuck there for libpq's minimum of 2 s would blur the moment
    writes resume by as much. Polling the non-blocking handshake ourselves lets the writer give up
    and retry sooner."""
    pgconn = pq.PGconn.connect_start(make_conninfo(conninfo, **params).encode())
    deadline = time.monotonic() + timeout_s
    while True:
        if pgconn.status == pq.ConnStatus.BAD:
            break
        status = pgconn.connect_poll()
        if status == pq.PollingStatus.OK:
            return psycopg.Connection(pgconn)
        if status == pq.PollingStatus.FAILED:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            pgconn.finish()
            raise psycopg.errors.ConnectionTimeout("connection timeout expired")
        fd = pgconn.socket
        reading = status == pq.PollingStatus.READING
        ready = select.select([fd], [], [], left) if reading else select.select([], [fd], [], left)
        if not any(ready):
            pgconn.finish()
            raise psycopg.errors.ConnectionTimeout("connection timeout expired")
    message = (pgconn.get_error_message() if hasattr(pgconn, "get_error_message")
               else pgconn.error_message.decode(errors="replace"))
    pgconn.finish()
    raise psycopg.OperationalError(message.strip() or "connection failed")


@dataclass(frozen=True)
class WriterSettings:
    interval_s: float = 0.05        # one attempt every ~50 ms
    connect_timeout_s: float = 1.0  # client-side, see quick_connect (a healthy TLS + SCRAM login takes ~0.1 s)
    statement_timeout_ms: int = 2000
    # A session whose peer vanished (the HAProxy it went through killed, the VIP moved to another MAC)
    # ends within seconds (dead_peer_params); a commit waiting on PostgreSQL (a frozen primary, a
    # synchronous standby) has a live peer and is bounded by statement_timeout.
    tcp_user_timeout_ms: int = 3000


def dead_peer_params(tcp_user_timeout_ms: int = 3000) -> dict[str, str]:
    """libpq settings that end a session whose peer is gone within seconds. tcp_user_timeout covers
    data the peer never acknowledged; TCP keepalives cover a query the old VIP holder acknowledged
    whose result never comes back (its address moved away mid-query): without them the client waits
    on an idle socket forever (seen: 336 s in the VIP drill, ended only by the drill's stop)."""
    return {"tcp_user_timeout": str(tcp_user_timeout_ms), "keepalives": "1", "keepalives_idle": "1",
            "keepalives_interval": "1", "keepalives_count": "2"}


def open_session(dsn: str, password: str, name: str, settings: WriterSettings = WriterSettings()) -> psycopg.Connection:
    """A workload client's session, as every drill client opens it (the writer, the bulk load, the
    campaign's clients): a short client-side connect deadline, dead-peer detection, a statement
    timeout, autocommit."""
    conn = quick_connect(dsn, settings.connect_timeout_s, password=password, application_name=name,
                         **dead_peer_params(settings.tcp_user_timeout_ms),
                         options=f"-c statement_timeout={settings.statement_timeout_ms}")
    conn.autocommit = True
    return conn


class Writer:
    """Writes in its own thread until stopped; `attempts` is the ledger, in attempt order."""

    def __init__(self, dsn: str, password: str, run: str, addresses: dict[str, str], clock: Clock,
                 settings: WriterSettings = WriterSettings(),
                 connect: Callable[..., psycopg.Connection] | None = None) -> None:
        self.dsn = dsn
        self.password = password
        self.run = run
        self.addresses = addresses     # server address -> node name, from the topology
        self.clock = clock
        self.settings = settings
        self._connect = connect or self._quick
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drill-writer", daemon=True)
        self._conn: psycopg.Connection | None = None
        self._notices: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        # A session stuck on a frozen server returns once HAProxy shuts it down (on-marked-down).
        self._thread.join(timeout_s)
        self._close()

    def snapshot(self) -> list[Attempt]:
        with self._lock:
            return list(self.attempts)

    # -- the loop --------------------------------------------------------------------------
    @staticmethod
    def _quick(dsn: str, *, connect_timeout: float, **params: str) -> psycopg.Connection:
        conn = quick_connect(dsn, connect_timeout, **params)
        conn.autocommit = True
        return conn

    def _open(self) -> psycopg.Connection:
        conn = self._connect(self.dsn, password=self.password,
                             connect_timeout=self.settings.connect_timeout_s,
                             application_name="pgha-lab-drill",
                             **dead_peer_params(self.settings.tcp_user_timeout_ms),
                             options=f"-c statement_timeout={self.settings.statement_timeout_ms}")
        # Keep every notice: a commit whose synchronous-replication wait was cancelled comes back
        # as a success with a WARNING, and the report must show that rather than hide it.
        conn.add_notice_handler(lambda diag: self._notices.append(
            f"{diag.severity}: {diag.message_primary}"))
        return conn

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:   # the server may be gone; the session is dropped either way
                pass
            self._conn = None

    def attempt(self, ident: int) -> Attempt:
        start = self.clock.now()
        self._notices.clear()
        try:
            if self._conn is None or self._conn.closed:
                try:
                    self._conn = self._open()
                except psycopg.Error as exc:
                    return Attempt(ident, start, self.clock.now(), False, error="connect: " + first_line(exc))
            row = self._conn.execute(INSERT, (self.run, ident)).fetchone()
            addr = row[0] if row else ""
            return Attempt(ident, start, self.clock.now(), True, server=self.addresses.get(addr, addr),
                           notice=" | ".join(self._notices))
        except psycopg.Error as exc:
            # Reconnect on the next attempt: after an error the session may point at a dead primary.
            self._close()
            return Attempt(ident, start, self.clock.now(), False, error=first_line(exc),
                           notice=" | ".join(self._notices))

    def _loop(self) -> None:
        ident = 0
        due = time.monotonic()
        while not self._stop.is_set():
            ident += 1   # a fresh id per attempt, failed or not, so ids order attempts strictly
            result = self.attempt(ident)
            with self._lock:
                self.attempts.append(result)
            due += self.settings.interval_s
            now = time.monotonic()
            if due < now:        # behind after a stall: carry on from now instead of bursting
                due = now
            self._stop.wait(due - now)


def ensure_table(conn: psycopg.Connection) -> None:
    for stmt in DDL:
        conn.execute(stmt)


def table_counts(conn: psycopg.Connection, run: str) -> dict[int, int]:
    """id -> how many rows of this run the table holds."""
    rows = conn.execute(f"select id, count(*) from {TABLE} where run = %s group by id", (run,)).fetchall()
    return {int(i): int(n) for i, n in rows}
