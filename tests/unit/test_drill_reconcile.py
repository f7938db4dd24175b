"""The drill's detectors on synthetic ledgers and samples: each problem fires, a clean drill fires none."""
from __future__ import annotations

import pytest

from pgha_lab.drill import reconcile
from pgha_lab.drill.ledger import Attempt
from pgha_lab.drill.sampler import ETCD, HAPROXY, PATRONI, Sample


# -- builders ---------------------------------------------------------------------------------
def ledger(n: int = 100, step: float = 0.05, server: str = "dbnode1", gap: tuple[float, float] | None = None,
           after: str | None = None) -> list[Attempt]:
    """n attempts every `step` s, each taking 10 ms; attempts starting inside `gap` fail;
    after the gap `after` answers instead of `server`."""
    out = []
    for i in range(1, n + 1):
        t = i * step
        if gap and gap[0] <= t < gap[1]:
            out.append(Attempt(i, t, t + 0.01, False, error="connection refused"))
        else:
            who = after if (after and gap and t >= gap[1]) else server
            out.append(Attempt(i, t, t + 0.01, True, server=who))
    return out


def table_of(attempts: list[Attempt]) -> dict[int, int]:
    return {a.id: 1 for a in attempts if a.ok}


def key_readings(changes: list[tuple[float, str]], until: float, step: float = 0.1) -> list[Sample]:
    """etcd readings every `step` s; `changes` = [(from time, holder)], holder "" = no key."""
    out, t = [], 0.0
    while t <= until:
        holder = [h for since, h in changes if since <= t][-1]
        out.append(Sample(round(t, 3), ETCD, value=holder))
        t += step
    return out


def roles(node: str, primary_until: float | None, primary_from: float | None, until: float,
          step: float = 0.1, offset: float = 0.0) -> list[Sample]:
    out, t = [], offset
    while t <= until:
        primary = (primary_until is not None and t < primary_until) or (primary_from is not None and t >= primary_from)
        out.append(Sample(round(t, 3), PATRONI, node, value="primary" if primary else "replica",
                          state="running", timeline=2 if primary_from is not None and t >= primary_from else 1))
        t += step
    return out


def clean_drill() -> tuple[list[Attempt], list[Sample], dict[int, int]]:
    """A switchover dbnode1 -> dbnode2 at 2.0 s, done cleanly: writes pause 2.0-2.6 s."""
    attempts = ledger(100, gap=(2.0, 2.6), after="dbnode2")
    samples = (key_readings([(0, "dbnode1"), (2.2, ""), (2.4, "dbnode2")], 5.0)
               + roles("dbnode1", 2.1, None, 5.0, offset=0.03)
               + roles("dbnode2", None, 2.45, 5.0, offset=0.07)
               + [Sample(t / 10, HAPROXY, value="dbnode1" if t < 22 else ("" if t < 27 else "dbnode2"))
                  for t in range(51)])
    return attempts, samples, table_of(attempts)


# -- a clean drill --------------------------------------------------------------------------
def test_a_clean_drill_fires_no_detector():
    attempts, samples, table = clean_drill()
    f = reconcile.reconcile(attempts, samples, table, fault_s=2.0, old_leader="dbnode1")
    assert f.problems() == []
    assert f.lost == [] and f.duplicates == [] and f.non_leader_acks == [] and f.split_brain == []
    assert f.unacknowledged_commits == [] and f.unknown_rows == []
    assert f.acked + f.failed == f.attempts == 100


def test_the_clean_drill_phases_and_timeline():
    attempts, samples, table = clean_drill()
    f = reconcile.reconcile(attempts, samples, table, fault_s=2.0, old_leader="dbnode1")
    ph = f.phases
    assert ph.leader_key_gone == pytest.approx(0.2, abs=0.01)
    assert ph.new_leader == pytest.approx(0.4, abs=0.01) and ph.new_leader_name == "dbnode2"
    assert ph.haproxy_switched == pytest.approx(0.7, abs=0.01)
    assert ph.first_write_server == "dbnode2" and ph.first_write == pytest.approx(0.61, abs=0.01)
    assert (f.timeline_before, f.timeline_after) == (1, 2)
    assert f.servers["dbnode1"] > 0 and f.servers["dbnode2"] > 0


