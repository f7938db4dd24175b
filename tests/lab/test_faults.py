"""The new faults on the real cluster (fast profile), each expected outcome derived from the state
and checked against Patroni's REST API, etcd's /sync key, HAProxy and SQL on the nodes."""
from __future__ import annotations

import json
import subprocess

import pytest

from pgha_lab import disks
from pgha_lab.chaos import expectations
from pgha_lab.chaos.experiments import SYNC_TABLE
from pgha_lab.chaos.sql import connect
from pgha_lab.wait import Verdict, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.lab]


def chaos(lab, *args: str, check: bool = True) -> dict:
    proc = lab.cli("chaos", *args, "--json", check=check)
    return json.loads(proc.stdout) if proc.stdout.strip() else {"returncode": proc.returncode, "stderr": proc.stderr}


def leader(lab) -> str | None:
    return lab.probe().cluster().leader_name


def sync_key(lab) -> dict:
    present, value = lab.probe().etcd_read(f"/service/{lab.topo.scope}/sync")
    assert present
    return json.loads(value) if value else {}


def stopped_processes(lab, node: str) -> list[str]:
    """Names of the node's processes in state T (stopped), read from /proc like the tool does."""
    script = r"""for p in /proc/[0-9]*; do awk '/^Name:/ {n=$2} /^State:/ {s=$2} END {if (s == "T") print n}' $p/status 2>/dev/null; done"""
    out = subprocess.run(["docker", "exec", lab.topo.container_name(node), "sh", "-c", script],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def test_frozen_patroni_on_the_leader_fails_over_while_postgres_runs_and_thaw_rejoins(lab):
    old = leader(lab)
    out = chaos(lab, "freeze-patroni", "leader", "--wait")
    assert out["node"] == old and out["happened"] is True, out
    assert "synchronous standby in /sync" in out["expected"]
    assert stopped_processes(lab, old) == ["patroni"]   # only Patroni: PostgreSQL still runs
    assert leader(lab) not in (None, old)
    back = chaos(lab, "thaw-patroni", old, "--wait")
    assert back["happened"] is True and "streams as a" in back["verdict"], back
    assert stopped_processes(lab, old) == []


def test_hung_postgres_on_the_leader_fails_over_in_the_bound_and_release_rejoins(lab):
    old = leader(lab)
    out = chaos(lab, "hang-postgres", "leader", "--wait")
    assert out["happened"] is True, out
    # Patroni's HA loop blocks on its query, the key expires: a failover within the profile's bound.
    assert out["waited_s"] <= lab.ctx.profile.failover_bound_s() + 15, out
    assert "postgres" in stopped_processes(lab, old) and "patroni" not in stopped_processes(lab, old)
    refused = chaos(lab, "hang-postgres", old, check=False)
    assert refused["returncode"] == 1 and "already hangs" in refused["stderr"]
    back = chaos(lab, "release-postgres", old, "--wait")
    assert back["happened"] is True, back


def test_issue_cases_no_failover_without_a_sync_standby_then_the_old_leader_takes_its_key_back(lab):
    old = leader(lab)
    replica = next(m.name for m in lab.probe().cluster().members if m.name != old)
    chaos(lab, "kill", replica)
    # Non-strict synchronous mode: once the replica's member key expires Patroni empties /sync's standby.
    verdict = wait_until(lambda: sync_key(lab).get("sync_standby") in (None, ""), 60)
    assert verdict.ok, sync_key(lab)
    out = chaos(lab, "kill", old)
    assert out["expected"].startswith("No failover"), out["expected"]
    # Both db nodes are off: the cluster is down, and /sync no longer names the replica.
    assert "the cluster is down" in out["expected"] and f"only {old} may take the key" in out["expected"], out
    assert "protects acknowledged writes" in out["expected"]
    # The cluster stays without a leader once the dead leader's key has expired (ttl).
    key = lab.probe().leader_key_path
    assert wait_until(lambda: lab.probe().etcd_read(key) == (True, None), 60).ok, "the leader key never expired"
    # The replica boots while nobody holds the key; /sync does not name it, so it may not take it.
    start_replica = chaos(lab, "start", replica, "--wait")
    assert "may not take it" in start_replica["expected"], start_replica
    assert start_replica["happened"] is True and "held, read-only, as expected" in start_replica["verdict"]
    assert leader(lab) is None
    # The old leader returns: it is the last primary in /sync, so it takes its key back.
    start_old = chaos(lab, "start", old, "--wait")
    assert "takes the key back" in start_old["expected"], start_old
    assert start_old["happened"] is True, start_old
    assert leader(lab) == old


@pytest.mark.parametrize("first, because", [
    ("isolate", "{replica} is off the lab network (isolated): it cannot reach etcd"),
    ("freeze-patroni", "{replica}'s Patroni is frozen: it cannot take the leader key"),
])
def test_the_leader_lost_after_the_lab_impaired_its_replica_is_no_failover(lab, first, because):
    # Issue 26: Patroni still lists the impaired replica as streaming until its member key expires,
    # so its view alone named it the new leader; it cannot take the key.
    old = leader(lab)
    replica = next(m.name for m in lab.probe().cluster().members if m.name != old)
    chaos(lab, first, replica)
    out = chaos(lab, "kill", old, "--wait")
    assert out["expected"].startswith("No failover"), out["expected"]
    assert because.format(replica=replica) in out["expected"], out
    assert out["happened"] is True, out
    assert leader(lab) in (None, old)   # the dead leader's key may outlive it by up to ttl, nobody else's


def test_a_full_disk_on_the_leader_fails_its_writes_without_a_failover_and_freeing_it_ends_that(lab):
    # The key kept past ttl is watched by the fill-disk-leader drill (tests/lab/test_drills.py), which
    # uses this same expectation; here each check is seen failing for its reason, then passing.
    old = leader(lab)
    d = disks.disk(lab.paths, old)
    full = expectations.refuses_writes_for_space(lab.ctx, old, hold_s=0)
    not_yet = full()
    assert not not_yet.ok and not_yet.reason == f"a 2 MiB write on {old} succeeded: its disk is not full", not_yet
    out = chaos(lab, "fill-disk", "leader")
    assert out["node"] == old and out["expected"].startswith("No failover: a full disk is not a lost node."), out
    assert d.usage()[0] < (1 << 20) and out["figures"]["filled_bytes"] > (1 << 30)
    df = subprocess.run(["docker", "exec", lab.topo.container_name(old), "df", "--output=pcent", "/var/lib/postgresql"],
                        capture_output=True, text=True, check=True).stdout
    assert "100%" in df, df   # what a DBA's df on the VM shows
    line = next(x for x in lab.cli("status").stdout.splitlines() if x.startswith("Disks: "))
    shown = dict(entry.split(" ", 1) for entry in line.removeprefix("Disks: ").rstrip(".").split("; "))
    assert " FULL, " in shown[old] and "FULL" not in shown[next(n for n in shown if n != old)], line
    now_full = full()
    assert now_full.ok and "No space left on device" in now_full.reason, now_full
    still_full = expectations.writes_land(lab.ctx, old, lambda: Verdict(True, "x"))()
    assert not still_full.ok and "still fails" in still_full.reason and "No space left" in still_full.reason
    assert leader(lab) == old
    freed = chaos(lab, "free-disk", "leader", "--wait")
    assert freed["happened"] is True and freed["verdict"].endswith(f"a 2 MiB write on {old} succeeds"), freed
    assert d.filler_size() == 0 and leader(lab) == old
    # A replica's full disk is a lost replica; heal-all frees it like any other fault.
    replica = next(n.name for n in lab.topo.db if n.name != old)
    chaos(lab, "fill-disk", replica)
    healed = lab.cli("chaos", "heal-all").stdout
    assert f"freed {replica}'s disk" in healed and disks.disk(lab.paths, replica).filler_size() == 0


def test_cancel_sync_wait_reports_a_commit_visible_without_being_replicated(lab):
    out = chaos(lab, "cancel-sync-wait", "leader", "--wait")
    figs = out["figures"]
    assert figs["acknowledged"] and figs["visible_on_primary"], figs
    assert "canceling wait for synchronous replication" in figs["warning"]
    assert figs["cancelled"] >= 1
    assert out["happened"] is True and f"now has row {figs['row_id']}" in out["verdict"]
    # The row really is on the standby now, read there over SQL.
    with connect(lab.ctx, lab.topo.node(figs["standby"])) as conn:
        assert conn.execute(f"select count(*) from {SYNC_TABLE} where id = %s", (figs["row_id"],)).fetchone()[0] == 1


def test_block_switchover_reports_its_duration_and_what_became_of_the_lock(lab):
    old = leader(lab)
    out = chaos(lab, "block-switchover", "leader", "--wait")
    figs = out["figures"]
    assert figs["new_leader"] != old and leader(lab) == figs["new_leader"]
    assert figs["switchover_s"] > 0 and figs["blocker"].startswith("ended:"), figs
    assert out["happened"] is True


def test_kill_haproxy_drill_measures_the_entry_points_downtime(lab, tmp_path):
    proc = lab.cli("drill", "kill-haproxy", "--json", "--out", str(tmp_path / "d"), check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads(proc.stdout)["runs"][0]
    down = run["figures"]["write_downtime_s"]
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    at = {e["label"]: e["t_s"] for e in report["events"]}
    # Held down 5 s, then started by the drill's heal. The outage runs from the kill to HAProxy's
    # first passing checks after the heal started it: no longer than the kill-to-healed time the drill
    # measured (its docker calls take seconds on a busy host: 7-25 s seen) plus HAProxy's rise checks
    # (inter 1 s + rise 2 x 1 s = 3 s on the fast profile) and a 2 s margin for its start and the writer's
    # next attempt; and never shorter than the hold.
    worst = (at["healed"] - at["fault"]) + 3.0 + 2.0
    assert down is not None and 5.0 <= down <= worst, (down, worst, report["events"])
    assert run["figures"]["lost_writes"] == 0 and run["problems"] == []


def test_bad_requests_for_the_new_faults_are_refused_and_change_nothing(lab):
    before = leader(lab)
    etcd = lab.topo.etcd[0].name
    for args, words in ((("freeze-patroni", etcd), "takes a db node"),
                        (("thaw-patroni", before), "is not frozen"),
                        (("release-postgres", before), "does not hang"),
                        (("start-haproxy",), "only a killed HAProxy can start"),
                        (("kill-haproxy", etcd), "takes no target"),
                        (("cancel-sync-wait", "replica"), "takes the leader"),
                        (("flap", "replica", "--every", "0"), "--every takes seconds"),
                        (("fill-disk", etcd), "takes a db node"),
                        (("free-disk", before), "carries no filler; nothing to free"),
                        (("fill-disk", before, "--leave", "lots"), "--leave takes a size such as 2G or 512M")):
        out = chaos(lab, *args, check=False)
        assert out.get("returncode") == 1 and words in out["stderr"], (args, out)
        assert len(out["stderr"].strip().splitlines()) == 1
    assert leader(lab) == before
