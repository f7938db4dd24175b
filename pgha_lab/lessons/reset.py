"""`lesson reset`: back to the healthy baseline every lesson starts from, in seconds, without
re-initialising the cluster where it can.

The baseline: every node running and on the lab network without chaos rules; Patroni's dynamic
configuration equal to what the lab bootstrapped with, in the lab's timing profile; no member
waiting for a restart; the first db node leading with the second as synchronous standby; no table
a lesson created; HAProxy routing both ports accordingly. Only when Patroni cannot bring a member
back (a replica that will not start, a cluster without a leader) is a replica re-initialised or,
as the last resort, the lab re-created (`down --volumes` + `up`). A lab a lesson grew (lesson 11
adds a db node) shrinks back to the size it had when that lesson began.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import psycopg

from pgha_lab import health, lifecycle, roles
from pgha_lab.chaos.actions import Chaos
from pgha_lab.context import LabContext, load_topology
from pgha_lab.errors import LabError, first_line
from pgha_lab.gateway import volume_name
from pgha_lab.lessons import progress as lesson_progress
from pgha_lab.lessons import sql
from pgha_lab.profiles import PATRONI_MIN_LOOP_WAIT
from pgha_lab.render import patroni as patroni_render
from pgha_lab.term.progress import Progress
from pgha_lab.topology import Topology
from pgha_lab.wait import Verdict, wait_until

LEADER_DEADLINE_S = 60.0      # a killed leader's key lives up to ttl before anyone may take over
STREAMING_DEADLINE_S = 60.0   # a rejoining member may need pg_rewind first
HEALTH_DEADLINE_S = 60.0
REJOIN_GRACE_S = 5.0          # how long a healed member may sit in "stopping" before it is power-cycled


@dataclass
class ResetReport:
    steps: list[str] = field(default_factory=list)
    recreated: bool = False
    resized: bool = False     # the lab's topology changed (a grown lab shrank): callers re-open their context
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "recreated": self.recreated, "resized": self.resized,
                "seconds": round(self.seconds, 1)}


def baseline_config(ctx: LabContext) -> dict[str, Any]:
    """The dynamic configuration the lab bootstraps with, in its current timing profile."""
    node = ctx.topology.db[0]
    return patroni_render.settings(ctx.topology, node, ctx.profile)["bootstrap"]["dcs"]


def config_patch(live: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The PATCH /config body that turns `live` into `wanted`: changed keys set, extra keys nulled
    (Patroni removes a key patched to null, as `patronictl edit-config` does when a line is deleted)."""
    patch: dict[str, Any] = {}
    for key, value in wanted.items():
        have = live.get(key)
        if isinstance(value, dict) and isinstance(have, dict):
            sub = config_patch(have, value)
            if sub:
                patch[key] = sub
        elif have != value:
            patch[key] = value
    for key in live:
        if key not in wanted:
            patch[key] = None
    return patch


def _leader_node(ctx: LabContext):
    name = ctx.cluster().leader_name
    return ctx.topology.node(name) if name else None


def _has_leader(ctx: LabContext) -> Verdict:
    leader = ctx.cluster().leader
    if leader is None or leader.state != "running":
        return Verdict(False, "no running leader yet")
    return Verdict(True, f"{leader.name} leads")


def reset_config(ctx: LabContext) -> dict[str, Any]:
    """The configuration the reset runs with while it waits on Patroni: the baseline, with HA loops
    every second, so a rejoined member is named synchronous standby within a second instead of
    within the profile's loop_wait (10 s with seed timings, twice per reset). Only loop_wait
    changes: ttl and retry_timeout, which decide when a leader is given up, stay the lab's."""
    return {**baseline_config(ctx), "loop_wait": PATRONI_MIN_LOOP_WAIT}


