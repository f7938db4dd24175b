"""Write downtime as every front end states it: from the last write acknowledged before an action
to the first write acknowledged after it, measured by the drill's writer (an insert through
HAProxy's 5432 every interval). The drills' reports, the dashboard's write probe and
`pgha-lab switchover`/`failover` all measure this one interval, so on the same run they agree
within the writers' intervals."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from pgha_lab.context import LabContext
from pgha_lab.drill.clock import Clock, stamp
from pgha_lab.drill.ledger import Attempt, Writer, WriterSettings, ensure_table
from pgha_lab.drill.reconcile import Gap, longest_gap
from pgha_lab.errors import LabError, first_line
from pgha_lab.wait import Verdict, wait_until

DEFINITION = "from the last write acknowledged before it to the first acknowledged after it"
SETTLE_ACKS = 3          # acknowledgements after the first one on the new leader before the meter stops
FIRST_ACK_DEADLINE_S = 30.0


@dataclass(frozen=True)
class Outage:
    gap: Gap | None            # None: no write failed to land in the rhythm of the writer
    attempts: list[Attempt]
    interval_s: float
    wall0: float               # the writer's clock started at this wall time

    @property
    def seconds(self) -> float:
        return self.gap.seconds if self.gap else 0.0

    def _ack(self, ident: int) -> Attempt:
        return next(a for a in self.attempts if a.id == ident and a.ok)

    def _at(self, t_s: float) -> str:
        return datetime.fromtimestamp(self.wall0 + t_s, UTC).strftime("%H:%M:%S.%f")[:-3]

    def text(self, action: str) -> str:
        every = f"a write through HAProxy's 5432 every {self.interval_s * 1000:.0f} ms"
        if self.gap is None:
            return f"write downtime 0 s ({every} never missed)"
        before, after = self._ack(self.gap.last_id), self._ack(self.gap.first_id)
        return (f"write downtime {self.seconds:.2f} s, from the last write acknowledged before the {action} to "
                f"the first acknowledged after it: "
                f"{before.server} at {self._at(before.end_s)}, then {after.server} at {self._at(after.end_s)} UTC "
                f"({every})")


class OutageMeter:
    """The drill's writer around one action: started (and acknowledged once) before it, stopped once
    writes land again; `outage()` is the longest gap between acknowledgements ending after the mark."""

    def __init__(self, ctx: LabContext, run_prefix: str, interval_s: float = WriterSettings().interval_s) -> None:
        self.ctx = ctx
        self.settings = WriterSettings(interval_s=interval_s)
        self.run = run_prefix + stamp()
        self.clock = Clock()
        self.mark_s: float | None = None
        self.writer: Writer | None = None

    def __enter__(self) -> OutageMeter:
        dsn, password = self.ctx.dsn(), self.ctx.secrets.superuser_password
        try:
            with psycopg.connect(dsn, password=password, connect_timeout=3, autocommit=True) as conn:
                ensure_table(conn)
        except psycopg.Error as exc:
            raise LabError(f"cannot write through HAProxy's 5432 to measure the downtime: {first_line(exc)}.") from None
        addresses = {str(n.address): n.name for n in self.ctx.topology.db}
        self.writer = writer = Writer(dsn, password, self.run, addresses, self.clock, self.settings)
        writer.start()
        if not wait_until(lambda: any(a.ok for a in writer.snapshot()), FIRST_ACK_DEADLINE_S).ok:
            writer.stop(timeout_s=5)
            raise LabError("no write through HAProxy's 5432 was acknowledged before the change; "
                           "`pgha-lab status` shows who takes writes.")
        return self

    def mark(self) -> None:
        """The moment of the action: the downtime is the gap that ends after it."""
        self.mark_s = self.clock.now()

    def settle(self, on: str | None, deadline_s: float = 30.0) -> None:
        """Wait until a few writes landed after the mark (on node `on`, when given), so the gap is closed."""
        writer = self.writer
        if writer is None:
            raise RuntimeError("settle() is for inside the meter's `with`, where the writer runs")

        def landed() -> Verdict:
            after = [a for a in writer.snapshot() if a.ok and a.end_s > (self.mark_s or 0)
                     and (on is None or a.server == on)]
            return Verdict(len(after) >= SETTLE_ACKS, f"{len(after)} writes acknowledged after the change")
        wait_until(landed, deadline_s)

    def __exit__(self, *exc_info) -> None:
        if self.writer is not None:
            self.writer.stop(timeout_s=10)

    def outage(self) -> Outage:
        attempts = self.writer.snapshot() if self.writer else []
        return Outage(longest_gap(attempts, ending_after_s=self.mark_s), attempts, self.settings.interval_s,
                      self.clock.wall0)
