"""Lesson 9: what a client sees across a switchover: its session through HAProxy is cut (by the old
primary shutting down on 5432, by HAProxy's shutdown-sessions on 5433), it reconnects onto the new
leader, and a libpq multi-host DSN with target_session_attrs=read-write finds the leader without HAProxy."""
from __future__ import annotations

import re
from datetime import UTC, datetime

import psycopg

from pgha_lab.context import LabContext
from pgha_lab.errors import LabError, first_line
from pgha_lab.lessons import observe, sql
from pgha_lab.lessons.model import Lesson, State, Task, TaskResult
from pgha_lab.wait import Verdict, wait_until

ID = 9
SESSIONS = f"{sql.TABLE_PREFIX}sessions"
AFTER = "after switchover"
MULTIHOST = "multihost"
# What libpq prints when the server side of a session went away: the old primary's shutdown
# ("terminating connection due to administrator command"), or a proxy closing the TCP connection
# ("SSL SYSCALL error: EOF detected", "SSL error: unexpected eof while reading", "server closed ...").
CUT_WORDS = ("terminating connection", "eof", "closed", "lost")
# One HAProxy tcplog line: client [accept date] frontend backend/server timers bytes termination_state ...
TCPLOG = re.compile(r"\] (?P<frontend>\S+) (?P<backend>[^/\s]+)/(?P<server>\S+) \S+ \S+ (?P<state>\S{2}) ")
SWITCHOVER_DEADLINE_S = 90.0


