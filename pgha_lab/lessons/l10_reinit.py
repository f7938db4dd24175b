"""Lesson 10: a replica whose data directory is broken does not come back by itself; `patronictl
reinit` wipes it and clones it again from a member that allows it (tag clonefrom)."""
from __future__ import annotations

from pgha_lab.chaos.actions import Chaos
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.lessons import observe
from pgha_lab.lessons.model import Lesson, State, Task, TaskResult
from pgha_lab.node_paths import PG_DATA
from pgha_lab.wait import Verdict, wait_until

ID = 10
MARKER = f"{PG_DATA}/lesson10-broken"   # left in the broken data directory; a re-clone leaves no trace of it
LOST = f"{PG_DATA}/global/pg_control"
BROKEN_DEADLINE_S = 60.0
SOLVE_DEADLINE_S = 180.0


def start(ctx: LabContext) -> State:
    cluster = ctx.cluster()
    replica = cluster.sync_standbys[0].name
    # The damage a disk fault does: the control file is gone, so PostgreSQL cannot start again.
    ctx.docker.exec(replica, "sh", "-c", f"touch {MARKER} && mv {LOST} {LOST}.lost", user="postgres")
    Chaos(ctx).run("kill-postgres", replica)
    verdict = wait_until(lambda: _broken(ctx, replica), BROKEN_DEADLINE_S, interval_s=1.0)
    if not verdict.ok:
        raise LabError(f"{replica} did not show its broken data directory: {verdict.reason}.")
    return {"replica": replica, "leader": cluster.leader_name}


def _broken(ctx: LabContext, name: str) -> Verdict:
    member = ctx.cluster().member(name)
    if member is None or member.state == "streaming":
        return Verdict(False, f"{name} is {member.state if member else 'not registered'}")
    return Verdict(True, f"{name} is {member.state}")


def check_rebuilt(ctx: LabContext, name: str) -> TaskResult:
    proc = ctx.docker.exec(name, "test", "-e", MARKER, check=False)
    if proc.returncode == 0:
        return TaskResult("reinit", False, f"{name}'s data directory is still the broken one ({MARKER} is there)")
    return TaskResult("reinit", True, f"{name}'s data directory was cloned afresh")


def check(ctx: LabContext, state: State) -> list[TaskResult]:
    replica = state["replica"]
    return [observe.guarded("reinit", lambda: check_rebuilt(ctx, replica)),
            observe.guarded("streams", lambda: observe.streams(ctx, "streams", replica, sync=True))]


def solve(ctx: LabContext, state: State) -> None:
    replica = state["replica"]
    if not check_rebuilt(ctx, replica).passed:
        observe.patronictl(ctx, state["leader"], "reinit", ctx.topology.scope, replica, "--force", "--wait")
    verdict = wait_until(lambda: observe.all_pass(check(ctx, state)), SOLVE_DEADLINE_S, interval_s=1.0)
    if not verdict.ok:
        raise LabError(f"{replica} was not rebuilt in {SOLVE_DEADLINE_S:.0f}s: {verdict.reason}.")


LESSON = Lesson(
    id=ID, slug="reinit", title="Rebuild a broken replica",
    goal=("A replica's data directory is damaged and PostgreSQL will not start on it. Find out why from the "
          "node's log, then rebuild it with `patronictl reinit` and see it stream again as synchronous standby."),
    background=(
        "Patroni restarts a PostgreSQL that died, but it will not throw a data directory away on its own: a "
        "replica that cannot start stays down (patronictl list shows it 'start failed' or 'stopped'), while the "
        "leader carries on alone (synchronous_mode is not strict, so writes continue without a synchronous "
        "standby). `patronictl reinit CLUSTER MEMBER` asks that member's Patroni to stop PostgreSQL, remove the "
        "data directory and bootstrap it again as a new replica: a pg_basebackup from a member tagged clonefrom "
        "(here every member is; the leader otherwise). The same mechanism clones a brand-new member: "
        "`pgha-lab up --db-nodes 3` adds dbnode3, which starts empty and clones itself the same way (lesson 11)."),
    tasks=(
        Task("reinit", "Find the broken replica (`patronictl list`, `pgha-lab logs dbnode2 -n 30`: what file "
                       "is missing?) and rebuild it with `patronictl reinit`."),
        Task("streams", "Watch it clone and come back as the synchronous standby."),
    ),
    hints=(
        "PostgreSQL's log line 'could not open file \"global/pg_control\"' says the cluster's control file is gone: "
        "no restart can fix that.",
        "`pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml reinit 18/main dbnode2` (add --force to "
        "skip the question, --wait to wait for it).",
    ),
    solution=("pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml list\n"
              "pgha-lab logs dbnode2 -n 30\n"
              "pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml reinit 18/main dbnode2 --force --wait\n"
              "pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml list"),
    start=start, check=check, solve=solve, minutes=15)
