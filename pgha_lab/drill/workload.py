"""The drill's background load: a bulk writer that inserts large, incompressible rows through
HAProxy's 5432 next to the ledger writer, so WAL piles up that a replica has not yet received or
replayed when the fault hits (asynchronous replication can only lose what was not streamed).
It keeps its own count of acknowledged rows, so lost bulk bytes can be told after the drill."""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from pgha_lab.drill.ledger import WriterSettings, open_session
from pgha_lab.errors import LabError

TABLE = "pgha_drill_bulk"
# storage external: no TOAST compression, so every payload byte reaches the WAL.
DDL = (f"create table if not exists {TABLE} (run text not null, batch bigint not null, n int not null, "
       f"payload text not null)",
       f"alter table {TABLE} alter column payload set storage external",
       f"create index if not exists {TABLE}_run on {TABLE} (run)")
INSERT = (f"insert into {TABLE} (run, batch, n, payload) "
          f"select %s, %s, g, repeat(md5(random()::text), %s) from generate_series(1, %s) g")
MAX_ROW_BYTES = 1024 * 1024
MAX_ROWS_PER_S = 10000
# A batch carries more than one write: more room than the writer's 2 s before it is cancelled.
BULK_SESSION = WriterSettings(statement_timeout_ms=5000)


@dataclass(frozen=True)
class WorkloadSettings:
    rows_per_s: float = 0.0     # bulk rows per second; 0 = no bulk writer
    row_bytes: int = 8192       # payload per bulk row
    batches_per_s: float = 10.0  # rows go in this many transactions a second

    def validate(self) -> WorkloadSettings:
        if not 0 <= self.rows_per_s <= MAX_ROWS_PER_S:
            raise LabError(f"--bulk-rate takes 0 to {MAX_ROWS_PER_S} rows a second, not {self.rows_per_s:g}.")
        if not 32 <= self.row_bytes <= MAX_ROW_BYTES:
            raise LabError(f"--row-size takes 32 to {MAX_ROW_BYTES} bytes, not {self.row_bytes}.")
        return self

    @property
    def enabled(self) -> bool:
        return self.rows_per_s > 0

    @property
    def rows_per_batch(self) -> int:
        return max(1, round(self.rows_per_s / self.batches_per_s))


class BulkWriter:
    """Inserts batches in its own thread until stopped; failures (the primary gone) just retry."""

    def __init__(self, dsn: str, password: str, run: str, settings: WorkloadSettings) -> None:
        self.dsn, self.password, self.run, self.settings = dsn, password, run, settings
        self.acked_batches: dict[int, int] = {}   # batch -> rows, acknowledged by the server
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drill-bulk", daemon=True)
        self._lost: int | None = None

    def start(self) -> None:
        if not self.settings.enabled:
            return
        with psycopg.connect(self.dsn, password=self.password, connect_timeout=5, autocommit=True) as conn:
            for stmt in DDL:
                conn.execute(stmt)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _loop(self) -> None:
        s = self.settings
        repeats = max(1, s.row_bytes // 32)   # md5() is 32 hex characters
        conn: psycopg.Connection | None = None
        batch = 0
        due = time.monotonic()
        while not self._stop.is_set():
            batch += 1
            try:
                if conn is None or conn.closed:
                    conn = open_session(self.dsn, self.password, "pgha-lab-bulk", BULK_SESSION)
                conn.execute(INSERT, (self.run, batch, repeats, s.rows_per_batch))
                self.acked_batches[batch] = s.rows_per_batch
            except psycopg.Error:
                self.failed += 1
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:   # the server may be gone; the session is dropped either way
                        pass
                conn = None
            due += 1 / s.batches_per_s
            now = time.monotonic()
            if due < now:
                due = now
            self._stop.wait(due - now)
        if conn is not None:
            conn.close()

    def count_lost(self, password: str | None = None) -> None:
        """Acknowledged bulk rows missing from the table, read once the lab is healthy again; then the
        run's rows go (tens of MB a drill: repeated drills would fill a db node's disk)."""
        if not self.settings.enabled:
            return
        try:
            with psycopg.connect(self.dsn, password=password or self.password, connect_timeout=5,
                                 autocommit=True) as conn:
                rows = conn.execute(f"select batch, count(*) from {TABLE} where run = %s group by batch",
                                    (self.run,)).fetchall()
                conn.execute(f"delete from {TABLE} where run = %s", (self.run,))
        except psycopg.Error:
            return
        present = {int(b): int(n) for b, n in rows}
        self._lost = sum(max(0, n - present.get(b, 0)) for b, n in self.acked_batches.items())

    def summary(self) -> dict[str, Any]:
        s = self.settings
        rows = sum(self.acked_batches.values())
        row_bytes = max(1, s.row_bytes // 32) * 32
        return {"enabled": s.enabled, **asdict(s), "rows_acked": rows, "bytes_acked": rows * row_bytes,
                "batches_failed": self.failed, "rows_lost": self._lost,
                "bytes_lost": None if self._lost is None else self._lost * row_bytes}
