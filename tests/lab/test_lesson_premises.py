"""Lesson checks that know what happened, one plausible wrong step each: the task whose premise is
missing fails saying what the lab shows instead (Docker's state of a node Patroni no longer lists),
and after it the reference solution still passes and reset restores the baseline. The lessons'
own wrong attempts (one a lesson) are in test_lessons.py; these are the ones found walking the
lessons as a learner (issue 26)."""
from __future__ import annotations

import pytest

from pgha_lab.chaos.actions import Chaos, wait
from pgha_lab.lessons import course, progress
from pgha_lab.lessons.reset import baseline_verdict

pytestmark = [pytest.mark.docker, pytest.mark.lab]


@pytest.fixture(scope="module")
def lab(test_lab):
    test_lab.ensure_healthy()
    progress.path(test_lab.paths).unlink(missing_ok=True)
    yield test_lab
    course.reset_lab(test_lab.ctx)


def results(ctx) -> dict:
    return {r.key: r for r in course.check(ctx, None).results}


def test_lesson_4_rejoin_names_an_old_leader_still_powered_off(lab):
    """The failover done, the old leader not booted yet: 'rejoin' says it is powered off (Docker's
    state), not 'is it running?' as if it might be."""
    ctx = lab.ctx
    course.start(ctx, "4")
    old = ctx.cluster().leader_name
    outcome = wait(Chaos(ctx).run("kill", "leader"))
    assert outcome.happened, outcome.verdict
    found = results(ctx)
    assert found["failover"].passed, found["failover"].reason
    rejoin = found["rejoin"]
    assert not rejoin.passed
    assert rejoin.reason.startswith(f"{old} is stopped (Docker: exited 137)"), rejoin.reason
    assert "is it running?" not in rejoin.reason
    assert course.solve(ctx, "4").passed
    course.reset_lab(ctx)
    verdict = baseline_verdict(ctx)
    assert verdict.ok, verdict.reason
