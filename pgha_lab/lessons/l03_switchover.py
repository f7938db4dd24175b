"""Lesson 3: a planned switchover with patronictl inside a db node; the check sees the new leader
on a new timeline, the old one streaming as synchronous standby, HAProxy following, no write lost."""
from __future__ import annotations

from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.lessons import observe, sql
from pgha_lab.lessons.model import Lesson, State, Task, TaskResult
from pgha_lab.wait import wait_until

ID = 3
SOLVE_DEADLINE_S = 90.0


def start(ctx: LabContext) -> State:
    cluster = ctx.cluster()
    marker_id, server = sql.write_marker(ctx, "before switchover")
    return {"leader": cluster.leader_name, "timeline": cluster.timeline,
            "candidate": cluster.sync_standbys[0].name if cluster.sync_standbys else None,
            "marker_id": marker_id, "marker_server": server, "since": observe.now_stamp()}


def premise(ctx: LabContext, state: State) -> str | None:
    """Why the switchover this lesson is about has not happened, when the leader changed otherwise."""
    old = state["leader"]
    if observe.failed_over(ctx, state) and observe.powered_off(ctx, old, state.get("since")):
        return (f"{old} was powered off or restarted since the lesson began: the leader changed by a failover, not "
                "a handover; a switchover leaves the VM running (`patronictl switchover`). "
                "`pgha-lab lesson start 3` begins again")
    return None


def check(ctx: LabContext, state: State) -> list[TaskResult]:
    old, tl = state["leader"], int(state["timeline"])
    keys = ("old_leader", "haproxy", "no_write_lost")
    wrong = premise(ctx, state)
    if wrong:
        return [TaskResult("switchover", False, wrong)] + [TaskResult(k, False, wrong) for k in keys]
    if not observe.failed_over(ctx, state):
        return ([observe.guarded("switchover", lambda: observe.new_leader(ctx, "switchover", old, tl))]
                + [observe.needs_failover(k, state, None, "switchover") for k in keys])
    return [
        observe.guarded("switchover", lambda: observe.new_leader(ctx, "switchover", old, tl)),
        observe.guarded("old_leader", lambda: observe.streams(ctx, "old_leader", old, sync=True)),
        observe.guarded("haproxy", lambda: observe.routes_primary(ctx, "haproxy")),
        observe.writes_kept(ctx, "no_write_lost", int(state["marker_id"]), state["marker_server"]),
    ]


def solve(ctx: LabContext, state: State) -> None:
    old, candidate = state["leader"], state["candidate"]
    if ctx.cluster().leader_name == old:
        observe.patronictl(ctx, old, "switchover", "--leader", old, "--candidate", candidate, "--force")
    verdict = wait_until(lambda: observe.all_pass(check(ctx, state)), SOLVE_DEADLINE_S, interval_s=1.0)
    if not verdict.ok:
        raise LabError(f"the reference switchover did not finish in {SOLVE_DEADLINE_S:.0f}s: {verdict.reason}.")


LESSON = Lesson(
    id=ID, slug="switchover", title="Planned switchover",
    goal=("Hand the leader role to the synchronous standby on purpose, the way you would before patching the "
          "leader's VM, and prove that clients followed and nothing written before was lost."),
    background=(
        "A switchover is polite: the leader checkpoints, stops accepting writes, waits until the candidate has "
        "received everything (it is synchronous, so it already has), shuts down, and releases the leader key; the "
        "candidate promotes, which starts a new timeline (patronictl list shows TL going up by one). The old leader "
        "then restarts as a standby of the new one, and since synchronous_mode is on it becomes the synchronous "
        "standby. HAProxy learns the new roles from Patroni's REST API: /primary answers 200 only on the leader, "
        "so 5432 moves after a few checks (inter x rise). Nothing acknowledged is lost, because with a synchronous "
        "standby a commit returns only once the standby has the WAL."),
    tasks=(
        Task("switchover", "Inside the leader, run `patronictl -c /etc/patroni/config.yml switchover` and hand "
                           "over to the synchronous standby; the other node must lead on a new timeline."),
        Task("old_leader", "Watch `patronictl list` until the old leader streams again, as Sync Standby."),
        Task("haproxy", "Confirm on HAProxy's stats page that 5432 now goes to the new leader."),
        Task("no_write_lost", "The check wrote a row through 5432 when the lesson started (table lesson_writes); "
                              "it must still be there, and a new write must land on the new leader."),
    ),
    hints=(
        "`pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml switchover` asks for the leader, the "
        "candidate and when; answer `now` for when.",
        "patronictl list shows TL (the timeline) before and after; the new leader's TL is one higher.",
        "If the old leader shows 'stopped' or 'starting' for a while, that is it restarting as a standby: wait a "
        "loop or two (loop_wait).",
    ),
    solution=("pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml switchover --leader dbnode1 "
              "--candidate dbnode2 --force\n"
              "pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml list\n"
              "pgha-lab psql -- -c 'select inet_server_addr(), count(*) from lesson_writes group by 1'"),
    start=start, check=check, solve=solve, minutes=15)
