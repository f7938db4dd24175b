"""Lesson 6: a pulled cable (`chaos isolate`) and a partition from etcd only: a leader that cannot
reach etcd demotes itself after retry_timeout, having taken writes for those few seconds."""
from __future__ import annotations

from collections.abc import Callable

from pgha_lab.chaos.actions import Chaos, wait
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.lessons import observe, sql
from pgha_lab.lessons.model import Lesson, State, Task, TaskResult
from pgha_lab.node_paths import PG_RUN
from pgha_lab.wait import Verdict, wait_until

ID = 6
STEP_DEADLINE_S = 120.0


def start(ctx: LabContext) -> State:
    cluster = ctx.cluster()
    sql.prepare_answers(ctx, ID)
    marker_id, server = sql.write_marker(ctx, "before the cable was pulled")
    return {"leader": cluster.leader_name, "other": cluster.sync_standbys[0].name, "timeline": cluster.timeline,
            "marker_id": marker_id, "marker_server": server, "since": observe.now_stamp()}


def console_in_recovery(ctx: LabContext, name: str) -> Verdict:
    """Asked on the node's console (docker exec), as one reaches a VM whose network is gone."""
    proc = ctx.docker.exec(name, "psql", "-h", PG_RUN, "-tAc", "select pg_is_in_recovery()", user="postgres",
                           check=False)
    return Verdict(proc.stdout.strip() == "t", proc.stdout.strip() or proc.stderr.strip()[:80])


def check_isolated(ctx: LabContext, state: State, answers: Callable[[], dict[str, str]]) -> TaskResult:
    """What happened first, then the learner's answers: read through HAProxy, which right after a power
    cut may still send the read to the dead node (the answers cannot tell the premise)."""
    old = state["leader"]
    if observe.powered_off(ctx, old, state.get("since")):
        return TaskResult("isolated", False, f"{old} was powered off or restarted since the lesson began, not cut "
                                             f"off: `pgha-lab chaos isolate leader` pulls its cable and leaves it "
                                             f"running, which is what this task is about")
    tl = ctx.cluster().timeline or 0
    if tl < int(state["timeline"]) + 1:
        hit = observe.struck_replicas(ctx, state, ("isolated",))
        if hit:
            return TaskResult("isolated", False, observe.hit_the_replica(hit, "cut off", old,
                                                                         "pgha-lab chaos isolate leader"))
        return TaskResult("isolated", False, f"timeline {tl}: no failover has happened since the lesson began")
    given = answers()
    if "isolated_in_recovery" not in given:
        return TaskResult("isolated", False, "no answer recorded for isolated_in_recovery")
    if given["isolated_in_recovery"].lower() not in ("t", "true"):
        return TaskResult("isolated", False, f"isolated_in_recovery {given['isolated_in_recovery']!r} is not what the "
                                             f"cut-off leader ends up with: wait retry_timeout after the cut, then ask "
                                             f"pg_is_in_recovery() again on its console")
    return TaskResult("isolated", True, "the cut-off leader demoted itself to read-only")


def check_partition(ctx: LabContext, state: State, answers: Callable[[], dict[str, str]]) -> TaskResult:
    tl, leader = ctx.cluster().timeline or 0, ctx.cluster().leader_name
    if tl < int(state["timeline"]) + 2:
        replica = next((m.name for m in ctx.cluster().replicas
                        if "partitioned" in Chaos(ctx).network_faults(ctx.topology.node(m.name))), None)
        if replica is not None:
            return TaskResult("partition", False, f"you cut {replica} off, which is a replica now: it holds no key, so "
                                                  "nothing changes; cut the new leader off from etcd (`--clear` this "
                                                  "one first)")
        return TaskResult("partition", False, f"timeline {tl}: a second failover (the partition) has not happened")
    given = answers()
    if "partition_new_leader" not in given:
        return TaskResult("partition", False, "no answer recorded for partition_new_leader")
    if given["partition_new_leader"] != state["leader"]:
        return TaskResult("partition", False, f"partition_new_leader {given['partition_new_leader']!r} is not the "
                                              "member that took over (`patronictl list` after the takeover)")
    if leader != state["leader"]:
        return TaskResult("partition", False, "the leader changed again after the partition's takeover "
                                              "(`patronictl list` shows who leads now and on which timeline)")
    return TaskResult("partition", True, f"cut off from etcd, {state['other']} demoted and {leader} took over")


def check(ctx: LabContext, state: State) -> list[TaskResult]:
    def answers() -> dict[str, str]:
        return sql.answers(ctx, ID)
    out = [observe.guarded("isolated", lambda: check_isolated(ctx, state, answers)),
           observe.guarded("partition", lambda: check_partition(ctx, state, answers))]
    healed = [observe.guarded("healed", lambda: observe.streams(ctx, "healed", state["other"], sync=True)),
              observe.writes_kept(ctx, "no_write_lost", int(state["marker_id"]), state["marker_server"])]
    failing = [r for r in healed if not r.passed]
    out.append(failing[0] if failing else TaskResult("healed", True, f"{healed[0].reason}; {healed[1].reason}"))
    return out


