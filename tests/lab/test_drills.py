"""Short drills on the real cluster (fast profile): no acknowledged write lost with synchronous
mode on, write downtime inside the bound the profile implies, a report whose JSON agrees with its
ledger CSV, and a lab left healthy."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import psycopg
import pytest

from pgha_lab import health
from pgha_lab import lab_settings
from pgha_lab.drill import ledger
from pgha_lab.drill.scenarios import SCENARIOS

pytestmark = [pytest.mark.docker, pytest.mark.lab]

# The bounds of the fast profile (the one conftest's healthy_lab brings the lab up with), worked out
# by hand rather than with the Profile functions the report itself uses, so an inflated formula fails:
# failover  ttl 20 + loop_wait 1 + promotion 5 + HAProxy rise (2 + 1) x 1 s           = 29 s
# switchover 2 x loop_wait 1 + promotion 5 + HAProxy rise 3 s                          = 10 s
# kill-postgres HAProxy fall (3 x 1 s + 1 s timeout) + loop_wait 1 + restart 5 + rise 3 = 13 s
FAILOVER_S, SWITCHOVER_S, KILL_POSTGRES_S = 29.0, 10.0, 13.0


def drill(lab, scenario: str, out: Path, *extra: str) -> dict:
    proc = lab.cli("drill", scenario, "--json", "--out", str(out), *extra, check=False, timeout=900)
    assert proc.returncode == 0, f"drill {scenario} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def assert_lab_healthy(lab) -> None:
    probe = lab.probe()
    cluster = probe.cluster()
    verdict = health.assess_patroni(cluster, [n.name for n in lab.topo.db])
    assert verdict.ok, verdict.reason
    verdict = health.assess_routing(probe.haproxy(), cluster)
    assert verdict.ok, verdict.reason


PRIMARY_ROLES = ("primary", "master")   # how Patroni names the running primary in its REST API


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def primary_runs(samples: list[dict[str, str]]) -> dict[str, list[tuple[float, float]]]:
    """Per db node, (first, last) time of each run of consecutive readings in which it answered as a
    running primary."""
    runs: dict[str, list[tuple[float, float]]] = {}
    open_run: dict[str, list[float]] = {}
    for s in sorted((s for s in samples if s["source"] == "patroni"), key=lambda s: float(s["t_s"])):
        t, node = float(s["t_s"]), s["node"]
        if not s["error"] and s["value"] in PRIMARY_ROLES and s["state"] == "running":
            open_run.setdefault(node, [t, t])[1] = t
        elif node in open_run:
            runs.setdefault(node, []).append(tuple(open_run.pop(node)))
    for node, (a, b) in open_run.items():
        runs.setdefault(node, []).append((a, b))
    return runs


def table_ids(lab, run: str) -> list[int]:
    """The drill's rows as the primary holds them, read here through HAProxy, not by the drill."""
    with psycopg.connect(lab.dsn(), password=lab.password(), connect_timeout=5) as conn:
        return [r[0] for r in conn.execute(f"select id from {ledger.TABLE} where run = %s", (run,)).fetchall()]


