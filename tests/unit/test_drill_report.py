"""The drill report from a synthetic drill: every file written, the JSON agreeing with the CSVs,
the CSVs reading back to the same ledger and samples, and a PNG that is a PNG."""
from __future__ import annotations

import csv
import dataclasses
import json

import pytest

from pgha_lab import profiles
from pgha_lab.drill import hostcpu, ledger, reconcile, report, sampler
from pgha_lab.drill.clock import Clock
from pgha_lab.drill.runner import DrillResult, Event
from pgha_lab.drill.scenarios import SCENARIOS, Fault

from test_drill_reconcile import clean_drill


def synthetic_result(table_change=None) -> DrillResult:
    attempts, samples, table = clean_drill()
    if table_change:
        table_change(table)
    attempts[10].notice = "WARNING: canceling wait for synchronous replication due to statement timeout"
    result = DrillResult(
        scenario=SCENARIOS["switchover"], project="pgha-lab-test", profile=profiles.FAST, run="t-switchover-1",
        clock=Clock(), fault=Fault("dbnode1", "leader", "switchover requested", "dbnode2 takes over"),
        fault_s=2.0, old_leader="dbnode1", members_before=[], events=[Event(2.0, "fault"), Event(4.0, "healed"),
                                                                       Event(4.5, "healthy")],
        recovered=True, recovery_note="recovered before healing", healthy_after=True,
        attempts=attempts, samples=samples, table=table)
    result.findings = reconcile.reconcile(attempts, samples, table, 2.0, "dbnode1")
    return result


