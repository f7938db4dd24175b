"""The page's live write probe: the drill's Writer (the same insert through HAProxy's 5432 with TLS
verified) at ~100 ms, read back as numbered points for the chart and a downtime counter."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import psycopg

from pgha_lab.context import LabContext
from pgha_lab.drill.clock import Clock, stamp
from pgha_lab.drill.ledger import Attempt, Writer, WriterSettings, ensure_table
from pgha_lab.drill.reconcile import outages
from pgha_lab.errors import LabError, first_line

SETTINGS = WriterSettings(interval_s=0.1)
RUN_PREFIX = "dashboard-"     # the drill table's run column tells the page's writes from a drill's


@dataclass
class ProbeStatus:
    running: bool
    acks: int = 0
    failures: int = 0
    downtime_s: float | None = None     # writes failing right now: since the last acknowledgement (the counter)
    last_outage_s: float | None = None  # the last outage that ended: last ack before it to first ack after
    last_server: str = ""


class WriteProbe:
    """Start and stop from the page; one Writer at a time, a fresh one (and ledger) per start."""

    def __init__(self, ctx: LabContext) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._writer: Writer | None = None
        self._seen = 0           # attempts of the current writer already handed out

    @property
    def running(self) -> bool:
        return self._writer is not None

    def start(self) -> str:
        with self._lock:
            if self._writer is not None:
                raise LabError("the write probe is already running.")
            dsn, password = self.ctx.dsn(), self.ctx.secrets.superuser_password
            try:
                with psycopg.connect(dsn, password=password, connect_timeout=3, autocommit=True) as conn:
                    ensure_table(conn)
            except psycopg.Error as exc:
                raise LabError(f"cannot write through HAProxy's 5432 to start the probe: {first_line(exc)}.") from None
            run = RUN_PREFIX + stamp()
            addresses = {str(n.address): n.name for n in self.ctx.topology.db}
            self._writer = Writer(dsn, password, run, addresses, Clock(), SETTINGS)
            self._seen = 0
            self._writer.start()
            return run

    def stop(self) -> None:
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is None:
            raise LabError("the write probe is not running.")
        writer.stop(timeout_s=5)

    def new_points(self) -> list[dict[str, Any]]:
        """Attempts made since the last call, as chart points (wall-clock ms, latency, who acknowledged)."""
        with self._lock:
            writer = self._writer
            if writer is None:
                return []
            attempts = writer.snapshot()
            fresh, self._seen = attempts[self._seen:], len(attempts)
        return [_point(a, writer.clock, writer.run) for a in fresh]

    def status(self) -> ProbeStatus:
        writer = self._writer
        if writer is None:
            return ProbeStatus(False)
        return summarize(writer.snapshot(), writer.clock.now())


def _point(a: Attempt, clock: Clock, run: str) -> dict[str, Any]:
    return {"id": f"{run}:{a.id}", "t": round(clock.wall(a.start_s) * 1000), "ms": round(a.latency_ms, 1),
            "ok": a.ok, "server": a.server, "error": a.error}


def summarize(attempts: list[Attempt], now_s: float) -> ProbeStatus:
    """Counts, the running downtime and the last outage that ended, both measured as drills and
    `pgha-lab switchover` measure them (drill/outage.py): from the last write acknowledged before the
    failures to the first acknowledged after them (the running one: to now)."""
    st = ProbeStatus(True, acks=sum(a.ok for a in attempts), failures=sum(not a.ok for a in attempts))
    done = [a for a in attempts if a.ok]
    if done:
        st.last_server = max(done, key=lambda a: a.end_s).server
    ended = outages(attempts)
    if ended:
        st.last_outage_s = round(ended[-1].seconds, 2)
    if attempts and not attempts[-1].ok:
        since = max((a.end_s for a in done), default=attempts[0].start_s)
        st.downtime_s = round(max(0.0, now_s - since), 1)
    return st
