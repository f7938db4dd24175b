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
    if not untouched(bare_lab):
        bare_lab.cli("down", "--volumes")
        bare_lab.up()
    return bare_lab
