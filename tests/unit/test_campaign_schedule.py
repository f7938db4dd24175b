"""The campaign's schedule: reproducible from its seed, within its length, refusing bad input."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pgha_lab.drill import campaign
from pgha_lab.errors import LabError
from pgha_lab.topology import Topology


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another():
    faults = tuple(campaign.CATALOGUE)
    a = campaign.schedule(42, 10, faults)
    assert a == campaign.schedule(42, 10, faults)
    assert a != campaign.schedule(43, 10, faults)
    assert len(a) >= 10


def test_every_fault_starts_after_the_warmup_and_heals_before_the_end():
    for seed in range(20):
        steps = campaign.schedule(seed, 3, tuple(campaign.CATALOGUE))
        assert steps, seed
        assert steps[0].at_s >= campaign.WARMUP_S
        assert all(a.at_s < b.at_s for a, b in zip(steps, steps[1:]))
        for s in steps:
            assert (s.heal_s or s.at_s + campaign.INSTANT_S) <= 3 * 60 - campaign.TAIL_S
            assert s.fault in campaign.CATALOGUE


def test_faults_overlap_sometimes_a_fault_strikes_while_the_previous_heals():
    steps = campaign.schedule(42, 10, tuple(campaign.CATALOGUE))
    gaps = [b.at_s - (a.heal_s or a.at_s + campaign.INSTANT_S) for a, b in zip(steps, steps[1:])]
    assert any(g <= 5 for g in gaps) and any(g >= 20 for g in gaps)


def test_only_the_chosen_faults_are_drawn():
    steps = campaign.schedule(1, 5, ("kill-haproxy", "switchover"))
    assert {s.fault for s in steps} <= {"kill-haproxy", "switchover"}


def test_bad_input_is_one_sentence():
    with pytest.raises(LabError, match="unknown fault 'nope'"):
        campaign.parse_faults("kill-leader,nope")
    with pytest.raises(LabError, match="--minutes takes a length"):
        campaign.check_minutes(0)
    with pytest.raises(LabError, match="unknown fault 'fill-disk'"):
        campaign.parse_faults("fill-disk")


def test_a_fault_the_topology_cannot_take_is_refused():
    # With one etcd member, killing it loses the quorum: not the fault kill-etcd stands for.
    small = Topology.build(project="t", etcd_nodes=1)
    with pytest.raises(LabError, match="kill-etcd needs 1 db node\\(s\\) and 3 etcd member"):
        campaign.parse_faults("kill-etcd", small)
    assert campaign.parse_faults("kill-leader", small) == ("kill-leader",)
    # A full disk needs the lab's own disks, and joins a campaign only when named.
    with pytest.raises(LabError, match="fill-disk-leader needs db nodes with their own disks .* would fill the host's"):
        campaign.parse_faults("fill-disk-leader", Topology.build(project="t"))
    disky = Topology.build(project="t", db_disk_size=2 << 30)
    assert campaign.parse_faults("fill-disk-leader,kill-leader", disky) == ("fill-disk-leader", "kill-leader")
    assert "fill-disk-leader" not in campaign.parse_faults(None, disky)


def test_dry_run_prints_the_schedule_and_needs_no_lab(tmp_path):
    cmd = [sys.executable, "-m", "pgha_lab", "--home", str(tmp_path), "drill", "campaign", "--minutes", "10",
           "--seed", "42", "--dry-run"]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert first.stdout == subprocess.run(cmd, capture_output=True, text=True).stdout
    assert "campaign seed 42" in first.stdout and "kill-" in first.stdout
    bad = subprocess.run(cmd[:-1] + ["--faults", "nope", "--dry-run"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown fault 'nope'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_the_report_carries_the_drills_readings_and_timeline(tmp_path):
    """Pure: a finished campaign's result, written. The readings go to samples.csv in the drill's
    format and the timeline draws them (role bands) beside the faults and the write rates."""
    from pgha_lab.check.history import HistoryWriter, Operation
    from pgha_lab.drill import report, sampler
    from pgha_lab.drill.clock import Clock

    steps = campaign.schedule(6, 2.5, tuple(campaign.CATALOGUE))
    result = campaign.CampaignResult(6, 2.5, tuple(campaign.CATALOGUE), "r1", "fast", steps, clock=Clock())
    result.records = [campaign.FaultRecord(s, injected_s=s.at_s, healed_s=s.heal_s, target="dbnode1",
                                           happened=True) for s in steps]
    result.duration_s = 150.0
    result.samples = [sampler.Sample(t / 2, sampler.PATRONI, node, "primary" if (node == "dbnode1") == (t < 100)
                                     else "replica", "running") for t in range(300) for node in ("dbnode1", "dbnode2")]
    result.samples += [sampler.Sample(t / 2, sampler.ETCD, value="dbnode1" if t < 100 else "dbnode2")
                       for t in range(300)]
    with HistoryWriter(tmp_path / "history.jsonl") as history:
        for i in range(300):
            history.record(Operation("write", "w1", "w1", i, i / 2, i / 2 + 0.01, "ok" if i % 50 else "fail"))
    paths = report.write_campaign(result, tmp_path)
    back = sampler.read_csv(paths["samples"])
    assert len(back) == len(result.samples) and {s.value for s in back if s.source == sampler.ETCD} == {
        "dbnode1", "dbnode2"}
    assert paths["png"].stat().st_size > 10_000
    assert "## Checker verdict" in paths["report"].read_text()