def patch_config(ctx: LabContext, wanted: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """PATCH /config to `wanted` through the leader, then wake every other member with the same
    (now empty) PATCH: Patroni runs a member's HA loop at once on any PATCH /config it receives,
    so each reads the change now rather than after its current loop_wait. (The patch sent, the
    configuration it was computed from.)"""
    node = _leader_node(ctx)
    if node is None:
        raise LabError("no leader to restore Patroni's configuration through.")
    code, live = ctx.probe.rest(node, "/config")
    if code != 200:
        raise LabError(f"could not read Patroni's configuration from {node.name} (HTTP {code}).")
    patch = config_patch(live, wanted)
    if not patch:
        return {}, live
    r = ctx.probe.rest_change(node, "PATCH", "/config", patch, ctx.restapi_auth, timeout=10)
    if r.status_code != 200:
        raise LabError(f"Patroni refused to restore its configuration: {r.text.strip() or r.status_code}.")
    for other in ctx.topology.db:
        if other.name != node.name:
            try:
                ctx.probe.rest_change(other, "PATCH", "/config", patch, ctx.restapi_auth, timeout=5)
            except LabError:
                pass   # a member that does not answer reads the change on its own next loop
    return patch, live


def restore_config(ctx: LabContext) -> tuple[list[str], list[str]]:
    """PATCH /config back to the baseline (with the reset's quick loop); (what was done, the
    PostgreSQL parameters it changed)."""
    patch, live = patch_config(ctx, reset_config(ctx))
    drifted = config_patch(live, baseline_config(ctx))   # what a learner changed, not the reset's quick loop
    parameters = sorted(((patch.get("postgresql") or {}).get("parameters") or {}))
    return ([f"restored Patroni's dynamic configuration ({', '.join(sorted(drifted))})"] if drifted else []), parameters


def pending_restart(ctx: LabContext) -> list[str]:
    """Members whose PostgreSQL has a changed parameter it applies only at a restart. Asked of
    PostgreSQL (pg_settings.pending_restart) rather than Patroni, whose flag follows a loop later."""
    out = []
    for node in ctx.topology.db:
        try:
            with sql.connect_node(ctx, node.name) as conn:
                if conn.execute("select count(*) from pg_settings where pending_restart").fetchone()[0]:
                    out.append(node.name)
        except psycopg.Error:
            continue   # a member that does not answer has nothing pending that a restart would apply
    return out


def restart_pending(ctx: LabContext) -> list[str]:
    done = []
    for name in pending_restart(ctx):
        node = ctx.topology.node(name)
        r = ctx.probe.rest_change(node, "POST", "/restart", {}, ctx.restapi_auth, timeout=90)
        if r.status_code != 200:
            raise LabError(f"Patroni on {name} refused the restart: {r.text.strip() or r.status_code}.")
        done.append(f"restarted {name} (pending restart)")
    return done


def _must(verdict: Verdict, what: str) -> None:
    if not verdict.ok:
        raise LabError(f"{what}: {verdict.reason}.")


def _baseline_leader(ctx: LabContext) -> str:
    return ctx.topology.db[0].name


def baseline_verdict(ctx: LabContext, config: dict[str, Any] | None = None) -> Verdict:
    """Whether the lab is at the lessons' healthy baseline now, and if not, what differs (`config`:
    the dynamic configuration to expect instead of the baseline's, as the reset runs with)."""
    for node in ctx.topology.nodes:
        state = ctx.docker.state(node)
        if not state.running or not state.on_lab_network:
            where = "" if state.on_lab_network else ", off the network"
            return Verdict(False, f"{node.name} is {state.status}{where}", node.name)
    stray_volumes = sorted(v for v in ctx.docker.volumes() if v.endswith("-data")
                           and v not in {volume_name(ctx.project, n.name) for n in ctx.topology.nodes})
    if stray_volumes:
        return Verdict(False, f"data volumes of nodes no longer in the lab: {', '.join(stray_volumes)}")
    verdict = ctx.health()
    if not verdict.ok:
        return verdict
    cluster = ctx.cluster()
    strangers = [m.name for m in cluster if m.name not in {n.name for n in ctx.topology.db}]
    if strangers:
        return Verdict(False, f"{', '.join(strangers)} is registered with Patroni but not part of the lab")
    first, second = ctx.topology.db[0].name, ctx.topology.db[1].name
    if cluster.leader_name != first:
        return Verdict(False, f"{cluster.leader_name} leads, not {first}")
    if second not in [m.name for m in cluster.sync_standbys]:
        return Verdict(False, f"{second} is not the synchronous standby")
    code, live = ctx.probe.rest(ctx.topology.db[0], "/config")
    patch = config_patch(live, config or baseline_config(ctx)) if code == 200 else {"?": None}
    if patch:
        return Verdict(False, f"Patroni's configuration differs from the baseline in {', '.join(sorted(patch))}")
    pending = pending_restart(ctx)
    if pending:
        return Verdict(False, f"{', '.join(pending)} waits for a restart")
    try:
        stray = sql.stray_tables(ctx)
    except psycopg.Error as exc:   # HAProxy may still be moving 5432: a reading, not a failure
        return Verdict(False, f"SQL through HAProxy failed: {first_line(exc)}")
    if stray:
        return Verdict(False, f"lesson tables left: {', '.join(stray)}")
    return Verdict(True, f"baseline: {first} leads, {second} synchronous standby, "
                         f"{ctx.profile.name} timings, no faults")


def _restore(ctx: LabContext, report: ResetReport, note: Callable[[str], None]) -> None:
    def did(lines: list[str]) -> None:
        for line in lines:
            report.steps.append(line)
            note(line)

    did(Chaos(ctx).heal_all())
    _must(wait_until(lambda: _has_leader(ctx), LEADER_DEADLINE_S), "Patroni elected no leader")
    restored, changed_parameters = restore_config(ctx)
    did(restored)
    did(power_cycle_stuck(ctx))
    expected = [n.name for n in ctx.topology.db]
    verdict = wait_until(lambda: health.assess_patroni(ctx.cluster(), expected), STREAMING_DEADLINE_S)
    stuck = ctx.cluster().member(verdict.culprit) if not verdict.ok and verdict.culprit else None
    if stuck is not None and stuck.name != ctx.cluster().leader_name and stuck.state != "streaming":
        # Patroni could not bring this replica back in a minute (a failed rewind, a broken data
        # directory): clone it afresh from the leader, as `patronictl reinit` does.
        did([roles.reinit(ctx, stuck.name)])
        verdict = wait_until(lambda: health.assess_patroni(ctx.cluster(), expected), STREAMING_DEADLINE_S)
    _must(verdict, "the members did not all stream again")
    if changed_parameters:
        # A member reads changed parameters on its next HA loop; only then can it flag a restart.
        wait_until(lambda: parameters_read(ctx, changed_parameters), 3 * ctx.profile.loop_wait + 10)
    restarted = restart_pending(ctx)
    did(restarted)
    if restarted:
        _must(wait_until(lambda: health.assess_patroni(ctx.cluster(), [n.name for n in ctx.topology.db]),
                         STREAMING_DEADLINE_S), "the restarted members did not stream again")
    first = _baseline_leader(ctx)
    if ctx.cluster().leader_name != first:
        change = roles.request_change(ctx, "switchover", first)
        roles.wait_for_writes(ctx, change, HEALTH_DEADLINE_S)
        did([f"switched over from {change.old_leader} back to {first}"])
    stray = sql.stray_tables(ctx)
    if stray:
        sql.drop_tables(ctx, stray)
        did([f"dropped {', '.join(stray)}"])
    quick = reset_config(ctx)
    _must(wait_until(lambda: baseline_verdict(ctx, quick), HEALTH_DEADLINE_S), "the lab did not reach its baseline")
    patch_config(ctx, baseline_config(ctx))   # the profile's loop_wait back
    _must(wait_until(lambda: baseline_verdict(ctx), HEALTH_DEADLINE_S), "the lab did not reach its baseline")


def stopping_members(ctx: LabContext) -> list[str]:
    """Members whose Patroni reports PostgreSQL still stopping. A leader cut off from the network
    demotes with a fast shutdown that waits for its walsender to the unreachable standby, up to
    wal_sender_timeout (60 s) even after the cable is back, since the dead connection is only
    retransmitted into."""
    stuck = []
    for node in ctx.topology.db:
        code, doc = ctx.probe.rest(node, "/patroni")
        if code in (200, 503) and doc.get("state") == "stopping":
            stuck.append(node.name)
    return stuck


def power_cycle_stuck(ctx: LabContext) -> list[str]:
    """Power-cycle the members that are still stopping PostgreSQL a few seconds after the heal:
    they hold no leader key, and a restart (crash recovery, then pg_rewind) rejoins them in
    seconds instead of after wal_sender_timeout."""
    def none_stopping() -> Verdict:
        stuck = stopping_members(ctx)
        return Verdict(not stuck, f"{', '.join(stuck)} still stopping PostgreSQL" if stuck else "none stopping")

    if wait_until(none_stopping, REJOIN_GRACE_S).ok:
        return []
    done = []
    leader = ctx.cluster().leader_name
    for name in stopping_members(ctx):
        if name == leader:
            continue
        node = ctx.topology.node(name)
        ctx.docker.kill(node)
        ctx.docker.start(node)
        done.append(f"power-cycled {name} (PostgreSQL's shutdown was waiting for a walsender to the standby "
                    "it lost, up to wal_sender_timeout)")
    return done


def parameters_read(ctx: LabContext, names: list[str]) -> Verdict:
    """Every member has read the restored parameters: each runs the baseline value, or PostgreSQL
    flags it pending_restart (Patroni rewrites postgresql.conf and reloads on its next HA loop)."""
    wanted = baseline_config(ctx)["postgresql"]["parameters"]
    for node in ctx.topology.db:
        for name in names:
            try:
                value, pending, source = sql.setting(ctx, node.name, name)
            except psycopg.Error as exc:
                return Verdict(False, f"{node.name}: {first_line(exc)}", node.name)
            if pending:
                continue
            if name in wanted and value.lower() != str(wanted[name]).lower():
                return Verdict(False, f"{node.name} still runs {name} = {value}", node.name)
            if name not in wanted and source == "configuration file":
                return Verdict(False, f"{node.name} still sets {name} = {value}", node.name)
    return Verdict(True, "every member read the restored parameters")


def grown_from(ctx: LabContext) -> int | None:
    """The db node count the started lesson grew the lab from (it keeps it as db_nodes_before),
    when the lab is bigger now; a lab the user grew themselves is theirs and keeps its size."""
    current = lesson_progress.load(ctx.paths).current
    before = int(current.state.get("db_nodes_before") or 0) if current else 0
    return before if 0 < before < len(ctx.topology.db) else None


def resized(ctx: LabContext, db_nodes: int) -> LabContext:
    """The same lab with `db_nodes` db nodes (the first ones keep their names and addresses)."""
    return ctx.with_topology(Topology.from_dict({**ctx.topology.to_dict(), "dbNodes": db_nodes}))


def shrink(ctx: LabContext, db_nodes: int, pg_install: str = "auto") -> tuple[LabContext, list[str]]:
    """Take the lab back to `db_nodes` db nodes with `up` (which hands the leader on and removes the
    extra nodes' containers, data volumes and member keys); healed first, as `up` needs a lab that
    can switch over."""
    smaller = resized(ctx, db_nodes)
    removed = [n.name for n in ctx.topology.db[db_nodes:]]
    steps = Chaos(ctx).heal_all()
    lifecycle.bring_up(smaller, profile=None, pg_install=pg_install, progress=Progress(quiet=True))
    steps.append(f"removed {', '.join(removed)} (container, data volume, member key): back to {db_nodes} db nodes")
    return smaller, steps


def reset(ctx: LabContext, note: Callable[[str], None] = lambda _: None, pg_install: str = "auto",
          recreate_progress: Progress | None = None) -> ResetReport:
    """Bring the lab to the baseline; re-create it only when Patroni cannot get there itself."""
    if not ctx.docker.containers():
        raise LabError(f"lab {ctx.project!r} has no containers; start it with `pgha-lab up`.")
    started = time.monotonic()
    report = ResetReport()
    ctx = ctx.with_topology(load_topology(ctx.paths))   # the lab's shape now: a lesson may have grown it since
    before = grown_from(ctx)
    if before is not None:
        ctx, steps = shrink(ctx, before, pg_install)
        report.resized = True
        for line in steps:
            report.steps.append(line)
            note(line)
    try:
        _restore(ctx, report, note)
    except LabError as exc:
        note(f"could not restore in place ({exc}); re-creating the lab")
        report.steps.append(f"re-created the lab: {exc}")
        report.recreated = True
        progress = recreate_progress or Progress(quiet=True)
        lifecycle.take_down(ctx, volumes=True, progress=progress)
        lifecycle.bring_up(ctx, profile=ctx.profile.name, pg_install=pg_install, progress=progress)
        _restore(ctx, report, note)   # a new cluster's first leader is whichever node won the race
    report.seconds = time.monotonic() - started
    return report
