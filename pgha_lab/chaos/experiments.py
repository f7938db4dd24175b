"""Chaos actions that are small experiments rather than one signal: each sets a situation up, acts,
measures what happened, and says what should follow.

cancel-sync-wait: the synchronous standby is frozen, a commit on the leader waits for it, the wait is
cancelled (pg_cancel_backend): PostgreSQL then reports the commit as done with a WARNING, and the
row is visible on the primary without being on any standby.
block-switchover: a session holds an ACCESS EXCLUSIVE lock in an open transaction while a switchover
is asked for; how long the switchover takes and what became of the session.
flap: a partition cut and restored every N seconds for M seconds.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgha_lab import roles
from pgha_lab.chaos import expectations, rules
from pgha_lab.chaos.sql import connect
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError, first_line
from pgha_lab.rows import one_row
from pgha_lab.topology import Node
from pgha_lab.wait import Verdict, wait_until

SYNC_TABLE = "pgha_chaos_sync"
BLOCK_TABLE = "pgha_chaos_block"
COMMIT_NAME = "pgha-cancel-sync-wait"   # the experiment's own commit, told apart from a drill writer's


@dataclass
class Result:
    done: str
    expectation: expectations.Expectation
    figures: dict[str, Any] = field(default_factory=dict)


def _sync_standby(ctx: LabContext) -> Node:
    cluster = ctx.cluster()
    sync = [m.name for m in cluster.sync_standbys if m.state == "streaming"]
    if not sync:
        raise LabError("there is no streaming synchronous standby right now, so no commit would wait; "
                       "`pgha-lab status` shows the cluster.")
    return ctx.topology.node(sync[0])


def _on_node(ctx: LabContext, node: Node, sql: str, params: tuple = ()) -> Any:
    with connect(ctx, node) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def cancel_sync_wait(ctx: LabContext, leader: Node) -> Result:
    standby = _sync_standby(ctx)
    try:
        _on_node(ctx, leader, f"create table if not exists {SYNC_TABLE} (id bigserial primary key, "
                              f"at timestamptz not null default clock_timestamp())")
    except psycopg.Error as exc:
        raise LabError(f"cannot write on {leader.name} before the experiment: {first_line(exc)}; "
                       "nothing was changed.") from None
    # Frozen like a VM that stopped answering: its walreceiver neither confirms nor disconnects.
    ctx.docker.pause(standby)
    answer: dict[str, Any] = {}

    def commit() -> None:
        notices: list[str] = []
        started = time.monotonic()
        try:
            with connect(ctx, leader) as conn:
                conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
                conn.execute("select set_config('application_name', %s, false)", (COMMIT_NAME,))
                answer["id"] = one_row(conn.execute(f"insert into {SYNC_TABLE} default values returning id"))[0]
        except psycopg.Error as exc:
            answer["error"] = first_line(exc)
        answer["notices"] = notices
        answer["waited_s"] = time.monotonic() - started

    try:
        client = threading.Thread(target=commit, name="sync-wait-commit", daemon=True)
        client.start()
        waiting: list[int] = []

        def our_commit_waits() -> Verdict:
            # Ours, not any: in a drill the writer's commits wait too, and one of them seen first had the
            # cancel go out before this commit waited, which then waited on the frozen standby for good.
            rows = _on_node(ctx, leader, "select pid, application_name = %s from pg_stat_activity "
                                         "where wait_event = 'SyncRep'", (COMMIT_NAME,))
            waiting[:] = [r[0] for r in rows]
            ours = any(r[1] for r in rows)
            return Verdict(ours, f"{len(waiting)} commit(s) wait for {standby.name}, "
                                 f"{'this experiment' if ours else 'not yet this experiment'}'s among them")
        verdict = wait_until(our_commit_waits, 15)
        if not verdict.ok:
            raise LabError(f"the experiment's commit did not wait for the synchronous standby {standby.name} "
                           f"within 15s ({answer.get('error', 'no answer yet')}); synchronous replication may be off; "
                           "`pgha-lab status` shows the cluster.")
        # Every waiting commit is cancelled: a drill's writer caught waiting gets the same WARNING.
        cancelled = _on_node(ctx, leader, "select pid, pg_cancel_backend(pid) from pg_stat_activity "
                                          "where wait_event = 'SyncRep'")
        client.join(15)
        row_id = answer.get("id")
        visible = bool(row_id) and bool(_on_node(ctx, leader, f"select 1 from {SYNC_TABLE} where id = %s", (row_id,)))
        replay = _on_node(ctx, leader, "select application_name, state, coalesce(replay_lsn::text, '') "
                                       "from pg_stat_replication")
    finally:
        ctx.docker.unpause(standby)
    warned = [n for n in answer.get("notices", []) if rules.SYNC_CANCEL_TEXT in n]
    figures = {"row_id": row_id, "standby": standby.name, "waiting_commits": len(waiting),
               "cancelled": sum(1 for _, ok in cancelled if ok), "acknowledged": row_id is not None,
               "warning": warned[0] if warned else "", "visible_on_primary": visible,
               "commit_waited_s": round(answer.get("waited_s", 0.0), 3), "senders": [list(r) for r in replay]}
    if row_id is None:
        raise LabError("the waiting commit was not acknowledged after "
                       f"the cancel ({answer.get('error', 'no answer')}); "
                       f"{standby.name} was thawed.")
    done = (f"{standby.name} (the synchronous standby) frozen; a commit on {leader.name} waited "
            f"{figures['commit_waited_s']:.1f}s for it; pg_cancel_backend cancelled {figures['cancelled']} waiting "
            f"commit(s); row {row_id} of {SYNC_TABLE} was acknowledged with \"{figures['warning'] or 'no warning'}\" "
            f"and is {'visible' if visible else 'NOT visible'} on {leader.name} while no standby had it; "
            f"{standby.name} thawed")
    text = (f"A cancelled synchronous-replication wait does not undo the commit: PostgreSQL had written it "
            f"locally, so the client is told it committed (with a WARNING) although no standby has it. Had "
            f"{leader.name} died in that window, {standby.name}, still named in /sync, could have been promoted "
            f"without it: an acknowledged write lost. Now {standby.name} is thawed, it streams again and receives "
            f"row {row_id}.")
    return Result(done, expectations.Expectation(text, _row_reaches(ctx, standby, row_id), 60), figures)


def _row_reaches(ctx: LabContext, standby: Node, row_id: int) -> Callable[[], Verdict]:
    streams = expectations.streams_as_replica(ctx, standby.name)

    def check() -> Verdict:
        v = streams()
        if not v.ok:
            return v
        try:
            found = _on_node(ctx, standby, f"select 1 from {SYNC_TABLE} where id = %s", (row_id,))
        except psycopg.Error as exc:
            return Verdict(False, f"cannot read {standby.name}: {first_line(exc)}", standby.name)
        if not found:
            return Verdict(False, f"{standby.name} streams but does not have row {row_id} yet", standby.name)
        return Verdict(True, f"{standby.name} streams again and now has row {row_id}")
    return check


def block_switchover(ctx: LabContext, leader: Node) -> Result:
    try:
        _on_node(ctx, leader, f"create table if not exists {BLOCK_TABLE} (id int)")
        blocker = connect(ctx, leader, autocommit=False)
    except psycopg.Error as exc:
        raise LabError(f"cannot open a session on {leader.name}: {first_line(exc)}; nothing was changed.") from None
    try:
        blocker.execute("set application_name = 'pgha-block-switchover'")
        blocker.execute(f"lock table {BLOCK_TABLE} in access exclusive mode")   # left open: idle in transaction
        pid = blocker.info.backend_pid
        bound = ctx.profile.switchover_bound_s()
        started = time.monotonic()
        change = roles.request_change(ctx, "switchover", None)
        change = roles.wait_for_writes(ctx, change, bound + 120)
        took = time.monotonic() - started
        try:
            blocker.execute("select 1")
            fate = "still open"
        except psycopg.Error as exc:
            fate = f"ended: {first_line(exc)}"
    finally:
        blocker.close()
    figures = {"switchover_s": round(took, 3), "bound_s": round(bound, 3), "blocker_pid": pid,
               "blocker": fate, "new_leader": change.new_leader}
    why = ("Patroni stops the old primary with a fast shutdown, which rolls the open transaction back and "
           "closes its session, so the lock did not hold the switchover up"
           if fate != "still open"
           else "the session survived the switchover, which Patroni's fast shutdown should not allow")
    done = (f"an idle-in-transaction session (pid {pid}) held an ACCESS EXCLUSIVE lock on {leader.name} while a "
            f"switchover was asked for; writes landed on {change.new_leader} after {took:.1f}s "
            f"(bound {bound:.1f}s); the session {fate}")
    text = f"{why}. {leader.name} rejoins as a replica."
    return Result(done, expectations.Expectation(text, expectations.streams_as_replica(ctx, leader.name), 120), figures)


def flap_timing(every: float | None, duration: float | None) -> tuple[float, float]:
    every_s = 5.0 if every is None else every
    for_s = 30.0 if duration is None else duration
    if not 1 <= every_s <= 300:
        raise LabError(f"--every takes seconds between 1 and 300, not {every_s:g}.")
    if not every_s <= for_s <= 3600:
        raise LabError(f"--for takes seconds from --every ({every_s:g}) up to 3600, not {for_s:g}.")
    return every_s, for_s


def flap(cut: Callable[[], None], restore: Callable[[], None], every_s: float, for_s: float) -> int:
    """Cut, wait, restore, wait... for `for_s` seconds; always restored at the end. The sleeps are the
    fault's own rhythm, not a wait for readiness."""
    end = time.monotonic() + for_s
    cuts = 0
    try:
        while time.monotonic() < end:
            cut()
            cuts += 1
            time.sleep(max(0.0, min(every_s, end - time.monotonic())))
            restore()
            time.sleep(max(0.0, min(every_s, end - time.monotonic())))
    finally:
        restore()
    return cuts