def check_report(lab, folder: Path, bound_s: float | None, allowed_problem: str | None = None) -> dict:
    """The report against figures worked out here from its raw ledger and samples, and the table read
    again, with none of the reconciler's functions: an error in those must not cancel out."""
    for name in ("report.md", "report.json", "ledger.csv", "samples.csv", "timeline.png"):
        assert (folder / name).is_file(), f"{name} missing from {folder}"
    assert (folder / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((folder / "report.json").read_text())
    figs = doc["figures"]
    rows = csv_rows(folder / "ledger.csv")
    samples = csv_rows(folder / "samples.csv")
    fault_s = doc["findings"]["phases"]["fault_s"]
    acked = [r for r in rows if r["ok"] == "True"]
    assert figs["attempts"] == len(rows) and figs["acknowledged"] == len(acked)
    assert len(acked) >= 50, "the writer hardly wrote: the figures would prove nothing"

    # Write downtime: the longest stretch between two consecutive acknowledgements ending after the
    # fault; and writes had resumed: acknowledgements up to the last second of the ledger.
    ends = sorted(float(r["end_s"]) for r in acked)
    longest = max(b - a for a, b in zip(ends, ends[1:]) if b > fault_s)
    assert figs["write_downtime_s"] == pytest.approx(longest, abs=2e-3)
    assert max(float(r["end_s"]) for r in rows) - ends[-1] < 1.0, "writes had not resumed by the end of the drill"

    # Every acknowledged write is in the table once; nothing else of this run is.
    held = table_ids(lab, doc["run"])
    acked_ids = {int(r["id"]) for r in acked}
    missing = acked_ids - set(held)
    assert not missing and figs["lost_writes"] == 0, f"acknowledged writes lost with synchronous mode on: {sorted(missing)[:10]}"
    assert len(held) == len(set(held)) and figs["duplicate_writes"] == 0
    assert set(held) <= {int(r["id"]) for r in rows}

    # Each acknowledgement came from a node that said it was the running primary, or held the leader
    # key, within half a second of it; or, where no reading of that node answered in that second (a
    # saturated host, etcd without quorum), whose last answer before it said primary.
    answered = sorted((float(s["t_s"]), s["node"], s["value"]) for s in samples if s["source"] == "patroni" and not s["error"])
    said_primary = [(t, who) for t, who, value in answered if value in PRIMARY_ROLES]
    key_holder = [(float(s["t_s"]), s["value"]) for s in samples if s["source"] == "etcd" and not s["error"]]

    def backed(r) -> bool:
        start, end, node = float(r["start_s"]) - 0.5, float(r["end_s"]) + 0.5, r["server"]
        if any(who == node and start <= t <= end for t, who in said_primary + key_holder):
            return True
        if any(who == node and start <= t <= end for t, who, _ in answered):
            return False   # the node answered then, and not as the primary
        last = [value for t, who, value in answered if who == node and t < start]
        return bool(last) and last[-1] in PRIMARY_ROLES
    unbacked = [r["id"] for r in acked if not backed(r)]
    assert unbacked == [] and figs["non_leader_acks"] == 0, (unbacked[:10], doc["problems"])

    # Two nodes answering as primary at once: overlapping runs of 'primary' readings.
    runs = primary_runs(samples)
    nodes = sorted(runs)
    overlaps = [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1:]
                for a0, a1 in runs[a] for b0, b1 in runs[b] if max(a0, b0) <= min(a1, b1)]
    if allowed_problem is None:
        assert overlaps == [] and figs["split_brain_intervals"] == 0, (overlaps, doc["problems"])
    else:   # the report may see more (HAProxy's view too), never less than the raw readings show
        assert not overlaps or figs["split_brain_intervals"] > 0, (overlaps, figs)

    # The bound comes from the profile's ttl (failovers only), loop_wait and HAProxy rise checks,
    # plus profiles.PROMOTE_S for PostgreSQL itself; scenarios without one carry none.
    if bound_s is None:
        assert doc["bound"]["seconds"] is None and doc["bound"]["within"] is None
    elif doc["bound"]["within"] is None:
        # Over the bound on a host whose CPUs were saturated: not judged, and the report says so
        # (the serial phase's kill-leader drill judges the bound on a quiet machine).
        assert doc["bound"]["seconds"] == pytest.approx(bound_s)
        assert figs["write_downtime_s"] > bound_s and figs["host_cpu_busy_pct"] >= 90, figs
        assert doc["bound"]["note"].startswith("not judged: the host's CPUs were"), doc["bound"]
    else:
        assert doc["bound"]["seconds"] == pytest.approx(bound_s)
        assert figs["write_downtime_s"] <= bound_s, f"write downtime {figs['write_downtime_s']}s over the bound {bound_s:.1f}s"
        assert doc["bound"]["within"] is True
    assert all(allowed_problem and p.startswith(allowed_problem) for p in doc["problems"]), doc["problems"]
    assert doc["healthy_after"] is True
    return doc


