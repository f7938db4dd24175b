"""Lesson 5: the leader's VM freezes (`chaos pause`) past ttl and thaws: the standby took over
meanwhile, and the thawed node, finding the leader key gone, demotes instead of taking writes."""
from __future__ import annotations

from pgha_lab.context import LabContext
from pgha_lab.lessons import observe, sql
from pgha_lab.lessons.model import Lesson, State, Task, TaskResult
from pgha_lab.rows import one_row

ID = 5
REJOIN_DEADLINE_S = 120.0


def start(ctx: LabContext) -> State:
    cluster = ctx.cluster()
    marker_id, server = sql.write_marker(ctx, "before the freeze")
    return {"leader": cluster.leader_name, "timeline": cluster.timeline, "marker_id": marker_id,
            "marker_server": server, "since": observe.now_stamp()}


def premise(ctx: LabContext, state: State) -> str | None:
    """Why the freeze this lesson is about has not happened, when the learner did something else."""
    old = state["leader"]
    if observe.failed_over(ctx, state):
        if observe.powered_off(ctx, old, state.get("since")):
            return (f"{old} was powered off or restarted since the lesson began, not frozen. A frozen VM "
                    f"(`pgha-lab chaos pause leader`) keeps its memory and wakes up believing it still leads, "
                    f"which is what this lesson is about")
        return None
    hit = observe.struck_replicas(ctx, state, ("paused",))
    return observe.hit_the_replica(hit, "froze", old, "pgha-lab chaos pause leader") if hit else None


def demoted(ctx: LabContext, key: str, name: str) -> TaskResult:
    """Asked of the thawed node itself, straight, not through HAProxy: is it read-only now?"""
    state = ctx.docker.state(name)
    if state.status != "running":
        return TaskResult(key, False, f"{name} is {state.status}; resume it (`pgha-lab chaos resume {name}`)")
    with sql.connect_node(ctx, name) as conn:
        in_recovery = one_row(conn.execute("select pg_is_in_recovery()"))[0]
    if not in_recovery:
        return TaskResult(key, False, f"{name} still runs as a primary (pg_is_in_recovery() is false)")
    return TaskResult(key, True, f"{name} is read-only now: pg_is_in_recovery() is true")


def check(ctx: LabContext, state: State) -> list[TaskResult]:
    old, tl = state["leader"], int(state["timeline"])
    wrong = premise(ctx, state)
    if wrong and observe.failed_over(ctx, state):   # a failover, but not after a freeze
        return [TaskResult("failover", False, wrong), TaskResult("demoted", False, wrong),
                observe.guarded("rejoin", lambda: observe.streams(ctx, "rejoin", old, sync=False)),
                observe.writes_kept(ctx, "no_write_lost", int(state["marker_id"]), state["marker_server"])]
    if wrong or not observe.failed_over(ctx, state):
        first = TaskResult("failover", False, wrong) if wrong else \
            observe.guarded("failover", lambda: observe.new_leader(ctx, "failover", old, tl))
        return [first] + [observe.needs_failover(key, state, wrong) for key in ("demoted", "rejoin", "no_write_lost")]
    return [
        observe.guarded("failover", lambda: observe.new_leader(ctx, "failover", old, tl)),
        observe.guarded("demoted", lambda: demoted(ctx, "demoted", old)),
        observe.guarded("rejoin", lambda: observe.streams(ctx, "rejoin", old, sync=False)),
        observe.writes_kept(ctx, "no_write_lost", int(state["marker_id"]), state["marker_server"]),
    ]


def solve(ctx: LabContext, state: State) -> None:
    old = state["leader"]
    observe.fault_then_recover(ctx, [("pause", old)], lambda: check(ctx, state),
                               done_already=ctx.cluster().leader_name != old,
                               no_outcome=f"no failover while {old} was frozen", not_back=f"{old} did not rejoin",
                               deadline_s=REJOIN_DEADLINE_S)


LESSON = Lesson(
    id=ID, slug="frozen-vm", title="Frozen VM: pause the leader past ttl",
    goal=("Freeze the leader's VM for longer than ttl, then thaw it. See the standby take over while it is "
          "frozen, and see why the thawed old leader does not take a single write."),
    background=(
        "A frozen VM (a hypervisor stall, a long GC pause, a suspended laptop) is worse than a dead one: when it "
        "wakes, every process believes no time has passed, and PostgreSQL would happily accept writes as "
        "primary. Patroni guards against it from both sides. While the node is frozen its leader key expires after "
        "ttl and the synchronous standby promotes on a new timeline. When the node thaws, its Patroni runs the HA "
        "loop before anything else: it tries to renew the leader key, finds that another member holds it, and "
        "demotes PostgreSQL at once (it stops and restarts it as a standby, rewinding if needed). Clients "
        "reconnecting through HAProxy never reach it, because its REST API no longer answers 200 on /primary. A "
        "session that was already open on it and froze with it may see its connection closed when the node "
        "demotes: that is why `on-marked-down shutdown-sessions` is in haproxy.cfg. Synchronous replication "
        "means no write it had acknowledged is missing on the new leader."),
    tasks=(
        Task("failover", "Freeze the leader with `pgha-lab chaos pause leader` and wait more than ttl; the other node "
                         "must lead on a new timeline."),
        Task("demoted", "Thaw it (`pgha-lab chaos resume NODE`); ask it directly (`pgha-lab exec NODE -- psql -h "
                        "/var/run/postgresql -c 'select pg_is_in_recovery()'`): it must be read-only."),
        Task("rejoin", "Watch it stream again as a standby in `patronictl list`."),
        Task("no_write_lost", "The row written through 5432 before the freeze must survive, and new writes land on "
                              "the new leader."),
    ),
    hints=(
        "`pgha-lab chaos pause leader --wait` returns once the standby has taken over.",
        "`pgha-lab logs dbnode1 -n 40` after the resume shows Patroni demoting: 'Demoting self' / 'following "
        "a different leader'.",
    ),
    solution=("pgha-lab chaos pause leader --wait\n"
              "pgha-lab exec dbnode2 -- patronictl -c /etc/patroni/config.yml list\n"
              "pgha-lab chaos resume dbnode1\n"
              "pgha-lab exec dbnode1 -- psql -h /var/run/postgresql -c 'select pg_is_in_recovery()'\n"
              "pgha-lab logs dbnode1 -n 40"),
    start=start, check=check, solve=solve, minutes=15)
