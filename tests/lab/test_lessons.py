"""Every lesson on the real lab: its check fails for the right reason after `lesson start`, passes
after the reference solution (`lesson solve --apply`), and `lesson reset` puts the healthy baseline
back, also from a killed, paused or isolated leader and a changed Patroni setting.

Lesson 1 goes through the command line (exit codes, --json, progress); the others call the same
library functions in-process, since on a loaded machine each CLI start costs seconds."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from pgha_lab.chaos.actions import Chaos, wait
from pgha_lab.lessons import course, observe, progress, sql
from pgha_lab.lessons.reset import baseline_verdict

pytestmark = [pytest.mark.docker, pytest.mark.lab]

RESET_BOUND_S = 120   # generous on a shared 2-core machine; the 30 s target is measured in bench/lessons.py


@pytest.fixture(scope="module")
def lab(test_lab):
    test_lab.ensure_healthy()
    progress.path(test_lab.paths).unlink(missing_ok=True)   # a new test lab: no lesson passed yet
    yield test_lab
    course.reset_lab(test_lab.ctx)


def cli_json(lab, *args: str) -> tuple[int, dict]:
    proc = lab.cli("lesson", *args, "--json", check=False)
    assert proc.returncode in (0, 3), f"lesson {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    return proc.returncode, json.loads(proc.stdout)


def assert_baseline(lab) -> None:
    verdict = baseline_verdict(lab.ctx)
    assert verdict.ok, verdict.reason


def test_lesson_1_through_the_command_line(lab):
    rc, _ = cli_json(lab, "start", "1")
    assert rc == 0
    rc, before = cli_json(lab, "check")
    assert rc == 3 and before["passed"] is False
    reasons = {t["key"]: t["reason"] for t in before["tasks"]}
    assert reasons["patroni"] == "no answer recorded for leader, sync_standby, timeline"
    assert reasons["etcd"] == "no answer recorded for etcd_leader"

    # A wrong answer is named with the truth the lab holds.
    ctx = lab.ctx
    sql.record_answers(ctx, 1, {"leader": "dbnode2", "sync_standby": "dbnode1", "timeline": "1"})
    rc, wrong = cli_json(lab, "check")
    patroni = next(t for t in wrong["tasks"] if t["key"] == "patroni")
    assert rc == 3 and not patroni["passed"]
    assert "leader is dbnode1, not 'dbnode2'" in patroni["reason"] and "sync_standby" in patroni["reason"]

    rc, hint = cli_json(lab, "hint")
    assert hint["hint"] == 1 and "lesson_answers" in hint["text"]
    rc, after = cli_json(lab, "solve", "1", "--apply")
    assert rc == 0 and after["passed"] is True, after
    rc, listed = cli_json(lab, "list")
    row = next(r for r in listed if r["id"] == 1)
    assert row["started"] and row["passed_at"]
    rc, reset = cli_json(lab, "reset")
    assert rc == 0 and reset["steps"] == ["dropped lesson_answers"], reset
    assert_baseline(lab)


# lesson id -> task key -> a phrase its reason must contain right after `lesson start`
FAILS_AFTER_START = {
    2: {"ca": "no answer recorded for ca_subject", "channels": "no answer recorded for etcd_client_cn",
        "wrong_ca": "no answer recorded for wrong_ca_error", "wrong_host": "no answer recorded for wrong_host_error"},
    3: {"switchover": "dbnode1 still leads", "old_leader": "dbnode1 is leader"},
    4: {"failover": "dbnode1 still leads", "rejoin": "dbnode1 is leader"},
    5: {"failover": "dbnode1 still leads", "demoted": "dbnode1 still runs as a primary"},
    6: {"isolated": "no failover has happened since the lesson began",
        "partition": "a second failover (the partition) has not happened"},
    7: {"quorum_lost": "0 etcd member(s) stopped and started", "leader_demoted": "the leader never stepped down"},
    8: {"timings": "has ttl 20 and loop_wait 1, not 40 and 5",
        "restart": "sets shared_buffers to 128MB, not 192MB",
        "bootstrap": "no answer recorded for bootstrap_ttl, live_ttl"},
    9: {"switchover_cut": "dbnode1 still leads", "replica_cut": "HAProxy cut no session on 5433",
        "reconnect": "no row labelled 'after switchover'", "multihost": "no row labelled 'multihost'"},
    10: {"reinit": "data directory is still the broken one", "streams": "dbnode2 is replica"},
    11: {"grown": "the lab has 2 db nodes and no dbnode3 running yet",
         "cloned": "dbnode3 is not registered with Patroni", "replication": "has no streaming dbnode3"},
}


def multihost_row_through_haproxy(ctx) -> None:
    with sql.connect(ctx) as conn:
        conn.execute("insert into lesson_sessions (label) values ('multihost')")


# lesson id -> (a wrong attempt a learner could make after `start`, the task it must not pass, a phrase of why)
WRONG_ATTEMPTS = {
    9: (multihost_row_through_haproxy, "multihost", "came through HAProxy; connect to the db nodes directly"),
}


@pytest.mark.parametrize("lesson_id", sorted(FAILS_AFTER_START))
def test_lesson_check_fails_before_and_passes_after_the_reference_solution(lab, lesson_id):
    ctx = lab.ctx
    course.start(ctx, str(lesson_id))
    before = course.check(ctx, None)
    assert not before.passed
    results = {r.key: r for r in before.results}
    for key, phrase in FAILS_AFTER_START[lesson_id].items():
        assert not results[key].passed and phrase in results[key].reason, (key, results[key].reason)
    if lesson_id in WRONG_ATTEMPTS:
        attempt, key, phrase = WRONG_ATTEMPTS[lesson_id]
        attempt(ctx)
        wrong = {r.key: r for r in course.check(ctx, None).results}[key]
        assert not wrong.passed and phrase in wrong.reason, wrong

    after = course.solve(ctx, str(lesson_id))
    assert after.passed, after.as_dict()
    assert lesson_id in progress.load(ctx.paths).passed

    course.reset_lab(ctx)
    assert_baseline(lab)


def break_lab(ctx, state: str) -> None:
    if state == "setting":
        observe.patronictl(ctx, "dbnode1", "edit-config", "--force", "-s", "ttl=45", "-s", "loop_wait=4",
                           "-p", "shared_buffers=160MB", "-p", "work_mem=8MB")
        return
    action = {"killed": "kill", "paused": "pause", "isolated": "isolate"}[state]
    outcome = wait(Chaos(ctx).run(action, "leader"))
    assert outcome.happened, outcome.verdict   # the standby took over: the reset has real work to do


@pytest.mark.parametrize("state", ["killed", "paused", "isolated", "setting"])
def test_reset_restores_the_baseline(lab, state):
    ctx = lab.ctx
    break_lab(ctx, state)
    assert not baseline_verdict(ctx).ok
    started = time.monotonic()
    report = course.reset_lab(ctx)
    assert time.monotonic() - started < RESET_BOUND_S, report.as_dict()
    assert not report.recreated, report.as_dict()
    assert_baseline(lab)


def test_start_on_a_lab_that_is_down_is_refused_and_changes_nothing(tmp_path, docker_client):
    proc = subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(tmp_path), "--project", "lessons-down",
                           "lesson", "start", "1"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == ("pgha-lab: lab 'lessons-down' is down; start it with `pgha-lab up` "
                           "(then `pgha-lab lesson start ID`).\n")
    assert not (tmp_path / "labs").exists()
