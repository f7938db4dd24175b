"""Short drills on the real cluster (fast profile): no acknowledged write lost with synchronous
mode on, write downtime inside the bound the profile implies, a report whose JSON agrees with its
ledger CSV, and a lab left healthy."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgha_lab import health, profiles
from pgha_lab.drill import ledger, reconcile, sampler

pytestmark = [pytest.mark.docker, pytest.mark.lab]

FAST = profiles.get("fast")   # the profile conftest's healthy_lab brings the lab up with


@pytest.fixture()
def lab(healthy_lab):
    yield healthy_lab
    healthy_lab.cli("chaos", "heal-all", check=False)
    healthy_lab.up()


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


def check_report(folder: Path, bound_s: float) -> dict:
    for name in ("report.md", "report.json", "ledger.csv", "samples.csv", "timeline.png"):
        assert (folder / name).is_file(), f"{name} missing from {folder}"
    assert (folder / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((folder / "report.json").read_text())
    figs = doc["figures"]
    attempts = ledger.read_csv(folder / "ledger.csv")
    samples = sampler.read_csv(folder / "samples.csv")

    # The JSON agrees with the raw ledger it was computed from.
    assert figs["attempts"] == len(attempts)
    assert figs["acknowledged"] == sum(a.ok for a in attempts)
    gap = reconcile.longest_gap(attempts, ending_after_s=doc["findings"]["phases"]["fault_s"])
    assert gap is not None and not gap.open, "writes had not resumed by the end of the drill"
    assert figs["write_downtime_s"] == pytest.approx(gap.seconds, abs=1e-3)
    assert figs["non_leader_acks"] == len(reconcile.non_leader_acks(attempts, samples))
    assert figs["split_brain_intervals"] == len(reconcile.merged(reconcile.two_primaries(samples)))
    assert doc["findings"]["lost"] == [] and figs["lost_writes"] == 0, "acknowledged writes lost with synchronous mode on"
    assert figs["duplicate_writes"] == 0

    # The bound comes from the profile's ttl (failovers only), loop_wait and HAProxy rise checks,
    # plus profiles.PROMOTE_S for PostgreSQL itself.
    assert doc["bound"]["seconds"] == pytest.approx(bound_s)
    assert figs["write_downtime_s"] <= bound_s, f"write downtime {figs['write_downtime_s']}s over the bound {bound_s:.1f}s"
    assert figs["split_brain_intervals"] == 0 and figs["non_leader_acks"] == 0, doc["problems"]
    assert doc["healthy_after"] is True
    return doc


def test_switchover_drill(lab, tmp_path):
    old = lab.probe().cluster().leader_name
    out = drill(lab, "switchover", tmp_path / "switchover")
    doc = check_report(tmp_path / "switchover", FAST.switchover_bound_s())
    assert out["runs"][0]["figures"] == doc["figures"]
    assert doc["old_leader"] == old
    assert doc["findings"]["phases"]["new_leader_name"] not in ("", old)
    assert doc["figures"]["timeline_after"] == doc["figures"]["timeline_before"] + 1
    assert_lab_healthy(lab)


def test_kill_leader_drill(lab, tmp_path):
    old = lab.probe().cluster().leader_name
    drill(lab, "kill-leader", tmp_path / "kill-leader")
    doc = check_report(tmp_path / "kill-leader", FAST.failover_bound_s())
    ph = doc["findings"]["phases"]
    assert ph["new_leader_name"] not in ("", old)
    # The old leader's key can only go by expiring: not before the drill saw the fault, not after ttl (+ a reading).
    assert 0 < ph["leader_key_gone"] <= FAST.ttl + 1
    assert doc["figures"]["timeline_after"] > doc["figures"]["timeline_before"]
    assert_lab_healthy(lab)


def test_a_drill_with_another_profile_than_the_lab_is_refused_and_changes_nothing(lab, tmp_path):
    proc = lab.cli("drill", "switchover", "--profile", "seed", "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 1
    assert "runs the fast profile, not seed" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()
