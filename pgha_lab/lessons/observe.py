"""Observations the lesson checks share, each read from the live lab and returned as a task
result with its reason; a lab caught mid-change yields a failed task, never an exception. Also the
one shape of a fault lesson's reference solution (fault, outcome, bring back, every task passes)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from pgha_lab import health
from pgha_lab.chaos.actions import Chaos, wait
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError, first_line
from pgha_lab.lessons import sql
from pgha_lab.lessons.model import State, TaskResult
from pgha_lab.node_paths import PATRONI_CONFIG
from pgha_lab.topology import Role
from pgha_lab.wait import Verdict, wait_until

READ_ERRORS = (psycopg.Error, LabError)
STAMP = "%Y-%m-%dT%H:%M:%S"   # UTC; the first 19 characters of Docker's StartedAt


def now_stamp() -> str:
    """When a lesson starts, in the form Docker's StartedAt begins with (what `rebooted` compares)."""
    return datetime.now(UTC).strftime(STAMP)


def rebooted(ctx: LabContext, names: list[str], since: str | None) -> list[str]:
    """The nodes among `names` that booted since `since` (their container started again: powered off
    or stopped, then started), read from Docker."""
    if not since:
        return []
    states = ctx.docker.states(names)
    return [n for n in names if states[n].started_at[:19] > since[:19]]


def not_running(ctx: LabContext, names: list[str]) -> dict[str, str]:
    """name -> Docker's condition (stopped, paused, isolated ...) for the nodes that do not run now."""
    states = ctx.docker.states(names)
    return {n: states[n].condition for n in names if states[n].condition != "running"}


def powered_off(ctx: LabContext, name: str, since: str | None) -> bool:
    """The node is stopped now, or booted since `since`: it lost power (or was shut down) meanwhile."""
    return not_running(ctx, [name]).get(name) == "stopped" or bool(rebooted(ctx, [name], since))


def struck_replicas(ctx: LabContext, state: State, now: tuple[str, ...], or_rebooted: bool = False) -> list[str]:
    """The members that were replicas when the lesson began and that a learner's fault hit: in one
    of the Docker conditions `now` (stopped, paused, isolated), or (`or_rebooted`) booted since."""
    names = [n for n in db_names(ctx) if n != state["leader"]]
    hit = [n for n, c in not_running(ctx, names).items() if c in now]
    if or_rebooted:
        hit += [n for n in rebooted(ctx, names, state.get("since")) if n not in hit]
    return hit


def hit_the_replica(hit: list[str], verb: str, leader: str, command: str) -> str:
    """What a fault lesson says when the learner struck a replica instead of the leader it asks for."""
    return (f"you {verb} the replica {', '.join(hit)}; this lesson asks for the leader {leader} (`{command}`): "
            f"`pgha-lab chaos heal-all`, then try again on the leader")


def failed_over(ctx: LabContext, state: State) -> bool:
    """Another member leads on a later timeline than when the lesson began."""
    cluster = ctx.cluster()
    return (cluster.leader_name not in (None, state["leader"]) and cluster.timeline is not None
            and cluster.timeline > int(state["timeline"]))


def needs_failover(key: str, state: State, wrong: str | None, change: str = "failover") -> TaskResult:
    """The task whose premise (a `change` of leader since the lesson began) did not happen."""
    if wrong:
        return TaskResult(key, False, wrong)
    return TaskResult(key, False, f"no {change} has happened since the lesson began ({state['leader']} still leads "
                                  f"on timeline {state['timeline']}): this task is about what follows one")


def unreadable(exc: Exception) -> str:
    if isinstance(exc, psycopg.Error):
        return f"SQL failed: {first_line(exc)}"
    return str(exc)


def guarded(key: str, observe: Callable[[], TaskResult]) -> TaskResult:
    """Run one observation; a failure to read the lab becomes the task's reason."""
    try:
        return observe()
    except READ_ERRORS as exc:
        return TaskResult(key, False, unreadable(exc))


def new_leader(ctx: LabContext, key: str, old: str, old_timeline: int) -> TaskResult:
    cluster = ctx.cluster()
    leader = cluster.leader
    if leader is None:
        return TaskResult(key, False, "there is no leader right now")
    if leader.name == old:
        return TaskResult(key, False, f"{old} still leads (timeline {leader.timeline})")
    if leader.timeline is None or leader.timeline <= old_timeline:
        return TaskResult(key, False, f"{leader.name} leads but still on timeline {leader.timeline}")
    return TaskResult(key, True, f"{leader.name} leads on timeline {leader.timeline} (was {old} on {old_timeline})")


