"""What a rolling change cost clients: a writer through HAProxy for the length of a change, then
the write downtime and any acknowledged write the table does not hold (drill's ledger and
reconciliation, reused)."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg

from pgha_lab.context import LabContext
from pgha_lab.drill import ledger, reconcile
from pgha_lab.drill.clock import Clock
from pgha_lab.wait import wait_until

FIRST_WRITE_S = 15.0


@dataclass
class Writes:
    attempts: list[ledger.Attempt] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    started_s: float = 0.0     # when the change began, on the writer's clock
    seconds: float = 0.0       # how long the change took

    @property
    def acknowledged(self) -> int:
        return sum(a.ok for a in self.attempts)

    def worst_gaps(self, count: int = 3) -> list[str]:
        """The longest stretches without an acknowledgement, with the first error in each."""
        gaps = sorted(reconcile.ack_gaps(self.attempts), key=lambda g: g.seconds, reverse=True)[:count]
        out = []
        for g in gaps:
            errors = [a.error for a in self.attempts if g.last_id < a.id < g.first_id and a.error]
            out.append(f"{g.seconds:.2f}s from {g.start_s - self.started_s:.1f}s" +
                       (f" ({errors[0][:90]})" if errors else ""))
        return out

    def downtime(self) -> float:
        """The longest stretch without an acknowledged write that ended after the change began."""
        gap = reconcile.longest_gap(self.attempts, ending_after_s=self.started_s)
        return gap.seconds if gap else 0.0


@contextmanager
def writes_during(ctx: LabContext) -> Iterator[Writes]:
    """Write through HAProxy's 5432 every ~50 ms for the length of the block; afterwards `lost`
    holds the acknowledged ids missing from the table."""
    password = ctx.secrets.superuser_password
    run = uuid.uuid4().hex[:12]
    with psycopg.connect(ctx.dsn(), password=password, autocommit=True) as conn:
        ledger.ensure_table(conn)
    clock = Clock()
    writer = ledger.Writer(ctx.dsn(), password, run, {str(n.address): n.name for n in ctx.topology.db}, clock)
    result = Writes()
    writer.start()
    try:
        # A first acknowledgement before the change, so a gap at its start is measured from a write.
        wait_until(lambda: any(a.ok for a in writer.snapshot()), FIRST_WRITE_S)
        result.started_s = clock.now()
        yield result
        result.seconds = clock.now() - result.started_s
    finally:
        writer.stop()
        result.attempts = writer.snapshot()
        with psycopg.connect(ctx.dsn(), password=password, autocommit=True) as conn:
            result.lost = reconcile.lost_writes(result.attempts, ledger.table_counts(conn, run))
