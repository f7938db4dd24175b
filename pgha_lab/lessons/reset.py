"""`lesson reset`: back to the healthy baseline every lesson starts from, in seconds, without
re-initialising the cluster where it can, and proven: the reset ends only when baseline.py finds
no difference between what every member runs and the baseline, and otherwise fails naming what is
left.

The baseline: every node running and on the lab network without chaos rules; the host's files as
pgha-lab renders them and every node running them; Patroni's dynamic configuration equal to what
the lab bootstrapped with, in the lab's timing profile; each member's tags, parameters and pg_hba
as its patroni.yml says, nothing in postgresql.auto.conf, no ALTER ROLE/DATABASE settings, no
member waiting for a restart; the first db node leading with the second as synchronous standby; no
table a lesson created and no etcd key besides Patroni's; HAProxy routing both ports accordingly.
Only when Patroni cannot bring a member back (a replica that will not start, a cluster without a
leader) is a replica re-initialised or, as the last resort, the lab re-created (`down --volumes` +
`up`). A lab a lesson grew (lesson 11 adds a db node) shrinks back to the size it had when that
lesson began.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from pgha_lab import dynamic_config, health, lifecycle, roles
from pgha_lab.chaos.actions import Chaos
from pgha_lab.context import LabContext, load_topology
from pgha_lab.errors import LabError, first_line
from pgha_lab.fsutil import write_in_place
from pgha_lab.lessons import baseline, progress, sql
from pgha_lab.lessons.baseline import baseline_config
from pgha_lab.profiles import PATRONI_MIN_LOOP_WAIT
from pgha_lab.term.progress import Progress
from pgha_lab.topology import Role, Topology
from pgha_lab.wait import Verdict, wait_until

LEADER_DEADLINE_S = 60.0      # a killed leader's key lives up to ttl before anyone may take over
STREAMING_DEADLINE_S = 60.0   # a rejoining member may need pg_rewind first
HEALTH_DEADLINE_S = 60.0
REJOIN_GRACE_S = 5.0          # how long a healed member may sit in "stopping" before it is power-cycled
CONFIG_READ_DEADLINE_S = 15.0
CONVERGE_ROUNDS = 4           # rounds of "read every difference, undo it" before the reset gives up naming them


@dataclass
class ResetReport:
    steps: list[str] = field(default_factory=list)
    recreated: bool = False
    resized: bool = False     # the lab's topology changed (a grown lab shrank): callers re-open their context
    seconds: float = 0.0
    verdict: str = ""         # baseline.py's word on the lab at the end: what was checked and found equal

    def as_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "recreated": self.recreated, "resized": self.resized,
                "seconds": round(self.seconds, 1), "verdict": self.verdict}


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
    """PATCH /config to `wanted` through the leader, every other member woken to read it at once.
    (The patch sent, the configuration it was computed from.)"""
    return dynamic_config.change(ctx, lambda live: dynamic_config.patch_replacing(live, wanted),
                                 "Patroni refused to restore its configuration: {why}.",
                                 no_leader="no leader to restore Patroni's configuration through.",
                                 wake_all=True, read_deadline_s=CONFIG_READ_DEADLINE_S)


def restore_config(ctx: LabContext) -> tuple[list[str], list[str]]:
    """PATCH /config back to the baseline (with the reset's quick loop); (what was done, the
    PostgreSQL parameters it changed)."""
    patch, live = patch_config(ctx, reset_config(ctx))
    # What a learner changed, not the reset's quick loop.
    drifted = dynamic_config.patch_replacing(live, baseline_config(ctx))
    parameters = sorted((patch.get("postgresql") or {}).get("parameters") or {})
    return ([f"restored Patroni's dynamic configuration ({', '.join(sorted(drifted))})"] if drifted else []), parameters


def _must(verdict: Verdict, what: str) -> None:
    if not verdict.ok:
        raise LabError(f"{what}: {verdict.reason}.")


def _baseline_leader(ctx: LabContext) -> str:
    return ctx.topology.db[0].name


def baseline_verdict(ctx: LabContext, config: dict[str, Any] | None = None) -> Verdict:
    """Whether the lab is at the lessons' healthy baseline now, and if not, every difference (`config`:
    the dynamic configuration to expect instead of the baseline's, as the reset runs with)."""
    return baseline.assess(ctx, config)


