"""The one way the lab waits: poll a real readiness signal until it holds or a deadline passes."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

INTERVAL_S = 0.25   # every wait polls at this pace: fine enough for sub-second figures, light on the lab


@dataclass(frozen=True)
class Verdict:
    """A judgement with its reason; `culprit` names the node to show logs of when a wait fails."""
    ok: bool
    reason: str
    culprit: str | None = None


def wait_until(check: Callable[[], Verdict | bool], deadline_s: float, interval_s: float = INTERVAL_S,
               on_verdict: Callable[[Verdict], None] | None = None) -> Verdict:
    """Call `check` until it says ok or `deadline_s` has passed; the last verdict either way.

    `check` may answer a plain bool for conditions with nothing to explain. It runs at least once,
    and once more after the deadline, so a condition that became true while sleeping is not missed.
    """
    end = time.monotonic() + deadline_s
    while True:
        answer = check()
        verdict = answer if isinstance(answer, Verdict) else Verdict(bool(answer), "done" if answer else "not yet")
        if on_verdict is not None:
            on_verdict(verdict)
        if verdict.ok or time.monotonic() >= end:
            return verdict
        time.sleep(interval_s)


def held_for(check: Callable[[], Verdict | bool], seconds: float) -> Callable[[], Verdict]:
    """`check`, passing only once it has passed on every call for `seconds`: for a change the lab
    passes through in steps (right at first sight, briefly wrong, then right for good)."""
    since: list[float] = []

    def held() -> Verdict:
        answer = check()
        verdict = answer if isinstance(answer, Verdict) else Verdict(bool(answer), "done" if answer else "not yet")
        now = time.monotonic()
        if not verdict.ok:
            since.clear()
            return verdict
        since[:] = since or [now]
        left = seconds - (now - since[0])
        if left > 0:
            return Verdict(False, f"{verdict.reason}; watching it hold {left:.0f}s more", verdict.culprit)
        return verdict
    return held
