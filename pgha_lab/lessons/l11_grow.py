"""Lesson 11: grow the cluster by one db node (`up --db-nodes N+1`); the new member starts empty,
clones itself from a running member tagged clonefrom, and streams as an asynchronous replica."""
from __future__ import annotations

import re
from datetime import UTC, datetime

from pgha_lab import lifecycle
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.lessons import observe, sql
from pgha_lab.lessons.model import Lesson, State, Task, TaskResult
from pgha_lab.lessons.reset import resized
from pgha_lab.term.progress import Progress
from pgha_lab.topology import DB_NODE_RANGE
from pgha_lab.wait import wait_until

ID = 11
# Patroni's line when a new member picks its source (ha.py: "trying to bootstrap from leader 'dbnode1'").
CLONED_FROM = re.compile(r"trying to bootstrap from (?:leader|replica) '(?P<source>[^']+)'")
SOLVE_DEADLINE_S = 180.0


def start(ctx: LabContext) -> State:
    size = len(ctx.topology.db)
    if size + 1 not in DB_NODE_RANGE:
        raise LabError(f"lesson {ID} adds a db node, and this lab already has {size} (the most it can have); "
                       f"run it on a smaller lab.")
    new = resized(ctx, size + 1).topology.db[-1]
    ctx.docker.remove_node(new)   # a data volume an earlier growth left would skip the clone being taught
    sql.prepare_answers(ctx, ID)
    return {"db_nodes_before": size, "new_node": new.name, "leader": ctx.cluster().leader_name,
            "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def check_grown(ctx: LabContext, state: State) -> TaskResult:
    name, size = state["new_node"], int(state["db_nodes_before"])
    status = ctx.docker.state(name).status
    if status != "running":
        return TaskResult("grown", False, f"the lab has {size} db nodes and no {name} running yet "
                                          f"(`pgha-lab up --db-nodes {size + 1}`)")
    member = ctx.cluster().member(name)
    if member is None:
        return TaskResult("grown", False, f"{name} runs but has not registered with Patroni yet")
    return TaskResult("grown", True, f"{name} runs and is a member of the cluster")


def clone_source(ctx: LabContext, state: State) -> str | None:
    """The member the new node cloned from, as its Patroni logged it."""
    found = CLONED_FROM.findall(ctx.docker.logs_since(state["new_node"], state["since"]))
    return found[-1] if found else None


def check_cloned(ctx: LabContext, state: State, given: dict[str, str]) -> TaskResult:
    name = state["new_node"]
    streaming = observe.streams(ctx, "cloned", name, sync=False)
    if not streaming.passed:
        return streaming
    source = clone_source(ctx, state)
    if source is None:
        return TaskResult("cloned", False, f"{name}'s log since the lesson began has no 'trying to bootstrap from' "
                                           "line: it did not clone itself")
    member = ctx.cluster().member(source)
    if member is None or not member.tags.get("clonefrom"):
        return TaskResult("cloned", False, f"{name} cloned from {source}, which is not tagged clonefrom")
    if "cloned_from" not in given:
        return TaskResult("cloned", False, "no answer recorded for cloned_from")
    if given["cloned_from"] != source:
        return TaskResult("cloned", False, f"cloned_from {given['cloned_from']!r} is not the member {name}'s log names "
                                           f"(`pgha-lab logs {name} -n all | grep 'bootstrap from'`)")
    return TaskResult("cloned", True, f"{name} cloned from {source} (tagged clonefrom) and streams")


def sync_state(ctx: LabContext, name: str) -> str | None:
    """The new member's line in the leader's pg_stat_replication: async, sync, potential or quorum."""
    with sql.connect(ctx) as conn:
        row = conn.execute("select sync_state from pg_stat_replication where application_name = %s and "
                           "state = 'streaming'", (name,)).fetchone()
    return str(row[0]) if row else None


def check_replication(ctx: LabContext, state: State, given: dict[str, str]) -> TaskResult:
    name = state["new_node"]
    live = sync_state(ctx, name)
    if live is None:
        return TaskResult("replication", False, f"the leader's pg_stat_replication has no streaming {name}")
    if "new_sync_state" not in given:
        return TaskResult("replication", False, "no answer recorded for new_sync_state")
    if given["new_sync_state"].lower() != live:
        return TaskResult("replication", False, f"new_sync_state {given['new_sync_state']!r} is not the sync_state the "
                                                f"leader's pg_stat_replication shows for {name}")
    return TaskResult("replication", True, f"the leader streams to {name} as {live}")


def check(ctx: LabContext, state: State) -> list[TaskResult]:
    def given() -> dict[str, str]:
        return sql.answers(ctx, ID)
    return [observe.guarded("grown", lambda: check_grown(ctx, state)),
            observe.guarded("cloned", lambda: check_cloned(ctx, state, given())),
            observe.guarded("replication", lambda: check_replication(ctx, state, given()))]


def solve(ctx: LabContext, state: State) -> None:
    size = int(state["db_nodes_before"])
    if not check_grown(ctx, state).passed:   # what `pgha-lab up --db-nodes N+1` does
        lifecycle.bring_up(resized(ctx, size + 1), profile=None, pg_install="auto", progress=Progress(quiet=True))
    found = {"cloned_from": clone_source(ctx, state) or "", "new_sync_state": sync_state(ctx, state["new_node"]) or ""}
    sql.record_answers(ctx, ID, found)
    verdict = wait_until(lambda: observe.all_pass(check(ctx, state)), SOLVE_DEADLINE_S, interval_s=1.0)
    if not verdict.ok:
        raise LabError(f"the lab did not grow in {SOLVE_DEADLINE_S:.0f}s: {verdict.reason}.")


LESSON = Lesson(
    id=ID, slug="grow", title="Grow the cluster: add a db node",
    goal=("Add a third PostgreSQL node to the running cluster and watch it build itself: it starts with an empty "
          "data directory, copies a running member with pg_basebackup, and joins as a replica, while the leader "
          "keeps serving."),
    background=(
        "A new Patroni member finds the cluster in etcd, sees a leader and no data directory of its own, and "
        "bootstraps as a replica: it picks a source among the running members tagged clonefrom (here every member "
        "has tags: clonefrom: true in /etc/patroni/config.yml; with none tagged it would copy the leader), logs "
        "\"trying to bootstrap from replica 'dbnode2'\" (or from leader), and runs pg_basebackup from it. Cloning "
        "from a standby spares the leader the read load of a full copy. When the copy ends, PostgreSQL starts in "
        "recovery and streams WAL from the leader. With synchronous_mode on and synchronous_node_count 1, the "
        "existing synchronous standby keeps its role, so the newcomer streams asynchronously: pg_stat_replication "
        "on the leader shows its sync_state. HAProxy learns about the node from its new haproxy.cfg and sends 5433 "
        "to it once /replica answers 200. The existing db nodes' files do not change, so `up` leaves them running; "
        "only HAProxy restarts to read its new configuration. `lesson reset` takes the node away again."),
    tasks=(
        Task("grown", "Add a db node: `pgha-lab up --db-nodes 3` (one more than the lab has); follow it with "
                      "`patronictl list`."),
        Task("cloned", "Find in the new node's log (`pgha-lab logs dbnode3`) which member it cloned from, check "
                       "in `patronictl list` that this member is tagged clonefrom, and record it as answer "
                       "cloned_from."),
        Task("replication", "On the leader, read pg_stat_replication (`select application_name, state, sync_state "
                            "from pg_stat_replication`); record the new node's sync_state as new_sync_state."),
    ),
    hints=(
        "`pgha-lab up --db-nodes 3` keeps everything else (profile, settings, ports) as they are.",
        "`pgha-lab logs dbnode3 -n all | grep 'bootstrap from'` finds Patroni's choice of source.",
        "Record answers through psql: `pgha-lab psql -- -c \"insert into lesson_answers values "
        "(11, 'cloned_from', 'NODE'), (11, 'new_sync_state', 'STATE')\"` (with what you found; inserting again "
        "corrects an answer).",
    ),
    solution=("pgha-lab up --db-nodes 3\n"
              "pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml list\n"
              "pgha-lab logs dbnode3 -n all | grep 'bootstrap from'\n"
              "pgha-lab psql -- -c 'select application_name, state, sync_state from pg_stat_replication'\n"
              "pgha-lab psql -- -c \"insert into lesson_answers values (11, 'cloned_from', '...'), "
              "(11, 'new_sync_state', '...')\""),
    start=start, check=check, solve=solve, minutes=15, needs="adds a db node to the lab; `lesson reset` removes it")
