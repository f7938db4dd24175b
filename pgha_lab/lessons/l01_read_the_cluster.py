"""Lesson 1: read the cluster from every side (patronictl, ectl, HAProxy, psql) and write down
what you found; the check compares each answer with the live lab."""
from __future__ import annotations

from pgha_lab import health
from pgha_lab.context import LabContext
from pgha_lab.lessons import sql
from pgha_lab.lessons.model import Lesson, State, Task, TaskResult
from pgha_lab.lessons.observe import READ_ERRORS, unreadable
from pgha_lab.rows import one_row

ID = 1
QUESTIONS = {   # task key -> the questions it answers
    "patroni": ("leader", "sync_standby", "timeline"),
    "etcd": ("etcd_leader",),
    "haproxy": ("port_5432", "port_5433"),
    "psql": ("primary_address", "replica_in_recovery"),
}
# Where each answer can be read: a wrong answer is told where to look again, never the value.
WHERE = {
    "leader": "`patronictl list`, the member whose Role is Leader",
    "sync_standby": "`patronictl list`, the member whose Role is Sync Standby",
    "timeline": "`patronictl list`, column TL",
    "etcd_leader": "`ectl endpoint status -w table`, the endpoint whose IS LEADER is true, then whose address that is",
    "port_5432": "HAProxy's stats page, backend primary: the server that is UP",
    "port_5433": "HAProxy's stats page, backend replicas: the servers that are UP",
    "primary_address": "`select inet_server_addr()` in a session through 5432",
    "replica_in_recovery": "`select pg_is_in_recovery()` in a session through 5433",
}


def start(ctx: LabContext) -> State:
    sql.prepare_answers(ctx, ID)
    return {}


def truth(ctx: LabContext) -> dict[str, str]:
    """What the live lab says, read the way the lab's probes read it."""
    cluster = ctx.cluster()
    leader = cluster.leader
    etcd_leader = next((ep.name for ep in ctx.probe.etcd() if ep.is_leader), "")
    backends = ctx.probe.haproxy()
    with sql.connect(ctx, replica=True) as conn:
        in_recovery = one_row(conn.execute("select pg_is_in_recovery()"))[0]
    return {
        "leader": leader.name if leader else "",
        "sync_standby": ",".join(m.name for m in cluster.sync_standbys),
        "timeline": str(leader.timeline) if leader else "",
        "etcd_leader": etcd_leader,
        "port_5432": ",".join(health.servers_up(backends, health.PRIMARY_BACKEND)),
        "port_5433": ",".join(health.servers_up(backends, health.REPLICA_BACKEND)),
        "primary_address": str(ctx.topology.node(leader.name).address) if leader else "",
        "replica_in_recovery": "t" if in_recovery else "f",
    }


def _same(question: str, given: str, true: str) -> bool:
    if question == "replica_in_recovery":
        return given.lower() in (("t", "true", "on", "yes") if true == "t" else ("f", "false", "off", "no"))
    if question == "timeline":
        return given.lstrip("0") == true.lstrip("0")
    return sorted(p.strip() for p in given.split(",")) == sorted(true.split(","))


def check(ctx: LabContext, state: State) -> list[TaskResult]:
    def observe_all() -> list[TaskResult]:
        given, live = sql.answers(ctx, ID), truth(ctx)
        out = []
        for key, questions in QUESTIONS.items():
            missing = [q for q in questions if q not in given]
            wrong = [f"{q} {given[q]!r} is not what the lab shows (look at {WHERE[q]})" for q in questions
                     if q in given and not _same(q, given[q], live[q])]
            if missing:
                out.append(TaskResult(key, False, f"no answer recorded for {', '.join(missing)}"))
            elif wrong:
                out.append(TaskResult(key, False, "; ".join(wrong)))
            else:
                out.append(TaskResult(key, True, ", ".join(f"{q} = {given[q]}" for q in questions)))
        return out
    try:
        return observe_all()
    except READ_ERRORS as exc:   # the lab mid-change: every task fails with the same reason
        return [TaskResult(key, False, unreadable(exc)) for key in QUESTIONS]


