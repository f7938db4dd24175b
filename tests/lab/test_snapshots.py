"""Snapshots on the real lab: a restore brings back every node's file system (a file added and one
removed since), etcd's keys and PostgreSQL's rows as they were at the save, and boots the lab healthy;
bad requests are one sentence and change nothing."""
from __future__ import annotations

import json

import pytest

from pgha_lab import snapshots
from pgha_lab.lessons import sql
from pgha_lab.wait import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.lab]

ETCD_KEY = "/pgha-lab-test/snapshot"


@pytest.fixture()
def snap_lab(healthy_lab):
    yield healthy_lab
    ctx = healthy_lab.ctx
    restored = any(ctx.docker.origin_image(n)[1] for n in ctx.topology.names)
    snapshots.delete_all(ctx.paths, ctx.docker)
    if restored:
        # A restored lab runs the snapshot's images; put it back on the lab's own, data kept, so the
        # tests after this one find the lab as `up` left it.
        ctx.docker.compose("up", "-d", "--force-recreate")
        assert wait_until(ctx.health, 180, interval_s=1.0).ok


def ectl(ctx, *args: str) -> str:
    return ctx.docker.exec("etcd1", "ectl", *args).stdout.strip()


def sh(ctx, node: str, script: str) -> str:
    return ctx.docker.exec(node, "sh", "-c", script, check=False).stdout.strip()


def started_at(ctx) -> dict[str, str]:
    return {n: ctx.docker.started_at(n) for n in ctx.topology.names}


def test_restore_puts_back_files_keys_and_rows(snap_lab):
    ctx = snap_lab.ctx
    ectl(ctx, "put", ETCD_KEY, "before")
    sh(ctx, "dbnode2", "echo kept > /root/before-save")
    row_before, _ = sql.write_marker(ctx, "before the snapshot")

    saved = snapshots.save(ctx, "t1")
    assert saved.verdict.ok, saved.verdict.reason
    assert sorted(saved.booted) == sorted(ctx.topology.names)
    assert saved.manifest.healthy is True and all(n.volumes for n in saved.manifest.nodes if n.role != "haproxy")

    # Everything the save kept, changed afterwards: a key, a file removed and one added, a row.
    ectl(ctx, "put", ETCD_KEY, "after")
    sh(ctx, "dbnode2", "rm /root/before-save; echo new > /root/after-save")
    row_after, _ = sql.write_marker(ctx, "after the snapshot")

    restored = snapshots.restore(ctx, "t1")
    assert restored.verdict.ok, restored.verdict.reason
    assert ctx.health().ok
    assert ectl(ctx, "get", "--print-value-only", ETCD_KEY) == "before"
    assert sh(ctx, "dbnode2", "cat /root/before-save; ls /root") == "kept\nbefore-save"
    assert sql.marker_present(ctx, row_before) and not sql.marker_present(ctx, row_after)

    listed = json.loads(snap_lab.cli("snapshot", "list", "--json").stdout)
    assert [(r["name"], r["complete"], r["healthy"]) for r in listed] == [("t1", True, True)]
    snap_lab.cli("snapshot", "delete", "t1")
    assert snapshots.list_all(ctx) == [] and not ctx.docker.volumes_labelled(
        f"{snapshots.LABEL_SNAPSHOT_PROJECT}={ctx.project}")


def test_bad_requests_are_one_sentence_and_change_nothing(snap_lab):
    ctx = snap_lab.ctx
    saved = snapshots.save(ctx, "t2")
    assert saved.verdict.ok, saved.verdict.reason
    before = started_at(ctx)

    def refused(*args: str) -> str:
        proc = snap_lab.cli("snapshot", *args, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pgha-lab: "), proc.stderr
        return lines[0]

    assert "has a snapshot 't2' already" in refused("save", "t2")
    assert "has no snapshot 'nope'; its snapshots are t2" in refused("restore", "nope")
    assert "a snapshot name is up to 40" in refused("save", "Bad/Name")

    # A snapshot of another shape (the manifest says three db nodes) is refused before anything stops.
    manifest = snapshots.folder(ctx, "t2") / snapshots.MANIFEST
    doc = json.loads(manifest.read_text())
    doc["shape"]["dbNodes"] = 3
    manifest.write_text(json.dumps(doc))
    line = refused("restore", "t2")
    assert "the snapshot is of a lab with 3 etcd members, 3 db nodes" in line and "this lab has 3 etcd members, 2 db nodes" in line

    doc["shape"]["dbNodes"] = 2
    manifest.write_text(json.dumps(doc))
    ctx.docker.remove_volumes([saved.manifest.node("etcd3").volumes[0].copy])
    assert "snapshot 't2' is incomplete: the engine no longer has pgha-lab-snapshot_" in refused("restore", "t2")

    ctx.docker.pause("haproxy")
    try:
        assert "haproxy is paused" in refused("save", "t3")
    finally:
        ctx.docker.unpause("haproxy")
    assert started_at(ctx) == before, "a refused request restarted a node"
    assert [m.name for m in snapshots.list_all(ctx)] == ["t2"]