def streams(ctx: LabContext, key: str, name: str, sync: bool) -> TaskResult:
    member = ctx.cluster().member(name)
    if member is None:
        # Docker knows what Patroni cannot say: a powered-off, frozen or cut-off node has no member key.
        state = ctx.docker.state(name)
        if state.condition == "missing":   # a node this lab never created (lesson 11's dbnode3 before it grows)
            return TaskResult(key, False, f"{name} is not registered with Patroni: no such node runs in this lab yet "
                                          f"(`pgha-lab status`)")
        if state.condition != "running":
            return TaskResult(key, False, f"{name} is {state.text()}, so Patroni does not list it: it can stream "
                                          f"only once it runs on the lab network again (`pgha-lab status`)")
        return TaskResult(key, False, f"{name} runs but has not registered with Patroni yet "
                                      f"(`pgha-lab logs {name}` says what Patroni is doing)")
    if not member.role.is_replica or member.state != "streaming":
        wanted = "the synchronous standby" if sync else "a replica"
        why = (f"`pgha-lab logs {name}` says why PostgreSQL does not start" if member.state == "start failed"
               else "`pgha-lab status` shows it; a former leader may still be stopping or rewinding")
        return TaskResult(key, False, f"{name} is {member.role}, {member.state or 'not running'}: it does not "
                                      f"stream as {wanted} yet ({why})")
    if sync and member.role.value != "sync_standby":
        return TaskResult(key, False, f"{name} streams but is not the synchronous standby")
    return TaskResult(key, True, f"{name} streams as {member.role.value.replace('_', ' ')}")


def routes_primary(ctx: LabContext, key: str) -> TaskResult:
    leader = ctx.cluster().leader_name
    up = health.servers_up(ctx.probe.haproxy())
    if leader is None or up != [leader]:
        return TaskResult(key, False, f"HAProxy's 5432 routes to {', '.join(up) or 'nothing'}, "
                                      f"the leader is {leader or 'nobody'}")
    return TaskResult(key, True, f"HAProxy's 5432 routes to the leader {leader}")


def writes_kept(ctx: LabContext, key: str, marker_id: int, marker_server: str) -> TaskResult:
    """The row written through 5432 before the change is still there, and a new write lands on the leader."""
    def observe() -> TaskResult:
        if not sql.marker_present(ctx, marker_id):
            return TaskResult(key, False, f"the row written on {marker_server} before the change "
                                          f"(id {marker_id}) is gone")
        row_id, server = sql.write_marker(ctx, "after")
        leader = ctx.cluster().leader_name
        if server != leader:
            return TaskResult(key, False, f"a new write through 5432 landed on {server}, not the leader {leader}")
        return TaskResult(key, True, f"row {marker_id} from before is there; "
                                     f"a new write (id {row_id}) landed on {server}")
    return guarded(key, observe)


def all_pass(results: list[TaskResult]) -> Verdict:
    """A lesson's check as one verdict, for a reference solution waiting until it has taken effect."""
    failing = [r for r in results if not r.passed]
    return Verdict(not failing, "; ".join(r.reason for r in failing) or "every task passes")


def patronictl(ctx: LabContext, node: str, *args: str, timeout: float = 120) -> str:
    """patronictl as the learner runs it inside a db node (`pgha-lab exec dbnode1 -- patronictl ...`)."""
    proc = ctx.docker.exec(node, "patronictl", "-c", PATRONI_CONFIG, *args, user="postgres", timeout=timeout)
    return proc.stdout


def first_db(ctx: LabContext) -> str:
    return ctx.topology.db[0].name


def db_names(ctx: LabContext) -> list[str]:
    return [n.name for n in ctx.topology.by_role(Role.DB)]


# How a node a fault left behind comes back: a killed or stopped one boots, a frozen one thaws.
BRING_BACK = {"exited": "start", "created": "start", "paused": "resume"}


def fault_then_recover(ctx: LabContext, faults: list[tuple[str, str]], check: Callable[[], list[TaskResult]], *,
                       done_already: bool, no_outcome: str, not_back: str, deadline_s: float) -> None:
    """A fault lesson's reference solution: run the chaos `faults` on the targets still running (the
    last one waited for: its expected outcome must happen, or LabError `no_outcome`), bring every
    target back, then wait until every task of the lesson's check passes (or LabError `not_back`).
    `done_already`: the learner already caused the outcome; only the bringing back is left."""
    chaos = Chaos(ctx)
    if not done_already:
        for n, (action, target) in enumerate(faults):
            if not ctx.docker.state(target).running:
                continue
            outcome = chaos.run(action, target)
            if n == len(faults) - 1:
                outcome = wait(outcome)
                if not outcome.happened:
                    raise LabError(f"{no_outcome}: {outcome.verdict}.")
    for _, target in faults:
        status = ctx.docker.state(target).status
        if status in BRING_BACK:
            chaos.run(BRING_BACK[status], target)
    verdict = wait_until(lambda: all_pass(check()), deadline_s, interval_s=1.0)
    if not verdict.ok:
        raise LabError(f"{not_back} in {deadline_s:.0f}s: {verdict.reason}.")