def solve(ctx: LabContext, state: State) -> None:
    sql.record_answers(ctx, ID, truth(ctx))


LESSON = Lesson(
    id=ID, slug="read-the-cluster", title="Read the cluster",
    goal=("Find out who leads, who is the synchronous standby and on which timeline, from the three places a DBA "
          "looks: Patroni, etcd and HAProxy. Then confirm from psql which server your session really reached."),
    background=(
        "Patroni keeps the cluster's state in etcd: the leader key /service/18/main/leader names the member that "
        "holds the lock, and /service/18/main/sync the synchronous standby. `patronictl list` shows each member's "
        "role, state, timeline (TL, raised by every promotion) and lag. etcd itself is a Raft cluster of three with "
        "its own leader, unrelated to Patroni's: `ectl endpoint status -w table` shows it. HAProxy does not read "
        "etcd at all: it asks every member's REST API (/primary, /replica, over TLS) and routes 5432 to the one "
        "answering 200 on /primary, 5433 to those answering on /replica. Finally, the session you open through "
        "HAProxy tells you where it landed: inet_server_addr() is the server's address, pg_is_in_recovery() is true "
        "on a standby."),
    tasks=(
        Task("patroni", "With `pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml list`, find the leader, "
                        "the synchronous standby and the timeline; record "
                        "them as answers leader, sync_standby, timeline."),
        Task("etcd", "With `pgha-lab exec etcd1 -- ectl endpoint status -w table`, find etcd's own leader; record it "
                     "as etcd_leader (the member name, e.g. etcd2)."),
        Task("haproxy", "On HAProxy's stats page (port 8404) find which server is UP behind 'primary' (5432) and "
                        "behind 'replicas' (5433); record them as port_5432 and port_5433."),
        Task("psql", "Connect with psql through 5432 (sslmode=verify-full) and run `select inet_server_addr(), "
                     "pg_is_in_recovery()`; record the address as primary_address. Do the same on 5433 and record "
                     "what pg_is_in_recovery() said as replica_in_recovery (t or f)."),
    ),
    hints=(
        "Record an answer with psql through HAProxy: `pgha-lab psql -- -c \"insert into lesson_answers values "
        "(1, 'leader', 'NODE')\"` (lesson, question, answer; NODE the member you found). To correct an answer, "
        "insert it again: the newest row for a question counts.",
        "In `ectl endpoint status -w table` the IS LEADER column is true on one endpoint; the endpoint's address "
        "tells you which etcd node it is (`pgha-lab status` lists them).",
        "The stats page's CSV has one row per server with its status: `pgha-lab exec dbnode1 -- curl -s "
        "'http://HAPROXY_IP:8404/;csv'` (pxname, svname, ..., status).",
        "`pgha-lab psql --replica -- -c 'select pg_is_in_recovery()'` opens the session on 5433.",
    ),
    solution=(
        "pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml list\n"
        "pgha-lab exec etcd1 -- ectl endpoint status -w table\n"
        "curl -s http://HAPROXY:8404/\\;csv | cut -d, -f1,2,18      # pxname, svname, status\n"
        "pgha-lab psql -- -c 'select inet_server_addr(), pg_is_in_recovery()'\n"
        "pgha-lab psql --replica -- -c 'select inet_server_addr(), pg_is_in_recovery()'\n"
        "pgha-lab psql -- -c \"insert into lesson_answers values (1, 'leader', 'dbnode1'), (1, 'sync_standby', "
        "'dbnode2'), (1, 'timeline', '1'), (1, 'etcd_leader', 'etcd1'), (1, 'port_5432', 'dbnode1'), "
        "(1, 'port_5433', 'dbnode2'), (1, 'primary_address', '192.168.56.10'), (1, 'replica_in_recovery', 't')\"\n"
        "(with the values you actually found)"),
    start=start, check=check, solve=solve, minutes=15)
