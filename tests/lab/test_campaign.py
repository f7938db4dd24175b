"""A CI-sized campaign on the real cluster: randomized faults against several clients, the history
judged by the independent checker, whose verdict the test asserts."""
from __future__ import annotations

import json

import pytest

from pgha_lab.check import checker
from pgha_lab.check.history import FinalState, load_finals, load_history
from pgha_lab.drill import sampler

pytestmark = [pytest.mark.docker, pytest.mark.lab]

# Seed 6 over 2.5 minutes draws an HAProxy kill, a hung leader PostgreSQL, an etcd member power
# cut and a frozen leader Patroni, some striking while another heals.
SEED, MINUTES = "6", "2.5"


# serial: a schedule of faults on a clock: other labs' load would shift its timings and its readings
@pytest.mark.serial
def test_ci_campaign_loses_no_acknowledged_write_and_never_has_two_primaries(lab, tmp_path):
    out = tmp_path / "campaign"
    proc = lab.cli("drill", "campaign", "--minutes", MINUTES, "--seed", SEED, "--profile", "fast",
                   "--out", str(out), "--json", check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    injected = [r for r in doc["timeline"] if not r["skipped"]]
    assert len(injected) >= 4, doc["timeline"]
    assert doc["healthy_after"] is True
    assert doc["verdict"]["clean"] is True, doc["verdict"]["summary"]
    assert doc["lost"] == 0 and doc["single_acker"] == 0
    assert doc["surprises"] == [], doc["surprises"]   # every fault's state-derived expectation was seen
    assert doc["counts"]["ok"] > 500 and doc["counts"]["fail"] + doc["counts"]["unknown"] > 0   # faults bit
    # The primary and every replica were read, each directly on its own node.
    sources = {f["source"] for f in json.loads((out / "finals.json").read_text())}
    assert "primary" in sources and len(sources) == len(lab.topo.db), sources
    assert (out / "timeline.png").stat().st_size > 10_000
    # The drill's readings over the whole campaign: every db node's role, and a leader change the
    # faults forced (the frozen leader Patroni) seen in the leader key.
    samples = sampler.read_csv(out / "samples.csv")
    assert {s.node for s in samples if s.source == sampler.PATRONI} == {n.name for n in lab.topo.db}
    holders = {s.value for s in samples if s.source == sampler.ETCD and s.answered and s.value}
    assert len(holders) >= 2, holders
    assert "## Checker verdict" in (out / "report.md").read_text()

    # The verdict comes from the real history: one acknowledged write taken out of the primary's
    # final rows must turn it into exactly one lost write.
    history = load_history(out / "history.jsonl")
    finals = load_finals(out / "finals.json")
    primary = next(f for f in finals if f.source == "primary")
    acked = next(op for op in history.operations if op.op == "write" and op.ok)
    rows = {k: [v for v in vals if not (k == acked.key and v == acked.value)] for k, vals in primary.rows.items()}
    tampered = [FinalState("primary", rows), *(f for f in finals if f.source != "primary")]
    verdict = checker.check(history.operations, tampered)
    assert verdict.count(checker.LOST) == 1 and not verdict.clean