def test_every_file_is_written_and_the_json_agrees_with_the_ledger_csv(tmp_path):
    result = synthetic_result()
    files = report.write(result, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(report.FILES.values())
    assert files["timeline"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(files["json"].read_text())
    back = ledger.read_csv(files["ledger"])
    assert back == result.attempts
    # The figures against the synthetic drill's own numbers, not the reconciler's functions: 100
    # attempts every 50 ms (10 ms each), the 12 starting at 2.00-2.55 s failed, so the longest
    # stretch without an ack runs from #39's (1.96 s) to #52's (2.61 s).
    rows = list(csv.DictReader(files["ledger"].open()))
    assert len(rows) == doc["figures"]["attempts"] == 100
    assert sum(r["ok"] == "True" for r in rows) == doc["figures"]["acknowledged"] == 88
    assert doc["figures"]["write_downtime_s"] == pytest.approx(2.61 - 1.96, abs=1e-3)
    assert doc["figures"]["sync_wait_cancelled"] == 1
    # fast: 2 x loop_wait 1 s + promotion 5 s + HAProxy (inter 1 s + rise 2 x 1 s) = 10 s
    assert doc["bound"]["seconds"] == pytest.approx(10.0)
    assert doc["problems"] == []
    assert sampler.read_csv(files["samples"]) == result.samples


def test_a_problem_is_named_in_the_markdown_and_the_json(tmp_path):
    result = synthetic_result(lambda table: table.pop(30))
    report.write(result, tmp_path)
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["figures"]["lost_writes"] == 1 and doc["findings"]["lost"] == [30]
    md = (tmp_path / "report.md").read_text()
    assert "1 problem(s)" in md and "missing after recovery" in md


def test_writes_that_never_resume_are_not_within_the_bound(tmp_path):
    result = synthetic_result()
    for a in result.attempts:
        if a.start_s >= 3.9:   # failing from 3.9 s to the end: an open gap of over a second
            a.ok, a.server, a.error = False, "", "connection refused"
    result.findings = reconcile.reconcile(result.attempts, result.samples, {a.id: 1 for a in result.attempts if a.ok},
                                   2.0, "dbnode1")
    assert result.findings.unresumed.seconds <= result.findings.downtime.seconds < result.bound_s
    assert result.within_bound is False
    report.write(result, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "writes had not resumed by the end of the drill" in md and "**not within** the bound" in md


def test_no_recovery_and_a_downtime_over_the_bound_are_problems(tmp_path):
    result = synthetic_result()
    # The clean drill's 0.65 s downtime against a 0.5 s bound, and no recovery before healing.
    result.scenario = dataclasses.replace(result.scenario, bound_s=lambda p: 0.5, bound_text="test bound")
    result.recovered, result.recovery_note = False, "did not recover within 85s; healed anyway"
    assert result.findings.problems() == [] and result.within_bound is False
    assert result.problems() == ["no recovery before healing: did not recover within 85s; healed anyway",
                                 "write downtime 0.65s over the bound of 0.5s (test bound)"]
    report.write(result, tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["problems"] == result.problems()
    assert "# Drill `switchover` — 2 problem(s)" in (tmp_path / "report.md").read_text()


# /proc/stat's aggregate line: user nice system idle iowait irq softirq steal guest guest_nice.
STAT_AT_FAULT = "cpu  1000 0 500 8000 500 0 0 0 0 0\ncpu0 500 0 250 4000 250 0 0 0 0 0\n"


def stat_later(busy: int, idle: int) -> str:
    return f"cpu  {1000 + busy} 0 500 {8000 + idle} 500 0 0 0 0 0\n"


def test_the_host_cpu_share_comes_from_the_aggregate_line():
    before = hostcpu.parse(STAT_AT_FAULT)
    assert before == hostcpu.CpuTimes(busy=1500, total=10000)
    assert hostcpu.busy_share(before, hostcpu.parse(stat_later(300, 100))) == pytest.approx(0.75)
    assert hostcpu.busy_share(before, None) is None and hostcpu.busy_share(before, before) is None
    with pytest.raises(ValueError):
        hostcpu.parse("intr 1 2 3\n")


def test_a_downtime_over_the_bound_on_a_saturated_host_is_not_judged_and_says_why(tmp_path):
    result = synthetic_result()
    result.scenario = dataclasses.replace(result.scenario, bound_s=lambda p: 0.5, bound_text="test bound")
    result.cpu_at_fault = hostcpu.parse(STAT_AT_FAULT)
    result.cpu_at_recovery = hostcpu.parse(stat_later(95, 5))      # 95% busy
    assert result.within_bound is None and result.problems() == []
    assert "the host's CPUs were 95% busy" in result.bound_note
    report.write(result, tmp_path)
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["bound"]["within"] is None and doc["figures"]["host_cpu_busy_pct"] == 95.0
    assert "not judged: the host's CPUs were 95% busy" in (tmp_path / "report.md").read_text()
    # With CPU to spare the same downtime is over the bound, a problem; within the bound stays within.
    result.cpu_at_recovery = hostcpu.parse(stat_later(50, 50))
    assert result.within_bound is False and result.bound_note == ""
    assert result.problems() == ["write downtime 0.65s over the bound of 0.5s (test bound)"]
    result.scenario = dataclasses.replace(result.scenario, bound_s=lambda p: 10.0)
    result.cpu_at_recovery = hostcpu.parse(stat_later(99, 1))
    assert result.within_bound is True


def test_a_hold_scenario_whose_outcome_was_seen_has_no_problem_and_one_whose_outcome_never_came_has_one():
    # etcd-quorum-loss holds the fault without waiting for a recovery, but the fault's own check (the
    # primary demoted) must have passed before the heal: a primary that never demoted is a finding.
    held = synthetic_result()
    held.scenario, held.recovered = SCENARIOS["etcd-quorum-loss"], True
    held.recovery_note = "held the fault for 32s (no recovery expected before healing): no node accepts writes"
    assert held.problems() == []
    kept = synthetic_result()
    kept.scenario, kept.recovered = SCENARIOS["etcd-quorum-loss"], False
    kept.recovery_note = "47s into the fault, '...demotes...' had not happened: dbnode1 still answers as primary"
    assert kept.problems() == [f"did not hold as expected: {kept.recovery_note}"]


def test_a_lab_left_unhealthy_is_a_problem():
    result = synthetic_result()
    result.healthy_after, result.health_note = False, "dbnode1 is not streaming"
    assert result.problems() == ["the lab did not return to health after healing: dbnode1 is not streaming"]


def test_node_logs_kept_from_an_unhealthy_end_are_written_beside_the_report(tmp_path):
    result = synthetic_result()
    result.healthy_after, result.health_note = False, "dbnode1 is start failed, not streaming"
    result.node_logs = {"dbnode1": "FATAL:  requested timeline 5 is not a child of this server's history"}
    report.write(result, tmp_path)
    assert "not a child" in (tmp_path / report.NODE_LOGS / "dbnode1.log").read_text()
    assert f"`{report.NODE_LOGS}/`" in (tmp_path / "report.md").read_text()
    (tmp_path / "ok").mkdir()
    report.write(synthetic_result(), tmp_path / "ok")   # healthy after: no logs kept
    assert not (tmp_path / "ok" / report.NODE_LOGS).exists()


def varied_result(run: str, more_failed: int, lost: int) -> DrillResult:
    """The clean drill with `more_failed` extra failures closing its gap (50 ms each) and `lost`
    acknowledged writes missing from the table."""
    result = synthetic_result()
    result.run = run
    for a in result.attempts[51:51 + more_failed]:   # ids 52..: the first acks after the gap
        a.ok, a.server, a.error = False, "", "connection refused"
    table = {a.id: 1 for a in result.attempts if a.ok and not 10 <= a.id < 10 + lost}
    result.findings = reconcile.reconcile(result.attempts, result.samples, table, 2.0, "dbnode1")
    return result


def varied_runs() -> list[DrillResult]:
    return [varied_result(f"r{k}", more, lost) for k, (more, lost) in enumerate([(6, 2), (0, 0), (10, 4), (2, 2)])]


def test_a_summary_over_repeats_has_min_median_max(tmp_path):
    doc = report.write_summary("switchover", varied_runs(), tmp_path)
    s = doc["summary"]
    assert s["write_downtime_s"] == {"min": 0.65, "median": pytest.approx(0.85), "max": 1.15, "n": 4}
    assert s["lost_writes"] == {"min": 0, "median": 2, "max": 4, "n": 4}
    assert s["acknowledged"] == {"min": 78, "median": 84, "max": 88, "n": 4}
    assert sorted(doc["problems"]) == ["r0", "r2", "r3"]
    md = (tmp_path / "summary.md").read_text()
    assert f"| {report.LABELS['write_downtime_s']} | 0.65 | 0.85 | 1.15 |" in md
    # Whole-number figures stay whole although the median of an even count is a float.
    assert f"| {report.LABELS['lost_writes']} | 0 | 2 | 4 |" in md
    assert f"| {report.LABELS['duplicate_writes']} | 0 | 0 | 0 |" in md
    assert f"| {report.LABELS['acknowledged']} | 78 | 84 | 88 |" in md


def test_spread_cells_share_one_format():
    assert report.spread_cells([0, 0.0, 0]) == ["0", "0", "0"]
    assert report.spread_cells([1, 1.5, 2]) == ["1.00", "1.50", "2.00"]   # not "1 / 2 / 2"
    assert report.spread_cells([0.65, None, 1.15]) == ["0.65", "—", "1.15"]


def test_an_output_folder_with_files_is_refused(tmp_path):
    (tmp_path / "old.md").write_text("x")
    from pgha_lab.errors import LabError
    with pytest.raises(LabError, match="not an empty folder"):
        report.prepare_dir(tmp_path)
    assert report.prepare_dir(tmp_path / "new") == tmp_path / "new"


def test_a_run_expected_to_hold_is_reported_as_held_not_as_no_recovery():
    # Patroni's rules said no failover (no replica named in /sync): writes stop until healing.
    held = synthetic_result()
    held.fault = Fault("dbnode1", "leader", "dbnode1 powered off", "No failover: ...", holds=True)
    held.recovered, held.recovery_note = True, "held as expected (No failover: ...)"
    assert held.bound_s is None and not any("no recovery" in p or "over the bound" in p for p in held.problems())
    broke = synthetic_result()
    broke.fault = Fault("dbnode1", "leader", "dbnode1 powered off", "No failover: ...", holds=True)
    broke.recovered, broke.recovery_note = False, "dbnode2 became leader, against Patroni's rules"
    assert any(p.startswith("did not hold as expected") for p in broke.problems())
