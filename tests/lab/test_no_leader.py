"""With no leader the lab says so, everywhere a learner looks: `status` lists every member of the
topology, running or not, with Docker's state where Patroni cannot say, under a first line "no
leader: writes are refused"; `psql` on the primary port refuses with that sentence instead of
libpq's "server closed the connection unexpectedly".

The state is held still on purpose: the replica's Patroni frozen (SIGSTOP) before the leader is
killed, so nobody can take the key and the lab stays without a leader for as long as the test reads."""
from __future__ import annotations

import json

import pytest

from pgha_lab import health
from pgha_lab.chaos.actions import Chaos
from pgha_lab.health import NO_LEADER
from pgha_lab.wait import Verdict, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.lab]


def no_leader(lab) -> tuple[str, str]:
    """Freeze the replica's Patroni, power the leader off; (the old leader, the frozen replica)."""
    ctx = lab.ctx
    cluster = ctx.cluster()
    old, other = cluster.leader_name, cluster.replicas[0].name
    chaos = Chaos(ctx)
    chaos.run("freeze-patroni", other)
    chaos.run("kill", old)
    # HAProxy marks the dead leader DOWN after fall x inter (3 s in the fast profile).
    gone = wait_until(lambda: Verdict(not health.servers_up(ctx.probe.haproxy()), "5432 still routed"), 60)
    assert gone.ok, gone.reason
    return old, other


def test_status_and_psql_say_no_leader_and_list_every_member(lab):
    old, other = no_leader(lab)

    out = lab.cli("status").stdout
    assert out.splitlines()[0].startswith(NO_LEADER), out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| dbnode")}
    assert set(rows) == {n.name for n in lab.topo.db}, "every member of the topology, running or not"
    assert "stopped (Docker: exited 137)" in rows[old], rows[old]
    assert "8464" not in rows[old] and "streaming" not in rows[old]

    doc = json.loads(lab.cli("status", "--json").stdout)
    assert doc["writes"]["ok"] is False and doc["writes"]["text"].startswith(NO_LEADER)
    assert [m["name"] for m in doc["members"]] == [n.name for n in lab.topo.db]

    refused = lab.cli("psql", "--", "-c", "select 1", check=False)
    assert refused.returncode == 1, refused
    assert refused.stderr.startswith(f"pgha-lab: {NO_LEADER}") and refused.stderr.count("\n") == 1, refused.stderr
    assert "server closed the connection" not in refused.stderr
    # Reads through the replicas' port are not what is refused.
    assert lab.cli("psql", "--replica", "--", "-tAc", "select 1", check=False).stderr.count(NO_LEADER) == 0
