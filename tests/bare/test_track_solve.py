"""The track's reference solution on a real bare lab, through the command line: `track solve N --apply`
refuses a step whose earlier steps fail (running nothing); then, for each step in order, its check
fails for its stated reason and the step's solution (the exported playbook's tag, the course's
commands for step 7) makes it pass; at the end every step passes at once. One bare lab, no reset."""
from __future__ import annotations

import json
import os
import time

import pytest

from pgha_lab.lessons import progress
from pgha_lab.track import course

# The bare chain (tests/bare/conftest.py's CHAIN): the cluster it builds here, tag by tag, is the one
# test_deploy and test_tools then check, so the chain builds it once.
pytestmark = [pytest.mark.docker, pytest.mark.lab, pytest.mark.xdist_group("bare")]

# step -> the known mistake or state its check names first, with the steps before it solved
BEFORE = {1: "hostname", 2: "missing-file", 3: "not-configured", 4: "no-data-dir", 5: "no-patroni",
          6: "haproxy-bind", 7: "no-switchover"}


def test_each_step_fails_then_its_reference_solution_passes_it(fresh_bare_lab):
    lab = fresh_bare_lab
    progress.forget(lab.paths, progress.TRACK_FILE)
    run_log = lab.paths.state / "ansible" / "last-run.log"
    ran_before = run_log.stat().st_mtime_ns if run_log.exists() else None

    # A step on top of one that fails is refused in one sentence, and nothing runs.
    proc = lab.cli("track", "solve", "3", "--apply", check=False)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr.startswith("pgha-lab: step 1 does not pass yet (etcd1's hostname is 'ubuntu'"), proc.stderr
    assert proc.stderr.rstrip().endswith("and step 3 builds on it: do step 1 first (`pgha-lab track check 1` says "
                                         "what is wrong), or `pgha-lab track solve 1 --apply`."), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert (run_log.stat().st_mtime_ns if run_log.exists() else None) == ran_before

    figures = []
    started = time.monotonic()
    for step, diagnosis in BEFORE.items():
        before = course.check(lab.ctx, [step]).verdicts[0]
        assert not before.passed and before.findings[0].diagnosis == diagnosis, (step, before.as_dict())
        proc = lab.cli("track", "solve", str(step), "--apply", "--json", check=False)
        assert proc.returncode == 0, f"step {step}:\n{proc.stdout}\n{proc.stderr}"
        doc = json.loads(proc.stdout)
        assert doc["step"] == step and doc["check"]["passed"] is True, doc
        assert (doc["tag"] is None) == (step == 7) and (doc["playbook"] is None) == (step == 7), doc
        figures.append(f"step {step}: check failing {before.seconds:.1f}s, solve --apply {doc['seconds']:.0f}s "
                       f"(check passing {doc['check']['seconds']:.1f}s)")
        print(figures[-1], "|", "; ".join(doc["done"]))
    print(f"figure: solve --apply 1..7 (each with its checks before and after) {time.monotonic() - started:.0f}s, "
          f"load {os.getloadavg()[0]:.1f}")

    # Applied in order, every step passes at once (step 7's failover left steps 5 and 6 whole).
    proc = lab.cli("track", "check", "--json", check=False)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["passed"], [s for s in doc["steps"] if not s["passed"]]
    print("figure: check of a built lab " + ", ".join(f"{s['step']}: {s['seconds']:.1f}s" for s in doc["steps"]))
    assert sorted(course.load(lab.ctx).passed) == list(BEFORE)