# -- downtime ----------------------------------------------------------------------------------
def test_the_longest_gap_runs_from_the_last_ack_before_to_the_first_after():
    attempts = ledger(100, gap=(1.0, 3.0))   # attempts 20..59 fail
    gap = reconcile.longest_gap(attempts)
    assert (gap.last_id, gap.first_id) == (19, 60)
    assert gap.seconds == pytest.approx(60 * 0.05 - 19 * 0.05)


def test_the_longest_of_several_gaps_is_the_downtime():
    attempts = ledger(100, gap=(1.0, 1.5))
    for a in attempts:
        if 3.0 <= a.start_s < 4.0:
            a.ok, a.server, a.error = False, "", "timeout"
    assert reconcile.longest_gap(attempts).seconds == pytest.approx(1.0, abs=0.06)
    assert len([g for g in reconcile.ack_gaps(attempts) if g.seconds > 0.2]) == 2


def test_no_ack_at_all_means_no_downtime_figure():
    attempts = [Attempt(i, i * 0.05, i * 0.05 + 0.01, False, error="refused") for i in range(1, 10)]
    assert reconcile.longest_gap(attempts) is None


def test_writes_that_never_resume_leave_an_open_gap_and_a_problem():
    attempts = ledger(100, gap=(2.0, 99))   # attempts 40..100 fail: no ack after the fault
    f = reconcile.reconcile(attempts, [], table_of(attempts), fault_s=2.0, old_leader="dbnode1")
    assert f.downtime == f.unresumed and f.downtime.open
    assert (f.downtime.last_id, f.downtime.first_id) == (39, 100)
    assert f.figures()["write_downtime_s"] == pytest.approx(5.01 - 1.96)
    assert f.phases.first_write is None
    assert any("writes had not resumed by the end of the drill" in p for p in f.problems())


def test_one_failed_last_attempt_is_not_an_outage():
    attempts = ledger(100)
    attempts[-1] = Attempt(100, 5.0, 5.01, False, error="server closed the connection")
    f = reconcile.reconcile(attempts, [], table_of(attempts), fault_s=2.0, old_leader="dbnode1")
    assert f.unresumed is None
    assert not any("had not resumed" in p for p in f.problems())


def test_no_first_write_phase_when_writes_never_stopped():
    attempts = ledger(100)   # every 50 ms, all acknowledged: the longest gap is the writer's rhythm
    f = reconcile.reconcile(attempts, [], table_of(attempts), fault_s=2.0, old_leader="dbnode1")
    assert f.downtime is not None and f.downtime.seconds == pytest.approx(0.05)
    assert f.phases.first_write is None
    stalled = ledger(100, gap=(2.0, 2.3))   # 300 ms without an ack: writes did stop
    assert reconcile.reconcile(stalled, [], table_of(stalled), fault_s=2.0, old_leader="dbnode1").phases.first_write \
        == pytest.approx(0.31, abs=0.01)


def test_writes_that_resumed_leave_no_open_gap():
    attempts, samples, table = clean_drill()
    assert reconcile.open_gap(attempts) is None
    assert reconcile.reconcile(attempts, samples, table, fault_s=2.0, old_leader="dbnode1").unresumed is None


def test_the_downtime_is_the_longest_gap_ending_after_the_fault():
    attempts = ledger(100, gap=(0.5, 1.5))   # a 1.05 s stall before the fault is not its downtime
    for a in attempts:
        if 3.0 <= a.start_s < 3.5:
            a.ok, a.server, a.error = False, "", "timeout"
    f = reconcile.reconcile(attempts, [], table_of(attempts), fault_s=2.0, old_leader="dbnode1")
    assert (f.downtime.last_id, f.downtime.first_id) == (59, 70)
    assert f.figures()["write_downtime_s"] == pytest.approx(0.55)
    assert f.phases.first_write == pytest.approx(f.downtime.end_s - 2.0)


# -- the table against the ledger ----------------------------------------------------------
def test_an_acknowledged_write_missing_from_the_table_is_lost():
    attempts, samples, table = clean_drill()
    del table[37]
    f = reconcile.reconcile(attempts, samples, table, fault_s=2.0, old_leader="dbnode1")
    assert f.lost == [37]
    assert any("missing after recovery" in p and "37" in p for p in f.problems())


def test_a_row_held_twice_is_a_duplicate():
    attempts, samples, table = clean_drill()
    table[12] = 2
    f = reconcile.reconcile(attempts, samples, table, fault_s=2.0, old_leader="dbnode1")
    assert f.duplicates == [12]
    assert any("duplicated" in p for p in f.problems())