def _restore(ctx: LabContext, report: ResetReport, note: Callable[[str], None]) -> None:
    def did(lines: list[str]) -> None:
        for line in lines:
            report.steps.append(line)
            note(line)

    did(Chaos(ctx).heal_all())
    did(restore_files(ctx))
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
    did(reset_sql_settings(ctx))
    if changed_parameters:
        # A member reads changed parameters on its next HA loop; only then can it flag a restart.
        wait_until(lambda: parameters_read(ctx, changed_parameters), 3 * ctx.profile.loop_wait + 10)
    restarted = restart_members(ctx, reset_config(ctx))
    did(restarted)
    if restarted:
        _must(wait_until(lambda: health.assess_patroni(ctx.cluster(), [n.name for n in ctx.topology.db]),
                         STREAMING_DEADLINE_S), "the restarted members did not stream again")
    did(reload_tags(ctx))
    did(switch_back(ctx))
    did(drop_lesson_tables(ctx))
    did(delete_stray_keys(ctx))
    converge(ctx, reset_config(ctx), did)
    if patch_config(ctx, baseline_config(ctx))[0]:   # the profile's loop_wait back: read once more
        report.verdict = converge(ctx, None, did).reason
    else:
        report.verdict = baseline.verdict([], baseline.ok_text(ctx)).reason


def converge(ctx: LabContext, config: dict[str, Any] | None, did: Callable[[list[str]], None]) -> Verdict:
    """Read every difference from the baseline and undo it, round after round, until none is left
    (a member that read a restored parameter late, a tag still pending); LabError naming what is
    left when a round undoes nothing or the rounds run out. `config`: the configuration to expect."""
    left: list[baseline.Difference] = []

    def settled() -> Verdict:
        """Nothing left to wait for: every difference read is one an undo acts on (or there is none)."""
        left[:] = baseline.differences(ctx, config)
        return baseline.verdict([d for d in left if d.undo == baseline.WAIT], "settled")

    for _ in range(CONVERGE_ROUNDS):
        calm = wait_until(settled, HEALTH_DEADLINE_S, interval_s=1.0)
        if not left:
            return baseline.verdict([], baseline.ok_text(ctx))
        done = undo(ctx, left, config) if calm.ok else []
        if not done:
            break
        did(done)
    raise LabError(f"the lab did not reach its baseline: {baseline.verdict(left, '').reason}")


def undo(ctx: LabContext, differences: list[baseline.Difference], config: dict[str, Any] | None) -> list[str]:
    """One round of undos for the differences read (each kind once); what was done."""
    kinds = {d.undo for d in differences}
    done: list[str] = []
    if kinds & {baseline.HEAL}:
        done += Chaos(ctx).heal_all()
    if kinds & {baseline.FILE, baseline.RESTART_NODE}:
        done += restore_files(ctx)
    if baseline.CONFIG in kinds:
        patched = patch_config(ctx, config or baseline_config(ctx))[0]
        done += [f"restored Patroni's dynamic configuration ({', '.join(sorted(patched))})"] if patched else []
    if kinds & {baseline.ALTER_SYSTEM, baseline.ROLE_SETTINGS}:
        done += reset_sql_settings(ctx)
    if baseline.RESTART_PG in kinds:
        done += restart_members(ctx, config or baseline_config(ctx))
    if baseline.RELOAD in kinds:
        done += reload_tags(ctx)
    if baseline.ROLES in kinds:
        done += switch_back(ctx)
    if baseline.TABLES in kinds:
        done += drop_lesson_tables(ctx)
    if baseline.ETCD_KEY in kinds:
        done += delete_stray_keys(ctx)
    return done


def switch_back(ctx: LabContext) -> list[str]:
    first = _baseline_leader(ctx)
    if ctx.cluster().leader_name == first:
        return []
    change = roles.request_change(ctx, "switchover", first)
    roles.wait_for_writes(ctx, change, HEALTH_DEADLINE_S)
    return [f"switched over from {change.old_leader} back to {first}"]


def drop_lesson_tables(ctx: LabContext) -> list[str]:
    stray = sql.stray_tables(ctx)
    if not stray:
        return []
    sql.drop_tables(ctx, stray)
    return [f"dropped {', '.join(stray)}"]


