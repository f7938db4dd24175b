"""The lessons' words and bookkeeping, without a lab: the catalogue, progress, the config diff
the reset sends, and the refusals that must come before anything is touched."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pgha_lab.errors import LabError
from pgha_lab.lessons import catalogue, progress
from pgha_lab.lessons.progress import Current, LearnerRecord
from pgha_lab.context import LabContext
from pgha_lab.lessons import l09_client_failover as l09, l11_grow as l11
from pgha_lab.dynamic_config import patch_replacing
from pgha_lab.lessons.reset import grown_from
from pgha_lab.paths import LabPaths
from pgha_lab.topology import Topology

REPO = Path(__file__).resolve().parents[2]


def test_every_lesson_is_complete_and_ids_are_unique():
    ids = [lesson.id for lesson in catalogue.LESSONS]
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    assert set(ids) == set(range(1, 12))
    for lesson in catalogue.LESSONS:
        assert lesson.title and lesson.goal and len(lesson.background) > 200, lesson.id
        assert lesson.tasks and lesson.hints and lesson.solution, lesson.id
        keys = [t.key for t in lesson.tasks]
        assert len(keys) == len(set(keys)), lesson.id


def test_a_lesson_is_found_by_id_or_slug_and_an_unknown_one_is_refused():
    assert catalogue.get("3").id == 3
    assert catalogue.get("switchover").id == 3
    with pytest.raises(LabError, match=r"there is no lesson '99'; `pgha-lab lesson list` shows them"):
        catalogue.get("99")


def test_config_patch_sets_changed_keys_and_nulls_extra_ones():
    wanted = {"ttl": 20, "loop_wait": 1, "postgresql": {"parameters": {"shared_buffers": "128MB", "work_mem": "4MB"}}}
    live = {"ttl": 40, "loop_wait": 1, "pause": True,
            "postgresql": {"parameters": {"shared_buffers": "192MB", "work_mem": "4MB", "log_min_duration_statement": 0}}}
    assert patch_replacing(live, wanted) == {
        "ttl": 20, "pause": None,
        "postgresql": {"parameters": {"shared_buffers": "128MB", "log_min_duration_statement": None}}}
    assert patch_replacing(wanted, wanted) == {}


def test_progress_round_trips_through_the_labs_file(tmp_path):
    paths = LabPaths(home=tmp_path, project="p")
    assert progress.load(paths) == LearnerRecord()
    prog = LearnerRecord(current=Current(3, "2026-01-01T00:00:00+00:00", {"leader": "dbnode1", "timeline": 2}),
                    passed={1: "2026-01-01T00:00:00+00:00"}, hints_shown={3: 2})
    progress.save(paths, prog)
    assert (tmp_path / "labs" / "p" / "lessons.json").exists()
    assert progress.load(paths) == prog


def test_a_damaged_progress_file_is_one_sentence(tmp_path):
    paths = LabPaths(home=tmp_path, project="p")
    progress.path(paths).parent.mkdir(parents=True)
    progress.path(paths).write_text("{not json")
    with pytest.raises(LabError, match="is not a progress file pgha-lab wrote; remove it"):
        progress.load(paths)


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(home), "--project", "nolab", *args],
                          capture_output=True, text=True, cwd=REPO)


@pytest.mark.parametrize("args, sentence", [
    (("lesson", "show", "99"), "pgha-lab: there is no lesson '99'; `pgha-lab lesson list` shows them"),
    (("lesson", "start", "nope"), "pgha-lab: there is no lesson 'nope'"),
    (("lesson", "check"), "pgha-lab: no lesson is started on lab 'nolab'; start a lesson with "
                          "`pgha-lab lesson start ID`."),
    (("lesson", "check", "3"), "pgha-lab: no lesson is started on lab 'nolab'; start lesson 3 with "
                               "`pgha-lab lesson start 3`."),
    (("lesson", "solve", "4", "--apply"), "pgha-lab: no lesson is started on lab 'nolab'"),
])
def test_bad_input_is_one_sentence_and_changes_nothing(tmp_path, args, sentence):
    proc = cli(tmp_path, *args)
    assert proc.returncode == 1
    assert proc.stderr.startswith(sentence) and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "labs").exists()


def test_solve_without_apply_prints_the_reference_solution(tmp_path):
    proc = cli(tmp_path, "lesson", "solve", "3")
    assert proc.returncode == 0
    assert "patronictl -c /etc/patroni/config.yml switchover --leader dbnode1 --candidate dbnode2" in proc.stdout


def test_lesson_1_compares_answers_the_way_a_learner_writes_them():
    from pgha_lab.lessons.l01_read_the_cluster import _same
    assert _same("timeline", "02", "2") and not _same("timeline", "3", "2")
    assert _same("replica_in_recovery", "true", "t") and not _same("replica_in_recovery", "f", "t")
    assert _same("port_5433", "dbnode3, dbnode2", "dbnode2,dbnode3") and not _same("leader", "dbnode2", "dbnode1")


def test_a_check_report_passes_only_when_every_task_does():
    from pgha_lab.commands.lesson import render_report
    from pgha_lab.lessons.model import CheckReport, TaskResult
    report = CheckReport(3, [TaskResult("switchover", True, "dbnode2 leads on timeline 2"),
                             TaskResult("haproxy", False, "HAProxy's 5432 routes to nothing")])
    assert not report.passed and not CheckReport(3, []).passed
    text = render_report(report)
    assert "1 of 2 tasks not done yet" in text and "FAIL  haproxy" in text and "PASS  switchover" in text
    assert report.as_dict()["tasks"][1] == {"key": "haproxy", "passed": False, "reason": "HAProxy's 5432 routes to nothing"}


def test_haproxy_sessions_it_cut_are_read_from_its_tcplog_lines():
    cut = "10.56.57.1:50118 [26/Nov/2026:14:31:34.114] replicas replicas/dbnode2 1/0/8732 2403 D- 1/1/0/0/0 0/0"
    ended = "10.56.57.1:50120 [26/Nov/2026:14:31:30.002] primary primary/dbnode1 1/0/9120 2210 SD 1/1/0/0/0 0/0"
    stats = "127.0.0.1:45106 [26/Nov/2026:14:31:36.582] stats stats/<STATS> 0/0/0 6502 LR 2/1/0/0/0 0/0"
    parsed = [l09.TCPLOG.search(line) for line in (cut, ended, stats)]
    assert (parsed[0]["backend"], parsed[0]["server"], parsed[0]["state"]) == ("replicas", "dbnode2", "D-")
    assert parsed[1]["state"] == "SD" and parsed[2]["backend"] == "stats"


def test_a_recorded_error_must_be_that_of_a_cut_session():
    assert l09._cut_message({}, "primary_error") == "no answer recorded for primary_error"
    assert l09._cut_message({"replica_error": "SSL error: unexpected eof while reading"}, "replica_error") is None
    assert l09._cut_message({"primary_error": "FATAL:  terminating connection due to administrator command"},
                            "primary_error") is None
    assert "is not what libpq says" in l09._cut_message({"primary_error": "syntax error"}, "primary_error")


def test_the_clone_source_is_read_from_patronis_bootstrap_line():
    line = "2026-11-26 14:38:20,101 INFO: trying to bootstrap from replica 'dbnode2'"
    assert l11.CLONED_FROM.findall(line) == ["dbnode2"]
    assert l11.CLONED_FROM.findall("INFO: trying to bootstrap from leader 'dbnode1'") == ["dbnode1"]


def test_reset_shrinks_only_a_lab_the_started_lesson_grew(tmp_path):
    paths = LabPaths(home=tmp_path, project="p")
    grown = LabContext(paths, Topology.build(project="p", db_nodes=3))
    assert grown_from(grown) is None   # grown by its user: theirs to keep
    progress.save(paths, LearnerRecord(current=Current(11, "2026-01-01T00:00:00+00:00", {"db_nodes_before": 2})))
    assert grown_from(grown) == 2
    assert grown_from(LabContext(paths, Topology.build(project="p", db_nodes=2))) is None


def test_the_lesson_text_tells_how_to_start_only_before_the_lesson_started():
    from pgha_lab.commands.lesson import render_lesson
    lesson = catalogue.get("3")
    assert "start with `pgha-lab lesson start 3`" in render_lesson(lesson)
    after = render_lesson(lesson, started=True)
    assert "`pgha-lab lesson start" not in after and "the lab is at its starting state" in after


def test_patronis_failover_key_is_a_pending_request_only_while_it_asks_for_one():
    """Patroni 4.1 cleans the key up by writing `{}` into it after every switchover; the key stays."""
    from pgha_lab.lessons.baseline import ETCD_KEY, WAIT, request_pending
    key = "/service/18/main/failover"
    assert request_pending(key, "{}", "18/main") == [] and request_pending(key, None, "18/main") == []
    [waiting] = request_pending(key, '{"leader":"dbnode1","member":"dbnode2"}', "18/main")
    assert waiting.undo == WAIT and "dbnode2" in waiting.text
    [later] = request_pending(key, '{"member":"dbnode2","scheduled_at":"2026-12-03T10:00:00+00:00"}', "18/main")
    assert later.undo == ETCD_KEY and later.item == key and "patronictl flush 18/main switchover" in later.text
    [junk] = request_pending(key, "hello", "18/main")
    assert junk.undo == ETCD_KEY and "'hello'" in junk.text


def test_the_baseline_compares_settings_hba_and_tags_as_postgresql_and_patroni_spell_them():
    from pgha_lab.lessons.baseline import Difference, effective_tags, hba_lines, same_setting, verdict
    assert same_setting("128MB", "128MB") and same_setting("on", "ON") and same_setting("131072kB", "128MB")
    assert not same_setting("192MB", "128MB") and not same_setting("off", "on") and not same_setting("1GB", "1000MB")
    written = ("# Do not edit this file manually!\n# It will be overwritten by Patroni!\n"
               "local   all          all                           peer\n\nhostssl all   all   10.0.0.0/24  scram-sha-256\n")
    assert hba_lines(written) == ["local all all peer", "hostssl all all 10.0.0.0/24 scram-sha-256"]
    assert effective_tags({"clonefrom": True, "noloadbalance": False, "failover_priority": 1}) == \
        {"clonefrom": True, "failover_priority": 1}
    both = verdict([Difference("dbnode1's postgresql.auto.conf sets shared_buffers = '192MB'", "x", "dbnode1"),
                    Difference("etcd holds /lesson/note", "y")], "baseline")
    assert not both.ok and both.culprit == "dbnode1" and "192MB" in both.reason and "/lesson/note" in both.reason
    assert verdict([], "baseline: dbnode1 leads").reason == "baseline: dbnode1 leads"
