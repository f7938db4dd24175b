"""The bare lab in the state a test needs: booted and unconfigured (as `up --bare` leaves it)."""
from __future__ import annotations

import pytest

from pgha_lab.bare import survey


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
        playbook_runs.append(run_playbook(bare_lab.ctx))
    verdict = wait_until(bare_lab.ctx.health, 180, interval_s=1.0)
    assert verdict.ok, f"the playbook-built lab is not healthy: {verdict.reason}"
    return bare_lab