def test_switchover_drill_repeated(lab, tmp_path):
    # --repeat 2: two runs, each with its own report, and a summary over both.
    folder = tmp_path / "switchover"
    first = lab.probe().cluster().leader_name
    out = drill(lab, "switchover", folder, "--repeat", "2")
    assert len(out["runs"]) == 2   # each run's bound is checked by check_report below
    assert out["summary"]["write_downtime_s"]["max"] == max(r["figures"]["write_downtime_s"] for r in out["runs"])
    olds = []
    for k, run in enumerate(out["runs"], start=1):
        doc = check_report(lab, folder / f"run-{k:02d}", SWITCHOVER_S)
        assert run["figures"] == doc["figures"]
        olds.append(doc["old_leader"])
        assert doc["findings"]["phases"]["new_leader_name"] not in ("", doc["old_leader"])
        assert doc["figures"]["timeline_after"] == doc["figures"]["timeline_before"] + 1
    # Two switchovers on two nodes: the leader went there and back.
    assert olds[0] == first and olds[1] != first
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["runs"] == 2 and len(summary["per_run"]) == 2 and (folder / "summary.md").is_file()
    assert_lab_healthy(lab)


@pytest.mark.serial   # with no other lab alive, so the host has CPU to spare and the bound is judged
def test_kill_leader_drill(lab, tmp_path):
    old = lab.probe().cluster().leader_name
    drill(lab, "kill-leader", tmp_path / "kill-leader")
    doc = check_report(lab, tmp_path / "kill-leader", FAILOVER_S)
    assert doc["figures"]["host_cpu_busy_pct"] < 90 and doc["bound"]["within"] is True, doc["figures"]
    ph = doc["findings"]["phases"]
    assert ph["new_leader_name"] not in ("", old)
    # The old leader's key can only go by expiring, about ttl (20 s on the fast profile) after its last
    # renewal: not in the first half of it, and not long after it. The upper margin is generous: on a
    # loaded machine etcd expires leases late and the sampler reads late (22.8 s was seen at load 80).
    assert 20 / 2 < ph["leader_key_gone"] <= 20 + 10
    assert doc["figures"]["timeline_after"] > doc["figures"]["timeline_before"]
    assert_lab_healthy(lab)