def test_an_id_acknowledged_twice_in_the_ledger_is_a_duplicate():
    attempts = ledger(10)
    attempts.append(Attempt(5, 0.6, 0.61, True, server="dbnode1"))
    assert reconcile.duplicate_writes(attempts, table_of(attempts)) == [5]


def test_a_failed_attempt_that_committed_is_reported_but_is_not_a_loss():
    attempts = ledger(50, gap=(1.0, 1.2))
    table = table_of(attempts)
    failed = next(a.id for a in attempts if not a.ok)
    table[failed] = 1
    f = reconcile.reconcile(attempts, [], table, fault_s=1.0, old_leader="dbnode1")
    assert f.unacknowledged_commits == [failed] and f.lost == [] and f.problems() == []


def test_a_row_nobody_attempted_is_flagged():
    attempts = ledger(10)
    table = table_of(attempts) | {999: 1}
    assert reconcile.unknown_rows(attempts, table) == [999]


# -- non-leader acknowledgements -------------------------------------------------------------
def test_a_write_acknowledged_by_a_node_that_did_not_hold_the_key_is_flagged():
    attempts, samples, table = clean_drill()
    # attempt 80 (4.0 s) answered by the old leader long after the key moved to dbnode2
    attempts[79].server = "dbnode1"
    f = reconcile.reconcile(attempts, samples, table, fault_s=2.0, old_leader="dbnode1")
    assert [(n.id, n.server, n.leader_before, n.leader_after) for n in f.non_leader_acks] == [(80, "dbnode1", "dbnode2", "dbnode2")]
    assert any("not the leader of record" in p for p in f.problems())


def test_an_ack_straddling_the_key_change_is_judged_against_both_sides():
    # The key moves dbnode1 -> dbnode2 at 1.0 s; an ack from dbnode2 whose attempt started at
    # 0.95 s has the old holder before it and the new one after it: not flagged.
    samples = key_readings([(0, "dbnode1"), (1.0, "dbnode2")], 3.0)
    straddling = [Attempt(1, 0.95, 1.05, True, server="dbnode2")]
    assert reconcile.non_leader_acks(straddling, samples) == []
    # ... but an ack from dbnode1 entirely after the change is flagged.
    late = [Attempt(2, 1.25, 1.28, True, server="dbnode1")]
    assert [n.id for n in reconcile.non_leader_acks(late, samples)] == [2]


def test_an_ack_without_a_readable_key_on_one_side_is_not_judged_but_counted():
    samples = [Sample(0.0, ETCD, value="dbnode1"), Sample(0.1, ETCD, error="etcd unreadable"),
               Sample(0.3, ETCD, value="dbnode1")]
    acked = [Attempt(1, 0.12, 0.2, True, server="dbnode2"), Attempt(2, 0.31, 0.32, True, server="dbnode1")]
    assert reconcile.non_leader_acks(acked, samples) == []
    assert reconcile.unjudged_acks(acked, samples) == [1, 2]    # 2 has no reading after it


def test_an_ack_while_nobody_holds_the_key_is_flagged():
    samples = key_readings([(0, "dbnode1"), (1.0, "")], 3.0)
    found = reconcile.non_leader_acks([Attempt(1, 2.0, 2.02, True, server="dbnode1")], samples)
    assert [(n.leader_before, n.leader_after, n.keyless) for n in found] == [("", "", True)]


def test_with_failsafe_on_keyless_acks_are_counted_but_an_ack_under_another_holder_is_a_problem():
    # dbnode1 loses its key at 1.0 s and runs on (failsafe); dbnode2 takes the key at 2.0 s.
    samples = key_readings([(0, "dbnode1"), (1.0, ""), (2.0, "dbnode2")], 3.0)
    keyless, under_dbnode2 = Attempt(1, 1.3, 1.32, True, server="dbnode1"), Attempt(2, 2.5, 2.52, True, server="dbnode1")
    for failsafe, problem in ((False, True), (True, False)):
        f = reconcile.reconcile([keyless], samples, {1: 1}, fault_s=0.5, old_leader="dbnode1", failsafe=failsafe)
        assert f.figures()["non_leader_acks"] == f.figures()["keyless_acks"] == 1
        assert f.figures()["wrong_acks"] == int(problem)   # the figure the matrix judges cells by
        assert any("not the leader of record" in p for p in f.problems()) is problem
    f = reconcile.reconcile([keyless, under_dbnode2], samples, {1: 1, 2: 1}, fault_s=0.5, old_leader="dbnode1", failsafe=True)
    assert (f.figures()["non_leader_acks"], f.figures()["keyless_acks"], f.figures()["wrong_acks"]) == (2, 1, 1)
    assert any("1 write(s) acknowledged by a node that was not the leader of record (ids 2)" in p for p in f.problems())


