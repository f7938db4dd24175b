"""One time base for everything a drill records: seconds since the drill started; and the one
spelling of the wall time a run is named by (its report folder, its rows in the ledger)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"   # sorts as it reads: 20260101T120000Z


def stamp() -> str:
    """Now in UTC, as runs and report folders are named."""
    return datetime.now(UTC).strftime(STAMP_FORMAT)


@dataclass(frozen=True)
class Clock:
    # Monotonic, so a wall-clock step (NTP) in the middle of a drill cannot invent or hide a gap;
    # the wall time of the start is kept only to print absolute times in the report.
    t0: float = field(default_factory=time.monotonic)
    wall0: float = field(default_factory=time.time)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def wall(self, t_s: float) -> float:
        return self.wall0 + t_s
