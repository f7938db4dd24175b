"""The bare lab in the state a test needs: booted and unconfigured (as `up --bare` leaves it)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgha_lab.bare import survey

# The bare chain (xdist_group "bare", one worker, one lab) in the order its lab is built on: booted and
# untouched, then built step by step by the track's reference solution (the exported playbook tag by
# tag), then that cluster checked as the playbook's build and driven with the lab's tools. One build
# serves the chain; run alone, test_deploy builds its own (configured_bare_lab).
HERE = Path(__file__).parent
CHAIN = ("test_bare_lab.py", "test_track_solve.py", "test_deploy.py", "test_tools.py")


def pytest_collection_modifyitems(items):
    """The chain's tests together in CHAIN's order, where its first test was collected (the rest as collected)."""
    chain = [item for item in items if item.path.parent == HERE and item.path.name in CHAIN]
    if not chain:
        return
    first = items.index(chain[0])
    rest = [item for item in items if item.path.parent != HERE or item.path.name not in CHAIN]
    items[:] = rest[:first] + sorted(chain, key=lambda item: CHAIN.index(item.path.name)) + rest[first:]


def untouched(lab) -> bool:
    """Nothing built on any node yet: no service configured, enabled or running, no Patroni venv."""
    readings = survey.read(lab.ctx)
    if not survey.booted(readings).ok:
        return False
    if any(r.configured or r.enabled == "enabled" or r.active == "active" for r in readings):
        return False
    return all(lab.sh(n.name, "test ! -e /opt/patroni", check=False).returncode == 0 for n in lab.ctx.topology.db)


@pytest.fixture()
def fresh_bare_lab(bare_lab):
    """The bare lab as `up --bare` leaves it; one a test has built on is made again from nothing."""
    bare_lab.ensure_up()
    if not untouched(bare_lab):
        bare_lab.cli("down", "--volumes")
        bare_lab.up()
    return bare_lab


@pytest.fixture(scope="session")
def playbook_runs():
    """The playbook runs a session made on its bare lab, in order."""
    return []


@pytest.fixture()
def configured_bare_lab(request, bare_lab, playbook_runs):
    """The bare lab built into a cluster by the exported playbook, healthy: the one a test built before
    (also in a run kept with PGHA_TEST_KEEP_LAB), else built now from a fresh bare lab."""
    from pgha_lab.deploy import run_playbook
    from pgha_lab.wait import wait_until
    bare_lab.ensure_up()
    if not survey.configured(survey.read(bare_lab.ctx)):
        request.getfixturevalue("fresh_bare_lab")
        ran = run_playbook(bare_lab.ctx)
        playbook_runs.append(ran)
        assert ran.ok and ran.changed > 0 and set(ran.hosts) == set(bare_lab.ctx.topology.names), ran
        print(f"figure: playbook, bare lab to cluster {ran.seconds:.0f} s, load {os.getloadavg()[0]:.1f}")
    verdict = wait_until(bare_lab.ctx.health, 180, interval_s=1.0)
    assert verdict.ok, f"the playbook-built lab is not healthy: {verdict.reason}"
    return bare_lab