def start(ctx: LabContext) -> State:
    cluster = ctx.cluster()
    sql.prepare_answers(ctx, ID)
    with sql.connect(ctx) as conn:
        # The server fills in where each row landed and where it came from: the learner only names it.
        conn.execute(f"create table if not exists {SESSIONS} (id bigserial primary key, label text not null, "
                     "server text not null default host(inet_server_addr()), "
                     "client text not null default host(inet_client_addr()), at timestamptz not null default now())")
        conn.execute(f"delete from {SESSIONS}")
    return {"leader": cluster.leader_name, "timeline": cluster.timeline,
            "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def _cut_message(given: dict[str, str], question: str) -> str | None:
    """Why the recorded error is not that of a cut session, or None when it is."""
    if question not in given:
        return f"no answer recorded for {question}"
    if not any(word in given[question].lower() for word in CUT_WORDS):
        return f"{question} {given[question]!r} is not what libpq says when the server side went away"
    return None


def check_switchover_cut(ctx: LabContext, state: State, given: dict[str, str]) -> TaskResult:
    moved = observe.new_leader(ctx, "switchover_cut", state["leader"], int(state["timeline"]))
    if not moved.passed:
        return moved
    if observe.powered_off(ctx, state["leader"], state.get("since")):
        return TaskResult("switchover_cut", False, f"{state['leader']} was powered off or restarted since the lesson "
                                                   "began: your session was cut by that, not by a switchover "
                                                   "(`patronictl switchover`)")
    wrong = _cut_message(given, "primary_error")
    if wrong:
        return TaskResult("switchover_cut", False, wrong)
    return TaskResult("switchover_cut", True, f"{moved.reason}; your 5432 session was cut: {given['primary_error']!r}")


def haproxy_cuts(ctx: LabContext, since: str, backend: str) -> list[str]:
    """Servers of `backend` whose sessions HAProxy killed since `since` because the server was marked
    down (termination state D: on-marked-down shutdown-sessions), read from HAProxy's log."""
    out = []
    for line in ctx.docker.logs_since(ctx.topology.haproxy, since).splitlines():
        m = TCPLOG.search(line)
        if m and m["backend"] == backend and m["state"].startswith("D"):
            out.append(m["server"])
    return out


def check_replica_cut(ctx: LabContext, state: State, given: dict[str, str]) -> TaskResult:
    cut = haproxy_cuts(ctx, state["since"], "replicas")
    if not cut:
        return TaskResult("replica_cut", False, "HAProxy cut no session on 5433 since the lesson began "
                                                "(its log has no 'replicas' line with termination state D)")
    wrong = _cut_message(given, "replica_error")
    if wrong:
        return TaskResult("replica_cut", False, wrong)
    return TaskResult("replica_cut", True, f"HAProxy cut your 5433 session to {cut[-1]} when it stopped being a "
                                           f"replica: {given['replica_error']!r}")


def _rows(ctx: LabContext, label: str) -> list[tuple[str, str]]:
    """(server, client) of the rows the learner wrote under `label`, newest first, as node names."""
    with sql.connect(ctx) as conn:
        rows = conn.execute(f"select server, client from {SESSIONS} where label = %s order by id desc",
                            (label,)).fetchall()
    names = {str(n.address): n.name for n in ctx.topology.nodes}
    return [(names.get(s, s), names.get(c, c)) for s, c in rows]


def check_reconnect(ctx: LabContext, state: State) -> TaskResult:
    rows = _rows(ctx, AFTER)
    leader, proxy = ctx.cluster().leader_name, ctx.topology.haproxy.name
    if not rows:
        return TaskResult("reconnect", False, f"no row labelled {AFTER!r} in {SESSIONS}")
    server, client = rows[0]
    if leader == state["leader"]:
        return observe.needs_failover("reconnect", state, None, "switchover")
    if client != proxy:
        return TaskResult("reconnect", False, f"the row {AFTER!r} came from {client}, not through HAProxy")
    if server != leader or server == state["leader"]:
        return TaskResult("reconnect", False, f"the row {AFTER!r} landed on {server}; the new leader is {leader}")
    return TaskResult("reconnect", True, f"the reconnected session wrote on the new leader {server} through HAProxy")


def check_multihost(ctx: LabContext) -> TaskResult:
    rows = _rows(ctx, MULTIHOST)
    leader, proxy = ctx.cluster().leader_name, ctx.topology.haproxy.name
    if not rows:
        return TaskResult("multihost", False, f"no row labelled {MULTIHOST!r} in {SESSIONS}")
    server, client = rows[0]
    if client == proxy:
        return TaskResult("multihost", False, f"the row {MULTIHOST!r} came through HAProxy; connect to the db "
                                              "nodes directly with a multi-host DSN")
    if server != leader:
        return TaskResult("multihost", False, f"the row {MULTIHOST!r} landed on {server}; the leader is {leader}")
    return TaskResult("multihost", True, f"libpq found the leader {server} itself (client {client}, no HAProxy)")


def check(ctx: LabContext, state: State) -> list[TaskResult]:
    def given() -> dict[str, str]:
        return sql.answers(ctx, ID)
    return [observe.guarded("switchover_cut", lambda: check_switchover_cut(ctx, state, given())),
            observe.guarded("replica_cut", lambda: check_replica_cut(ctx, state, given())),
            observe.guarded("reconnect", lambda: check_reconnect(ctx, state)),
            observe.guarded("multihost", lambda: check_multihost(ctx))]


def multihost_dsn(ctx: LabContext, ca: str | None = None) -> str:
    """Every db node, the first one first, and libpq keeps the one that takes writes."""
    hosts = ",".join(str(n.address) for n in ctx.topology.db)
    return (f"host={hosts} port={ctx.topology.ports.postgres} dbname=postgres user=postgres "
            f"target_session_attrs=read-write sslmode=verify-full sslrootcert={ca or ctx.ca_file}")


def _session(ctx: LabContext, replica: bool) -> psycopg.Connection:
    return psycopg.connect(ctx.dsn(replica=replica), password=ctx.secrets.superuser_password, autocommit=True,
                           connect_timeout=3)


def _next_query_error(conn: psycopg.Connection) -> str:
    """The error the session's next statement meets (what psql prints before 'Attempting reset')."""
    try:
        conn.execute("select host(inet_server_addr())").fetchone()
    except psycopg.Error as exc:
        return first_line(exc)
    raise LabError("the session survived the switchover; HAProxy and PostgreSQL should both have cut it.")


def solve(ctx: LabContext, state: State) -> None:
    old = state["leader"]
    if ctx.cluster().leader_name != old:
        raise LabError(f"{old} no longer leads, so there is no switchover left to cut a session; "
                       f"`pgha-lab lesson start {ID}` begins again.")
    primary, replica = _session(ctx, replica=False), _session(ctx, replica=True)
    try:
        candidate = sql.server_name(ctx, replica)   # the standby 5433 sent us to: the next leader
        sql.server_name(ctx, primary)               # both sessions in use, as the learner's first query
        observe.patronictl(ctx, old, "switchover", "--leader", old, "--candidate", candidate, "--force")
        moved = wait_until(lambda: observe.routes_primary(ctx, "haproxy").passed, SWITCHOVER_DEADLINE_S)
        if not moved.ok:
            raise LabError(f"HAProxy did not route 5432 to the new leader in {SWITCHOVER_DEADLINE_S:.0f}s.")
        cut = wait_until(lambda: Verdict(bool(haproxy_cuts(ctx, state["since"], "replicas")),
                                         "HAProxy has not cut the 5433 session yet"), SWITCHOVER_DEADLINE_S)
        if not cut.ok:
            raise LabError(f"{cut.reason}.")
        answers = {"primary_error": _next_query_error(primary), "replica_error": _next_query_error(replica)}
    finally:
        primary.close()
        replica.close()
    sql.record_answers(ctx, ID, answers)
    with sql.connect(ctx) as conn:   # psql's "Attempting reset": a new connection through 5432
        conn.execute(f"insert into {SESSIONS} (label) values (%s)", (AFTER,))
    with psycopg.connect(multihost_dsn(ctx), password=ctx.secrets.superuser_password, autocommit=True,
                         connect_timeout=3) as conn:
        conn.execute(f"insert into {SESSIONS} (label) values (%s)", (MULTIHOST,))
    verdict = wait_until(lambda: observe.all_pass(check(ctx, state)), SWITCHOVER_DEADLINE_S, interval_s=1.0)
    if not verdict.ok:
        raise LabError(f"the reference solution did not pass: {verdict.reason}.")


LESSON = Lesson(
    id=ID, slug="client-failover", title="Client failover across a switchover",
    goal=("Keep psql sessions open through HAProxy while the leader changes, see how and why each is cut, "
          "reconnect onto the new leader, and then reach the leader without HAProxy at all with a libpq "
          "multi-host connection string."),
    background=(
        "HAProxy forwards TCP; it does not understand PostgreSQL and cannot move a session from one server to "
        "another. A session through 5432 is a TCP connection to one db node, and a switchover ends it twice over: "
        "the old primary shuts PostgreSQL down (its backends send 'FATAL: terminating connection due to "
        "administrator command' and close), and HAProxy, whose check of /primary now fails on that node, marks it "
        "DOWN. `on-marked-down shutdown-sessions` in haproxy.cfg makes HAProxy close every session still open to "
        "a server it marks down. That matters where PostgreSQL does not close them itself: a standby that is "
        "promoted keeps its sessions, so a session on 5433 would go on talking to what is now the primary; a "
        "frozen or cut-off node would leave its clients hanging until a TCP timeout. HAProxy closes the TCP "
        "connection without a TLS goodbye, so libpq reports 'SSL error: unexpected eof while reading' (what the "
        "course saw; some libpq builds say 'SSL SYSCALL error: EOF detected'), and HAProxy logs the session with "
        "termination state D. psql then says 'The connection to the server was lost. Attempting reset: "
        "Succeeded.': it opened a new connection, which HAProxy sent to the new leader. Your transaction was "
        "not carried over: whatever was not committed is gone, and an application must reconnect and retry. "
        "Without HAProxy, libpq can do the choosing itself: list every node in host= and set "
        "target_session_attrs=read-write; it tries them in order and keeps the first that accepts writes "
        "(it asks SHOW transaction_read_only, so a primary running with default_transaction_read_only=on is "
        "skipped too). target_session_attrs=primary asks only whether the server is in recovery. Either way a "
        "cut session still has to reconnect: libpq only chooses at connect time."),
    tasks=(
        Task("switchover_cut", "Open psql through 5432 and another through 5433 and run `select "
                               "inet_server_addr(), pg_is_in_recovery()` in both. Switch over with patronictl. Run "
                               "the query again in the 5432 session; record the first error line as answer "
                               "primary_error."),
        Task("replica_cut", "Run it in the 5433 session too; record its error as replica_error. Find the session in "
                            "HAProxy's log (`pgha-lab logs haproxy -n 40`): termination state D."),
        Task("reconnect", f"In the 5432 session psql has reconnected: run `insert into {SESSIONS} (label) values "
                          f"('{AFTER}')` (the server fills in where the row landed and where it came from)."),
        Task("multihost", f"Without HAProxy: connect with host=DBNODE1,DBNODE2 port=5432 "
                          f"target_session_attrs=read-write (dbnode1 first, although it is no longer the leader) and "
                          f"run `insert into {SESSIONS} (label) values ('{MULTIHOST}')`."),
    ),
    hints=(
        "Record an answer with psql: `insert into lesson_answers values (9, 'primary_error', 'FATAL: ...')` "
        "(lesson, question, answer).",
        "`pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml switchover --force` hands over to the "
        "synchronous standby; HAProxy needs a few checks to follow.",
        "In `pgha-lab logs haproxy` a session line reads `client [date] replicas replicas/dbnode2 timers bytes D- "
        "...`: D is 'the server was marked down and shutdown-sessions killed it'.",
        "The db nodes' addresses are in `pgha-lab status`; their PostgreSQL certificates name their own address, "
        "so sslmode=verify-full works straight to them. No psql on the host? `pgha-lab exec dbnode1 -- sh -c "
        "'PGPASSWORD=$PATRONI_SUPERUSER_PASSWORD psql \"host=A,B port=5432 dbname=postgres user=postgres "
        "target_session_attrs=read-write sslmode=verify-full sslrootcert=/etc/patroni/tls/ca.crt\"'`.",
    ),
    solution=(
        "pgha-lab psql                  # session A, through 5432; keep it open\n"
        "pgha-lab psql --replica        # session B, through 5433, in a second terminal\n"
        "  A and B: select inet_server_addr(), pg_is_in_recovery();\n"
        "pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml switchover --force\n"
        "  A: select 1;   -> FATAL: terminating connection due to administrator command ... Attempting reset: "
        "Succeeded.\n"
        "  B: select 1;   -> SSL error: unexpected eof while reading ... Attempting reset: Succeeded.\n"
        "pgha-lab logs haproxy -n 40 | grep ' D'\n"
        "  A: insert into lesson_answers values (9, 'primary_error', '...'), (9, 'replica_error', '...');\n"
        "  A: insert into lesson_sessions (label) values ('after switchover');\n"
        "psql \"host=192.168.56.10,192.168.56.20 port=5432 dbname=postgres user=postgres "
        "target_session_attrs=read-write sslmode=verify-full sslrootcert=certs/pgha-lab/ca.crt\" \\\n"
        "  -c \"insert into lesson_sessions (label) values ('multihost')\""),
    start=start, check=check, solve=solve, minutes=20)