def _wait(ctx: LabContext, what: str, check) -> None:
    verdict = wait_until(check, STEP_DEADLINE_S, interval_s=1.0)
    if not verdict.ok:
        raise LabError(f"{what} did not happen in {STEP_DEADLINE_S:.0f}s: {verdict.reason}.")


def solve(ctx: LabContext, state: State) -> None:
    old, other = state["leader"], state["other"]
    chaos = Chaos(ctx)
    if not check_isolated(ctx, state, lambda: sql.answers(ctx, ID)).passed:
        outcome = wait(chaos.run("isolate", old))
        if not outcome.happened:
            raise LabError(f"no failover after {old} was cut off: {outcome.verdict}.")
        _wait(ctx, f"{old} demoting itself", lambda: console_in_recovery(ctx, old))
        sql.record_answers(ctx, ID, {"isolated_in_recovery": "t"})
        chaos.run("heal", old)
        _wait(ctx, f"{old} rejoining", lambda: observe.streams(ctx, "", old, sync=True).passed)
    if not check_partition(ctx, state, lambda: sql.answers(ctx, ID)).passed:
        outcome = wait(chaos.run("partition", other, peers="etcd"))
        if not outcome.happened:
            raise LabError(f"no failover after {other} was cut off from etcd: {outcome.verdict}.")
        sql.record_answers(ctx, ID, {"partition_new_leader": ctx.cluster().leader_name or ""})
        chaos.run("partition", other, clear=True)
    _wait(ctx, "every task passing", lambda: observe.all_pass(check(ctx, state)))


LESSON = Lesson(
    id=ID, slug="pulled-cable", title="Pulled cable and a partition from etcd",
    goal=("Cut the leader off the network, then cut the new leader off from etcd only. See that a leader that "
          "cannot reach etcd demotes itself after retry_timeout, and why it may still take writes for those "
          "few seconds."),
    background=(
        "A leader holds its key only as long as it can renew it in etcd. Cut off (the cable pulled, or only "
        "the etcd traffic dropped), its Patroni keeps running: each HA loop it tries to update the key and "
        "retries for up to retry_timeout; while it retries, PostgreSQL is still a primary and a client that "
        "reaches it can still commit (with a synchronous standby, only once that standby confirms, which is "
        "what makes those writes safe). When the retries run out Patroni cannot prove it is still the leader, "
        "and with failsafe_mode off it demotes PostgreSQL to read-only rather than risk two primaries. "
        "The demotion is a fast shutdown, which waits for the walsender to the standby it can no longer reach "
        "until wal_sender_timeout (60 s by default) has passed since that standby last replied: for up to a "
        "minute its console answers 'the database system is shutting down'. "
        "Meanwhile the key expires after ttl and the other member, which etcd still hears, takes over on a new "
        "timeline. loop_wait + 2 x retry_timeout <= ttl is Patroni's rule that the demotion comes before "
        "anyone else may promote. In a partial partition (from etcd only) the cut-off leader may still reach "
        "the standby, but with failsafe_mode off that does not matter: only etcd decides who leads. With "
        "failsafe_mode on, a leader that still reaches every member over Patroni's REST API keeps its primary "
        "running without the key, and nobody else takes over (the Trade-offs drills measure both)."),
    tasks=(
        Task("isolated", "Pull the leader's cable (`pgha-lab chaos isolate leader`); after the other node took "
                         "over, ask the isolated one on its console (`pgha-lab exec NODE -- psql -h "
                         "/var/run/postgresql -tAc 'select pg_is_in_recovery()'`) and record the answer as "
                         "isolated_in_recovery. Plug it back (`chaos heal NODE`)."),
        Task("partition", "Cut the new leader off from etcd only (`pgha-lab chaos partition NODE --from etcd`), "
                          "see who takes over and record it as partition_new_leader; then `--clear` it."),
        Task("healed", "Both members streaming again with a synchronous standby, and the row written before the "
                       "cable was pulled still there."),
    ),
    hints=(
        "`pgha-lab logs NODE -f` on the cut-off leader shows Patroni's retries and then 'demoting self'.",
        "Record answers with `pgha-lab psql -- -c \"insert into lesson_answers values "
        "(6, 'isolated_in_recovery', 'ANSWER')\"`.",
        "`pgha-lab chaos partition dbnode2 --from etcd --wait` waits for the takeover.",
    ),
    solution=("pgha-lab chaos isolate leader --wait\n"
              "pgha-lab exec dbnode1 -- psql -h /var/run/postgresql -tAc 'select pg_is_in_recovery()'   # t\n"
              "pgha-lab chaos heal dbnode1 --wait\n"
              "pgha-lab chaos partition dbnode2 --from etcd --wait\n"
              "pgha-lab chaos partition dbnode2 --clear --wait\n"
              "pgha-lab psql -- -c \"insert into lesson_answers values (6, 'isolated_in_recovery', 't'), "
              "(6, 'partition_new_leader', 'dbnode1')\""),
    start=start, check=check, solve=solve, minutes=25)
