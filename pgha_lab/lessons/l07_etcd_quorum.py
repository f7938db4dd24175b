"""Lesson 7: etcd is the cluster's memory: lose one member of three and nothing happens; lose two
(the quorum) and the leader demotes itself; bring them back and Patroni elects a leader again."""
from __future__ import annotations

from pgha_lab import health
from pgha_lab.context import LabContext
from pgha_lab.lessons import observe
from pgha_lab.lessons.model import Lesson, State, Task, TaskResult

ID = 7
BACK_DEADLINE_S = 120.0


def start(ctx: LabContext) -> State:
    return {"timeline": ctx.cluster().timeline, "leader": ctx.cluster().leader_name, "since": observe.now_stamp()}


def rebooted_etcd(ctx: LabContext, since: str) -> list[str]:
    return observe.rebooted(ctx, [n.name for n in ctx.topology.etcd], since)


def lost_needed(ctx: LabContext) -> int:
    """etcd members to stop for the quorum to go: one more than a minority."""
    return len(ctx.topology.etcd) - (len(ctx.topology.etcd) // 2 + 1) + 1


def check_members_lost(ctx: LabContext, state: State) -> TaskResult:
    again = rebooted_etcd(ctx, state["since"])
    if len(again) < lost_needed(ctx):
        return TaskResult("quorum_lost", False, f"{len(again)} etcd member(s) stopped and started since the lesson "
                                                f"began ({', '.join(again) or 'none'}); losing the quorum takes "
                                                f"{lost_needed(ctx)}")
    return TaskResult("quorum_lost", True, f"{', '.join(again)} were stopped and started again")


def check_demoted(ctx: LabContext, state: State) -> TaskResult:
    timeline, now = int(state["timeline"]), ctx.cluster().timeline
    if now is None:
        return TaskResult("leader_demoted", False, "there is no leader right now")
    if now <= timeline:
        return TaskResult("leader_demoted", False, f"still timeline {now}: the leader never stepped down")
    db_restarted = [n for n in observe.db_names(ctx) if observe.powered_off(ctx, n, state["since"])]
    if db_restarted:
        return TaskResult("leader_demoted", False, f"the timeline moved, but {', '.join(db_restarted)} was stopped or "
                                                   "restarted since the lesson began: "
                                                   "the leader changed for that, not "
                                                   f"for etcd's quorum; stop etcd members only (`pgha-lab chaos stop "
                                                   f"etcd1`)")
    if len(rebooted_etcd(ctx, state["since"])) < lost_needed(ctx):
        return TaskResult("leader_demoted", False,
                          "the timeline moved, but etcd never lost its quorum since the lesson "
                          "began: the leader changed for another reason (a switchover?); "
                          "stop two etcd members")
    return TaskResult("leader_demoted", True, f"timeline {timeline} -> {now}: the leader demoted without "
                                              "quorum and a leader was elected again when it returned")


def check_back(ctx: LabContext) -> TaskResult:
    verdict = ctx.health()
    if not verdict.ok:
        return TaskResult("back", False, verdict.reason)
    return TaskResult("back", True, f"etcd: {health.assess_etcd(ctx.probe.etcd()).reason}; {verdict.reason}")


def check(ctx: LabContext, state: State) -> list[TaskResult]:
    return [observe.guarded("quorum_lost", lambda: check_members_lost(ctx, state)),
            observe.guarded("leader_demoted", lambda: check_demoted(ctx, state)),
            observe.guarded("back", lambda: check_back(ctx))]


def solve(ctx: LabContext, state: State) -> None:
    first, second = ctx.topology.etcd[0].name, ctx.topology.etcd[1].name
    observe.fault_then_recover(ctx, [("stop", first), ("stop", second)], lambda: check(ctx, state),
                               done_already=False, no_outcome="the leader did not demote without etcd's quorum",
                               not_back="the cluster did not come back", deadline_s=BACK_DEADLINE_S)


LESSON = Lesson(
    id=ID, slug="etcd-quorum", title="etcd: lose a member, then the quorum",
    goal=("Stop one etcd member and see that nothing happens; stop a second and see the PostgreSQL leader demote "
          "itself although nothing is wrong with it; start them again and see the cluster elect a leader."),
    background=(
        "etcd is a Raft cluster: a write needs a majority (2 of 3) to agree. With one member down the other two "
        "still form a quorum, elect an etcd leader among themselves if needed, and Patroni notices nothing beyond "
        "one endpoint failing. With two down, the last member cannot accept writes, so Patroni's leader cannot "
        "renew its key. After retry_timeout it gives up: with failsafe_mode off (as here and in the course) a "
        "leader that cannot prove it still holds the key demotes PostgreSQL to read-only, because it cannot tell "
        "'etcd is down' from 'I am the one cut off'. Reads on 5433 keep working; 5432 has no server. When the "
        "quorum returns, the members race for the key again; the winner promotes, which starts a new timeline "
        "even when it is the same node as before."),
    tasks=(
        Task("quorum_lost", "Stop one etcd member (`pgha-lab chaos stop etcd1`), check `ectl endpoint health` and "
                            "`patronictl list`; then stop a second (`chaos stop etcd2`)."),
        Task("leader_demoted", "Watch the leader demote (`patronictl list`, HAProxy's stats page); try a write "
                               "through 5432. Then start both members again (`chaos start`) and see a leader "
                               "elected on a new timeline."),
        Task("back", "All three etcd members healthy with one etcd leader, one Patroni leader, a synchronous "
                     "standby, HAProxy routing both ports."),
    ),
    hints=(
        "`pgha-lab exec etcd3 -- ectl endpoint health` lists which endpoints answer; `ectl endpoint status -w "
        "table` needs the quorum for some columns.",
        "`pgha-lab chaos stop etcd2 --wait` waits until no node accepts writes.",
        "`pgha-lab logs dbnode1 -n 30` shows Patroni's reasons while etcd is gone.",
    ),
    solution=("pgha-lab chaos stop etcd1\n"
              "pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml list     # nothing changed\n"
              "pgha-lab chaos stop etcd2 --wait\n"
              "pgha-lab psql -- -c 'select 1'                                          # 5432 has no server\n"
              "pgha-lab chaos start etcd1\n"
              "pgha-lab chaos start etcd2 --wait\n"
              "pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml list     # TL went up"),
    start=start, check=check, solve=solve, minutes=20)