# -- split brain -----------------------------------------------------------------------------
def test_two_nodes_answering_as_primary_at_once_is_split_brain():
    samples = roles("dbnode1", None, 0.0, 3.0) + roles("dbnode2", None, 1.5, 3.0, offset=0.05)
    f = reconcile.reconcile([], samples, {}, fault_s=1.0, old_leader="dbnode1")
    patroni = [o for o in f.split_brain if o.source == PATRONI]
    assert len(patroni) == 1 and patroni[0].nodes == ("dbnode1", "dbnode2")
    assert patroni[0].start_s == pytest.approx(1.55) and patroni[0].end_s == pytest.approx(3.0, abs=0.11)
    assert any("split brain" in p for p in f.problems())


def test_a_handover_between_two_readings_is_not_split_brain():
    # dbnode1's last 'primary' reading is at 2.0 s and its next says replica; dbnode2's first
    # 'primary' reading is at 2.05 s. Under a latest-reading view both 'are' primary for 50 ms,
    # but neither reading pair confirms it.
    samples = roles("dbnode1", 2.05, None, 4.0) + roles("dbnode2", None, 2.05, 4.0, offset=0.05)
    assert reconcile.two_primaries(samples) == []


def test_a_silent_node_is_not_counted_as_primary():
    samples = (roles("dbnode1", None, 0.0, 1.0)
               + [Sample(t / 10, PATRONI, "dbnode1", error="no answer") for t in range(11, 30)]
               + roles("dbnode2", None, 1.2, 3.0, offset=0.05))
    assert reconcile.two_primaries(samples) == []


def test_two_primary_servers_up_in_haproxy_is_split_brain():
    # HAProxy has both UP behind 5432 from 1.0 to 1.4 s, and both nodes say they are primary.
    haproxy = [Sample(t / 10, HAPROXY, value="dbnode1+dbnode2" if 10 <= t <= 14 else "dbnode1") for t in range(30)]
    both = roles("dbnode1", None, 0.0, 3.0, offset=0.03) + roles("dbnode2", 1.6, None, 3.0, offset=0.06)
    found = reconcile.haproxy_two_primaries(haproxy + both)
    assert [(o.source, o.start_s, o.end_s, o.nodes, o.confirmed) for o in found] == [
        (HAPROXY, 1.0, 1.4, ("dbnode1", "dbnode2"), True)]
    f = reconcile.reconcile([], haproxy + both, {}, 0.5, "dbnode1")
    assert found[0] in f.split_brain and any("split brain" in p for p in f.problems())
    # Patroni sees the same event (both primary 0.06-1.56 s): it counts once, over its union.
    assert sorted(o.source for o in f.split_brain) == [HAPROXY, PATRONI]
    assert f.figures()["split_brain_intervals"] == 1
    assert f.figures()["split_brain_s"] == pytest.approx(1.5)


def test_separate_split_brain_intervals_are_counted_and_timed_apart():
    overlaps = [reconcile.Overlap(PATRONI, 1.0, 2.0, ("a", "b")), reconcile.Overlap(HAPROXY, 1.5, 2.5, ("a", "b")),
                reconcile.Overlap(PATRONI, 4.0, 4.25, ("a", "b"))]
    assert reconcile.merged(overlaps) == [(1.0, 2.5), (4.0, 4.25)]


def test_an_unanswered_stats_reading_ends_a_haproxy_run():
    # Two stretches of two servers UP with the stats page silent between them: two intervals, not
    # one spanning the silence (as primary_runs does for a silent node).
    def reading(t: int) -> Sample:
        if 13 <= t <= 15:
            return Sample(t / 10, HAPROXY, error="stats page does not answer")
        return Sample(t / 10, HAPROXY, value="dbnode1+dbnode2" if 10 <= t <= 18 else "dbnode1")
    both = roles("dbnode1", None, 0.0, 3.0, offset=0.03) + roles("dbnode2", None, 0.0, 3.0, offset=0.06)
    found = reconcile.haproxy_two_primaries([reading(t) for t in range(30)] + both)
    assert [(o.start_s, o.end_s) for o in found] == [(1.0, 1.2), (1.6, 1.8)]


