"""Lesson 4: the leader loses power (`chaos kill`); its key expires after ttl, the synchronous
standby promotes, HAProxy follows, and the old leader rejoins as a standby when it boots."""
from __future__ import annotations

from pgha_lab.context import LabContext
from pgha_lab.lessons import observe, sql
from pgha_lab.lessons.model import Lesson, State, Task, TaskResult

ID = 4
REJOIN_DEADLINE_S = 120.0


def start(ctx: LabContext) -> State:
    cluster = ctx.cluster()
    marker_id, server = sql.write_marker(ctx, "before power cut")
    return {"leader": cluster.leader_name, "timeline": cluster.timeline, "marker_id": marker_id,
            "marker_server": server, "since": observe.now_stamp()}


def premise(ctx: LabContext, state: State) -> str | None:
    """Why the power cut this lesson is about has not happened, when the learner did something else:
    a replica powered off, or the leader handed over without losing power."""
    old = state["leader"]
    if observe.failed_over(ctx, state):
        if not observe.powered_off(ctx, old, state.get("since")):
            return (f"the leader changed, but {old} never lost power (it runs and has not booted since the lesson "
                    f"began): a switchover is lesson 3; here cut its power with `pgha-lab chaos kill {old}`")
        return None
    hit = observe.struck_replicas(ctx, state, ("stopped",), or_rebooted=True)
    return observe.hit_the_replica(hit, "powered off", old, "pgha-lab chaos kill leader") if hit else None


def check(ctx: LabContext, state: State) -> list[TaskResult]:
    old, tl = state["leader"], int(state["timeline"])
    wrong = premise(ctx, state)
    if wrong or not observe.failed_over(ctx, state):
        first = TaskResult("failover", False, wrong) if wrong else \
            observe.guarded("failover", lambda: observe.new_leader(ctx, "failover", old, tl))
        return [first] + [observe.needs_failover(key, state, wrong) for key in ("haproxy", "rejoin", "no_write_lost")]
    return [
        observe.guarded("failover", lambda: observe.new_leader(ctx, "failover", old, tl)),
        observe.guarded("haproxy", lambda: observe.routes_primary(ctx, "haproxy")),
        observe.guarded("rejoin", lambda: observe.streams(ctx, "rejoin", old, sync=False)),
        observe.writes_kept(ctx, "no_write_lost", int(state["marker_id"]), state["marker_server"]),
    ]


def solve(ctx: LabContext, state: State) -> None:
    old = state["leader"]
    observe.fault_then_recover(ctx, [("kill", old)], lambda: check(ctx, state),
                               done_already=ctx.cluster().leader_name != old,
                               no_outcome="no failover after the power cut", not_back=f"{old} did not rejoin",
                               deadline_s=REJOIN_DEADLINE_S)


LESSON = Lesson(
    id=ID, slug="power-cut", title="Power cut of the leader",
    goal=("Pull the plug on the leader's VM and watch the cluster heal itself: the leader key expires, the "
          "synchronous standby promotes, HAProxy follows. Then boot the old leader and see it come back as a standby."),
    background=(
        "A killed node says nothing: no one tells etcd that the leader is gone. Patroni's leader key in etcd has a "
        "time to live (ttl); the leader renews it every loop_wait seconds, and a dead one stops renewing. Only "
        "when the key expires (up to ttl seconds after the last renewal) may the standby race for it; the "
        "synchronous standby wins because it is known to hold every committed transaction, promotes and starts a "
        "new timeline. HAProxy's checks against the dead node time out and the new leader's /primary answers 200, "
        "so 5432 moves. When the old leader boots, Patroni sees another member holding the key and starts "
        "PostgreSQL as a standby; if its WAL went further than the new timeline's fork point (writes it had not "
        "yet replicated), it runs pg_rewind first (use_pg_rewind is on). Watch `ectl get --prefix /service/` "
        "while it happens."),
    tasks=(
        Task("failover", "Cut the leader's power with `pgha-lab chaos kill leader`; watch `ectl get "
                         "/service/18/main/leader` until another member holds the key. "
                         "It must lead on a new timeline."),
        Task("haproxy", "See HAProxy mark the dead server DOWN and route 5432 to the new leader."),
        Task("rejoin", "Boot the old leader (`pgha-lab chaos start NODE`) and watch it rejoin as a standby "
                       "(`patronictl list`; `pgha-lab logs NODE` shows pg_rewind when it was needed)."),
        Task("no_write_lost", "The row the lesson wrote through 5432 before the power cut must survive, and a "
                              "new write must land on the new leader."),
    ),
    hints=(
        "`pgha-lab exec etcd1 -- ectl get /service/18/main/leader -w json` shows the key's lease, in decimal; "
        "`ectl lease timetolive` takes it in hex (`printf '%x\\n' LEASE` converts it) and shows the seconds it "
        "has left.",
        "The failover takes up to ttl + loop_wait seconds: `pgha-lab exec dbnode2 -- patronictl -c "
        "/etc/patroni/config.yml show-config` shows ttl.",
        "A killed node stays off until you boot it: `pgha-lab chaos start dbnode1`.",
    ),
    solution=("pgha-lab chaos kill leader --wait\n"
              "pgha-lab exec etcd1 -- ectl get /service/18/main/leader\n"
              "pgha-lab status\n"
              "pgha-lab chaos start dbnode1 --wait\n"
              "pgha-lab exec dbnode2 -- patronictl -c /etc/patroni/config.yml list"),
    start=start, check=check, solve=solve, minutes=20)