def restore_files(ctx: LabContext) -> list[str]:
    """Host files put back as pgha-lab renders them (a learner's edit of patroni.yml, say), written
    into the file itself so a node's single-file mount sees them at once; a db node's Patroni reads
    its file again (POST /reload: it may have read the edit), and another node that booted after the
    edit is rebooted. Then every node still running other files than the host's is rebooted (its
    data stays)."""
    done = []
    edited = baseline.host_files(ctx)
    if edited:
        for (_, target), content in baseline.rendered_files(ctx).items():
            if str(target.relative_to(ctx.paths.home)) in {d.item for d in edited}:
                write_in_place(target, content)
        done.append(f"rendered again: {', '.join(d.item for d in edited)}")
    states = ctx.docker.states(list(ctx.topology.nodes))
    for name in sorted({d.node for d in edited if d.node}):
        node = ctx.topology.node(name)
        if node.role is Role.DB and states[name].condition == "running":
            ctx.probe.rest_change(node, "POST", "/reload", {}, ctx.restapi_auth, timeout=30)
            done.append(f"reloaded {name}'s Patroni, which reads its file again")
    for diff in baseline.running_files(ctx, states):
        assert diff.node is not None   # running_files names the node of every difference
        ctx.docker.restart(ctx.topology.node(diff.node))
        done.append(f"restarted {diff.node}, which ran other files than the host's")
    return done


def reset_sql_settings(ctx: LabContext) -> list[str]:
    """ALTER SYSTEM RESET ALL (and a reload) on every member whose postgresql.auto.conf sets
    something, and RESET ALL of every ALTER ROLE/DATABASE setting (through the leader)."""
    done = []
    for node in ctx.topology.db:
        with sql.connect_node(ctx, node.name) as conn:
            rows = conn.execute("select name from pg_file_settings where sourcefile like '%/postgresql.auto.conf'"
                                ).fetchall()
            if rows:
                conn.execute("alter system reset all")
                conn.execute("select pg_reload_conf()")
                done.append(f"emptied {node.name}'s postgresql.auto.conf ({', '.join(r[0] for r in rows)}: "
                            "ALTER SYSTEM RESET ALL)")
    with sql.connect(ctx) as conn:
        rows = conn.execute("select r.rolname, d.datname from pg_db_role_setting s left join pg_roles r on "
                            "r.oid = s.setrole left join pg_database d on d.oid = s.setdatabase").fetchall()
        for role, db in rows:
            if role and db:
                stmt = SQL("alter role {} in database {} reset all").format(Identifier(role), Identifier(db))
            elif role:
                stmt = SQL("alter role {} reset all").format(Identifier(role))
            else:
                stmt = SQL("alter database {} reset all").format(Identifier(db))
            conn.execute(stmt)
            done.append(f"{stmt.as_string(conn)} (an ALTER ROLE/DATABASE ... SET)")
    return done


def restart_members(ctx: LabContext, config: dict[str, Any]) -> list[str]:
    """Restart (through Patroni, as `patronictl restart` does) every member waiting for a restart or
    running other parameters or pg_hba rules than its configuration says: at its start Patroni writes
    postgresql.conf and pg_hba.conf afresh from its configuration."""
    done = []
    for node in ctx.topology.db:
        why = [d for d in baseline.member(ctx, node.name, config) if d.undo == baseline.RESTART_PG]
        if not why:
            continue
        r = ctx.probe.rest_change(node, "POST", "/restart", {}, ctx.restapi_auth, timeout=90)
        if r.status_code != 200:
            raise LabError(f"Patroni on {node.name} refused the restart: {r.text.strip() or r.status_code}.")
        done.append(f"restarted {node.name}'s PostgreSQL ({'; '.join(d.text for d in why)})")
    return done


def reload_tags(ctx: LabContext) -> list[str]:
    """A member whose tags differ from its (rendered) patroni.yml reads the file again (POST /reload)."""
    done = []
    for diff in baseline.tags(ctx, ctx.cluster()):
        assert diff.node is not None   # tags names the member of every difference
        node = ctx.topology.node(diff.node)
        ctx.probe.rest_change(node, "POST", "/reload", {}, ctx.restapi_auth, timeout=30)
        done.append(f"reloaded {node.name}'s Patroni ({diff.text.split(' (')[0]})")
    if done:
        _must(wait_until(lambda: Verdict(not baseline.tags(ctx, ctx.cluster()), "tags not read yet"),
                         3 * ctx.profile.loop_wait + 10), "a member did not take its patroni.yml's tags")
    return done


def delete_stray_keys(ctx: LabContext) -> list[str]:
    done = []
    for diff in baseline.etcd_keys(ctx):
        if diff.undo == baseline.ETCD_KEY and ctx.probe.etcd_delete(diff.item):
            done.append(f"deleted etcd key {diff.item}")
    return done


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
    current = progress.load(ctx.paths).current
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
        shown = recreate_progress or Progress(quiet=True)
        lifecycle.take_down(ctx, volumes=True, progress=shown)
        lifecycle.bring_up(ctx, profile=ctx.profile.name, pg_install=pg_install, progress=shown)
        _restore(ctx, report, note)   # a new cluster's first leader is whichever node won the race
    report.seconds = time.monotonic() - started
    return report
