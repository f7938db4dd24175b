"""One switchover, two measurements of its downtime: `pgha-lab switchover` (its own writer) and the
dashboard's write probe (running beside it) state the same interval, from the last write
acknowledged before to the first acknowledged after, and agree within their writers' intervals.
Before, the command printed the time from Patroni's answer to the first write (0.1 s) while the
probe measured the outage (1.6 s)."""
from __future__ import annotations

import re

import pytest

from pgha_lab.drill.ledger import WriterSettings
from pgha_lab.wait import Verdict, wait_until
from pgha_lab.web.writeprobe import SETTINGS as PROBE, WriteProbe

pytestmark = [pytest.mark.docker, pytest.mark.lab, pytest.mark.serial]

# Each writer can see the outage end up to one of its intervals late, and one of them an attempt
# later still: an attempt begun while HAProxy still sends 5432 to the stopped primary waits out its
# connect deadline before the next one is acknowledged (seen: 4.18 s against 3.22 s, 0.96 s apart).
# The old bug (0.1 s against 1.6 s) still fails it.
TOLERANCE_S = (PROBE.interval_s + WriterSettings().interval_s
               + max(PROBE.connect_timeout_s, WriterSettings().connect_timeout_s))


def test_switchover_command_and_write_probe_state_one_downtime(lab):
    ctx = lab.ctx
    old = ctx.cluster().leader_name
    probe = WriteProbe(ctx)
    probe.start()
    try:
        assert wait_until(lambda: Verdict(probe.status().acks >= 5, "probe warming up"), 30).ok
        out = lab.cli("switchover").stdout
        new = ctx.cluster().leader_name
        assert new != old
        landed = wait_until(lambda: Verdict(probe.status().last_outage_s is not None and probe.status().last_server == new,
                                            "the probe has not seen writes resume"), 60)
        assert landed.ok, landed.reason
        seen = probe.status().last_outage_s
    finally:
        probe.stop()
    said = re.search(r"Write downtime (\d+\.\d+) s, from the last write acknowledged before the switchover to the "
                     r"first acknowledged after it: (\S+) at \S+, then (\S+) at", out)
    assert said, out
    assert (said[2], said[3]) == (old, new), said.group(0)
    assert abs(float(said[1]) - seen) <= TOLERANCE_S, (float(said[1]), seen)