def test_haproxy_lagging_behind_a_demotion_is_reported_but_is_not_split_brain():
    # After a switchover HAProxy needs `fall` failed checks to drop the old primary but only `rise`
    # passes to add the new one: both are UP behind 5432 for a while although dbnode1 already
    # answers 'demoted'. That is routing lag (sessions to a node that refuses writes), not two primaries.
    haproxy = [Sample(t / 10, HAPROXY, value="dbnode1+dbnode2" if 20 <= t <= 25 else ("dbnode1" if t < 20 else "dbnode2"))
               for t in range(40)]
    demoted = [Sample(round(t / 10 + 0.03, 3), PATRONI, "dbnode1", value="primary" if t < 15 else "demoted",
                      state="running" if t < 15 else "stopped") for t in range(40)]
    f = reconcile.reconcile([], haproxy + demoted + roles("dbnode2", None, 1.7, 4.0, offset=0.06), {}, 1.4, "dbnode1")
    assert f.split_brain == [] and f.problems() == []
    assert [(o.start_s, o.end_s, o.confirmed) for o in f.haproxy_lag] == [(2.0, 2.5, False)]
    assert f.figures()["haproxy_stale_primary_s"] == pytest.approx(0.5)


# -- notices, figures, repeats -----------------------------------------------------------------
def test_a_cancelled_synchronous_wait_is_recorded_on_the_acknowledgement():
    attempts = ledger(10)
    attempts[3].notice = ("WARNING: canceling wait for synchronous replication due to user request | "
                          "WARNING: The transaction has already committed locally, but might not have been replicated to the standby.")
    f = reconcile.reconcile(attempts, [], table_of(attempts), 0.2, "dbnode1")
    assert f.sync_cancelled == [4] and f.with_notices == [4]
    assert f.figures()["sync_wait_cancelled"] == 1


def test_figures_are_flat_numbers_and_the_dict_round_trips_to_json():
    import json
    attempts, samples, table = clean_drill()
    f = reconcile.reconcile(attempts, samples, table, fault_s=2.0, old_leader="dbnode1")
    figs = f.figures()
    assert figs["write_downtime_s"] == pytest.approx(0.65, abs=0.01)
    assert all(v is None or isinstance(v, (int, float)) for v in figs.values())
    assert json.loads(json.dumps(f.as_dict()))["figures"] == figs


def test_summarize_takes_min_median_max_and_skips_missing_values():
    s = reconcile.summarize([{"a": 1.0, "b": None}, {"a": 3.0, "b": 2}, {"a": 2.0, "b": None}])
    assert s["a"] == {"min": 1.0, "median": 2.0, "max": 3.0, "n": 3}
    assert s["b"] == {"min": 2, "median": 2, "max": 2, "n": 1}


def test_writes_flow_only_when_every_recent_attempt_was_acknowledged():
    attempts = ledger(100, gap=(2.0, 3.0))

    def at(t: float) -> bool:   # what the runner sees at time t: the attempts finished by then
        return reconcile.writes_flowing([a for a in attempts if a.end_s <= t], now_s=t, window_s=1.0)
    assert at(1.9)
    assert not at(3.2)     # failures inside the window
    assert at(4.5)
    assert not at(9.0)     # nothing finished lately


def test_one_or_two_acknowledgements_between_hung_attempts_are_not_writes_flowing():
    # Commits that hang and then succeed (a synchronous standby gone, statement_timeout 2 s): every
    # attempt of the last second acknowledged, but one or two of them where the writer makes twenty.
    one = [Attempt(1, 5.0, 6.9, True, server="dbnode1")]
    two = [Attempt(1, 5.0, 6.7, True, server="dbnode1"), Attempt(2, 6.7, 7.45, True, server="dbnode1")]
    for acks in (one, two):
        assert not reconcile.writes_flowing(acks, now_s=7.5, window_s=1.0), acks
    # The writer's usual rhythm after them: flowing once a whole window of it has passed.
    steady = two + [Attempt(10 + i, 7.5 + 0.05 * i, 7.51 + 0.05 * i, True, server="dbnode1") for i in range(40)]
    assert not reconcile.writes_flowing([a for a in steady if a.end_s <= 7.8], now_s=7.8, window_s=1.0)
    assert reconcile.writes_flowing([a for a in steady if a.end_s <= 8.6], now_s=8.6, window_s=1.0)