def test_drill_matrix_sets_each_cell_judges_it_and_gives_the_lab_back(lab, tmp_path):
    """Two cells (failsafe off, on) of one switchover: each run happened under its cell's settings (as
    Patroni reported them during the run, not as asked), each judged held, the report and heat map
    written, and the lab runs what it ran before."""
    before = lab_settings.read_live(lab.probe(), lab.topo)
    assert before is not None and before.failsafe is False
    out = tmp_path / "matrix"
    proc = lab.cli("drill", "matrix", "--scenarios", "switchover", "--replication", "sync", "--failsafe", "off,on",
                   "--profile", "fast", "--json", "--out", str(out), check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert [c["name"] for c in doc["cells"]] == ["sync-failsafe-off-fast", "sync-failsafe-on-fast"]
    assert len(doc["results"]) == 2
    for r in doc["results"]:
        assert r["held"] is True, r
        assert len(r["folders"]) == 1 and r["runs"][0]["write_downtime_s"] <= SWITCHOVER_S, r
        run = json.loads((out / r["folders"][0] / "report.json").read_text())
        assert run["settings"]["failsafe"] is r["cell"].startswith("sync-failsafe-on"), run["settings"]
    assert "| switchover |" in (out / "matrix.md").read_text()
    assert (out / "heatmap.png").stat().st_size > 5_000
    after = lab_settings.read_live(lab.probe(), lab.topo)
    assert after == before
    assert_lab_healthy(lab)


def test_a_drill_with_another_profile_than_the_lab_is_refused_and_changes_nothing(lab, tmp_path):
    proc = lab.cli("drill", "switchover", "--profile", "seed", "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 1
    assert "runs the fast profile, not seed" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


# Every other scenario once: the bound its report must carry (None: the scenario has none), and
# whether the leader must change.
OTHER_SCENARIOS = {
    "stop-leader": (FAILOVER_S, True),
    "isolate-leader": (FAILOVER_S, True),
    "partition-leader-from-etcd": (FAILOVER_S, True),
    "kill-replica": (None, False),
    "kill-postgres": (KILL_POSTGRES_S, False),
    "etcd-minority-loss": (None, False),
    "etcd-quorum-loss": (None, None),   # whoever wins the election once etcd is back
    "etcd-quorum-loss-member-cut": (None, None),
    "cancel-sync-wait": (None, False),
    "fill-disk-leader": (None, False),
    "flap-leader": (None, None),   # whether a flap outlasts the key depends on when the cuts fall
}
# A frozen leader (its whole VM, its Patroni or its PostgreSQL stopped) loses its key while it cannot
# see it. CI caught pause-leader's thawed VM answering "primary" for 0.5 s before its HA loop demoted it.
FROZEN_LEADER_SCENARIOS = ("pause-leader", "freeze-patroni-leader", "hang-postgres-leader")
RUN_ELSEWHERE = {"kill-haproxy": "tests/lab/test_faults.py", "kill-haproxy-vip": "tests/lab/test_haproxy_pair.py",
                 "isolate-leader-lagging": "tests/lab/test_settings.py"}


def test_every_scenario_is_run_by_a_test():
    assert set(SCENARIOS) == {"switchover", "kill-leader", *OTHER_SCENARIOS, *FROZEN_LEADER_SCENARIOS, *RUN_ELSEWHERE}


@pytest.mark.parametrize("scenario", FROZEN_LEADER_SCENARIOS)
def test_a_thawed_leader_may_answer_as_primary_for_a_moment_but_takes_no_write(lab, tmp_path, scenario):
    # When it thaws, the old leader's REST API can say "primary" until its next HA loop finds the key
    # gone and demotes it: the drill reports that instant as two primaries (a problem, exit 3). HAProxy
    # had marked it down long before, so no client write may reach it, and none may be lost.
    old = lab.probe().cluster().leader_name
    proc = lab.cli("drill", scenario, "--json", "--out", str(tmp_path / scenario), check=False, timeout=900)
    assert proc.returncode in (0, 3), proc.stderr
    run = json.loads(proc.stdout)["runs"][0]
    doc = check_report(lab, tmp_path / scenario, FAILOVER_S, allowed_problem="split brain: two primaries at once")
    assert run["problems"] == doc["problems"]
    figs = doc["figures"]
    assert figs["non_leader_acks"] == 0 and figs["haproxy_stale_primary_s"] == 0
    # "A moment" is the thawed leader's first HA loop: after loop_wait 1 s it reads etcd, which may take
    # up to retry_timeout 6 s (its client reconnects after the freeze), then demotes. CI saw 2.8 s at 100 % CPU.
    assert figs["split_brain_s"] < 1 + 6
    leader_after = next(m["name"] for m in doc["members_after"] if m["role"] == "leader")
    assert leader_after != old and figs["timeline_after"] > figs["timeline_before"]
    assert_lab_healthy(lab)


@pytest.mark.parametrize("scenario", list(OTHER_SCENARIOS))
def test_drill_scenario(lab, tmp_path, scenario):
    bound_s, leader_changes = OTHER_SCENARIOS[scenario]
    old = lab.probe().cluster().leader_name
    out = drill(lab, scenario, tmp_path / scenario)
    doc = check_report(lab, tmp_path / scenario, bound_s)
    assert out["runs"][0]["figures"] == doc["figures"] and out["runs"][0]["problems"] == []
    assert doc["old_leader"] == old
    leader_after = next(m["name"] for m in doc["members_after"] if m["role"] == "leader")
    if leader_changes is True:
        assert leader_after != old and doc["figures"]["timeline_after"] > doc["figures"]["timeline_before"]
    elif leader_changes is False:
        assert leader_after == old and doc["figures"]["timeline_after"] == doc["figures"]["timeline_before"]
    assert_lab_healthy(lab)
