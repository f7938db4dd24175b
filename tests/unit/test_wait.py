"""wait_until: the one polling primitive."""
from __future__ import annotations

import time

from pgha_lab.wait import Verdict, held_for, wait_until


def test_returns_as_soon_as_the_check_holds():
    calls = iter([Verdict(False, "a"), Verdict(False, "b"), Verdict(True, "c")])
    seen = []
    started = time.monotonic()
    v = wait_until(lambda: next(calls), deadline_s=5, interval_s=0.01, on_verdict=seen.append)
    assert v == Verdict(True, "c")
    assert [x.reason for x in seen] == ["a", "b", "c"]
    assert time.monotonic() - started < 1


def test_gives_the_last_verdict_when_the_deadline_passes():
    n = {"calls": 0}

    def never() -> Verdict:
        n["calls"] += 1
        return Verdict(False, f"try {n['calls']}", "dbnode1")

    started = time.monotonic()
    v = wait_until(never, deadline_s=0.1, interval_s=0.02)
    assert not v.ok and v.culprit == "dbnode1" and v.reason == f"try {n['calls']}"
    assert n["calls"] >= 3 and time.monotonic() - started < 1


def test_takes_plain_bools_and_checks_once_even_with_no_time():
    assert wait_until(lambda: True, deadline_s=0).ok
    assert not wait_until(lambda: False, deadline_s=0).ok


def test_held_for_passes_only_after_an_unbroken_stretch():
    # right, briefly wrong, then right for good: only the last stretch counts
    answers = iter([True, False] + [True] * 1000)
    v = wait_until(held_for(lambda: next(answers), 0.1), deadline_s=5, interval_s=0.01)
    assert v.ok
    flapping = iter([True, False] * 1000)
    v = wait_until(held_for(lambda: next(flapping), 0.1), deadline_s=0.5, interval_s=0.01)
    assert not v.ok
