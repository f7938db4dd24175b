"""Lesson 8: where Patroni's settings live and in which order they apply: the dynamic
configuration in etcd (patronictl edit-config), a parameter that needs a restart, and the
bootstrap section of the local file, which a running cluster no longer reads."""
from __future__ import annotations

import yaml

from pgha_lab import dynamic_config
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.lessons import observe, sql
from pgha_lab.lessons.model import Lesson, State, Task, TaskResult
from pgha_lab.node_paths import PATRONI_CONFIG
from pgha_lab.rows import one_row
from pgha_lab.wait import Verdict, wait_until

ID = 8
TTL, LOOP_WAIT = 40, 5
SHARED_BUFFERS = "192MB"
SOLVE_DEADLINE_S = 120.0


def start(ctx: LabContext) -> State:
    sql.prepare_answers(ctx, ID)
    return {}


def _live_config(ctx: LabContext) -> dict:
    live = dynamic_config.read_first(ctx.probe, ctx.topology.db)
    if live is None:
        raise LabError("no db node's REST API answers GET /config")
    return live


def _file_bootstrap_ttl(ctx: LabContext, node: str) -> int:
    text = ctx.docker.exec(node, "cat", PATRONI_CONFIG).stdout
    return int(yaml.safe_load(text)["bootstrap"]["dcs"]["ttl"])


def _host_bootstrap_ttl(ctx: LabContext) -> int | None:
    """bootstrap.dcs.ttl in the host's copy of the first db node's patroni.yml (what a learner edits)."""
    try:
        doc = yaml.safe_load((ctx.paths.node_dir(observe.first_db(ctx)) / "patroni.yml").read_text())
        return int(doc["bootstrap"]["dcs"]["ttl"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def check_timings(ctx: LabContext) -> TaskResult:
    live = _live_config(ctx)
    if (live.get("ttl"), live.get("loop_wait")) != (TTL, LOOP_WAIT):
        if _host_bootstrap_ttl(ctx) == TTL:
            return TaskResult("timings", False, f"bootstrap.dcs in {observe.first_db(ctx)}'s patroni.yml says ttl "
                                                f"{TTL}, but a running cluster never reads that section again: "
                                                f"Patroni still has ttl {live.get('ttl')}. Change the dynamic "
                                                "configuration with `patronictl edit-config`")
        return TaskResult("timings", False, f"Patroni's dynamic configuration has ttl {live.get('ttl')} and "
                                            f"loop_wait {live.get('loop_wait')}, not {TTL} and {LOOP_WAIT}")
    stored = dynamic_config.read_stored(ctx.probe, ctx.topology.scope)[1]
    if (stored.get("ttl"), stored.get("loop_wait")) != (TTL, LOOP_WAIT):
        return TaskResult("timings", False, "etcd's /config key does not hold the new timings yet")
    return TaskResult("timings", True, f"ttl {TTL} and loop_wait {LOOP_WAIT} are in etcd, every member reads them")


def altered_by_hand(ctx: LabContext) -> list[str]:
    """Members whose postgresql.auto.conf sets shared_buffers: ALTER SYSTEM, behind Patroni's back."""
    out = []
    for node in observe.db_names(ctx):
        with sql.connect_node(ctx, node) as conn:
            if one_row(conn.execute("select count(*) from pg_file_settings where name = 'shared_buffers' "
                                    "and sourcefile like '%/postgresql.auto.conf'"))[0]:
                out.append(node)
    return out


def check_restart(ctx: LabContext) -> TaskResult:
    wanted = (_live_config(ctx).get("postgresql") or {}).get("parameters", {}).get("shared_buffers")
    by_hand = altered_by_hand(ctx)
    if by_hand:
        return TaskResult("restart", False, f"{', '.join(by_hand)} sets shared_buffers in postgresql.auto.conf "
                                            "(ALTER SYSTEM): that file is the node's own, Patroni neither shares nor "
                                            "resets it, and it wins over what Patroni writes. Set the parameter in "
                                            "the dynamic configuration (`patronictl edit-config -p`) and undo "
                                            "yours with `alter system reset shared_buffers`")
    if str(wanted).upper() != SHARED_BUFFERS.upper():
        return TaskResult("restart", False, f"the dynamic configuration sets shared_buffers to {wanted}, "
                                            f"not {SHARED_BUFFERS}")
    for node in observe.db_names(ctx):
        value, pending, _ = sql.setting(ctx, node, "shared_buffers")
        if pending:
            return TaskResult("restart", False, f"{node} is pending restart: it still runs shared_buffers = {value}")
        if value.upper() != SHARED_BUFFERS.upper():
            return TaskResult("restart", False, f"{node} runs shared_buffers = {value}")
    return TaskResult("restart", True, f"every member runs shared_buffers = {SHARED_BUFFERS}, none pending restart")


def check_bootstrap(ctx: LabContext) -> TaskResult:
    given = sql.answers(ctx, ID)
    missing = [q for q in ("bootstrap_ttl", "live_ttl") if q not in given]
    if missing:
        return TaskResult("bootstrap", False, f"no answer recorded for {', '.join(missing)}")
    file_ttl = _file_bootstrap_ttl(ctx, observe.first_db(ctx))
    live_ttl = _live_config(ctx).get("ttl")
    wrong = []
    if given["bootstrap_ttl"] != str(file_ttl):
        wrong.append(f"bootstrap_ttl {given['bootstrap_ttl']!r} is not bootstrap.dcs.ttl in {PATRONI_CONFIG} on "
                     f"dbnode1 (`grep -A4 'dcs:' {PATRONI_CONFIG}`)")
    if given["live_ttl"] != str(live_ttl):
        wrong.append(f"live_ttl {given['live_ttl']!r} is not the ttl Patroni uses now (`patronictl show-config`)")
    if wrong:
        return TaskResult("bootstrap", False, "; ".join(wrong))
    return TaskResult("bootstrap", True, f"the file's bootstrap says ttl {file_ttl}, etcd says {live_ttl}: "
                                         "etcd wins once the cluster exists")


def check(ctx: LabContext, state: State) -> list[TaskResult]:
    return [observe.guarded("timings", lambda: check_timings(ctx)),
            observe.guarded("restart", lambda: check_restart(ctx)),
            observe.guarded("bootstrap", lambda: check_bootstrap(ctx))]


def _pending_everywhere(ctx: LabContext) -> Verdict:
    """Patroni flags 'Pending restart' (what `patronictl list` shows and `restart --pending` acts on)."""
    waiting = [n.name for n in ctx.topology.db if not ctx.probe.rest(n, "/patroni")[1].get("pending_restart")]
    return Verdict(not waiting, f"{', '.join(waiting)} not pending restart yet" if waiting else "pending restart")


def solve(ctx: LabContext, state: State) -> None:
    node = observe.first_db(ctx)
    observe.patronictl(ctx, node, "edit-config", "--force", "-s", f"ttl={TTL}", "-s", f"loop_wait={LOOP_WAIT}",
                       "-p", f"shared_buffers={SHARED_BUFFERS}")
    # Each member reads the new configuration on its next HA loop and flags the restart.
    verdict = wait_until(lambda: _pending_everywhere(ctx), 3 * LOOP_WAIT + 30, interval_s=1.0)
    if not verdict.ok:
        raise LabError(f"the members did not see the new shared_buffers: {verdict.reason}.")
    observe.patronictl(ctx, node, "restart", ctx.topology.scope, "--pending", "--force")
    sql.record_answers(ctx, ID, {"bootstrap_ttl": str(_file_bootstrap_ttl(ctx, node)),
                                 "live_ttl": str(_live_config(ctx).get("ttl"))})
    verdict = wait_until(lambda: observe.all_pass(check(ctx, state)), SOLVE_DEADLINE_S, interval_s=1.0)
    if not verdict.ok:
        raise LabError(f"the reference solution did not take effect in {SOLVE_DEADLINE_S:.0f}s: {verdict.reason}.")


LESSON = Lesson(
    id=ID, slug="settings-order", title="Patroni settings and the order they apply",
    goal=("Change Patroni's timings and a PostgreSQL parameter the way a running cluster expects it, see which "
          "changes need a restart, and find out why editing the bootstrap section of /etc/patroni/config.yml "
          "on a running cluster changes nothing."),
    background=(
        "Patroni reads settings from three places. The local file /etc/patroni/config.yml holds what is "
        "particular to a node (its name, addresses, certificates, listen, and postgresql.parameters such as "
        "ssl_cert_file). Its bootstrap.dcs section is read exactly once: when the cluster is first initialised, "
        "Patroni copies it into etcd as the key /service/18/main/config. From then on that key, the dynamic "
        "configuration, is the truth for cluster-wide settings (ttl, loop_wait, retry_timeout, synchronous_mode, "
        "postgresql.parameters); `patronictl edit-config` (or PATCH /config on the REST API) changes it and every "
        "member picks it up on its next HA loop. A parameter in the local file's postgresql.parameters wins over "
        "the same one in the dynamic configuration; a few (listen_addresses, port) Patroni computes from "
        "postgresql.listen itself. PostgreSQL applies most parameters on reload, but some (shared_buffers, "
        "max_connections, wal_level) only at a restart: Patroni writes them to postgresql.conf, reloads, and "
        "patronictl list shows 'Pending restart' until you run `patronictl restart`."),
    tasks=(
        Task("timings", f"With `patronictl edit-config`, set ttl to {TTL} and loop_wait to {LOOP_WAIT}; check with "
                        "`patronictl show-config` and in etcd (`ectl get /service/18/main/config`)."),
        Task("restart", f"Set the PostgreSQL parameter shared_buffers to {SHARED_BUFFERS} with `patronictl "
                        "edit-config`, see 'Pending restart' in `patronictl list`, then apply it with `patronictl "
                        "restart`."),
        Task("bootstrap", "Read bootstrap.dcs.ttl in /etc/patroni/config.yml on dbnode1 and the ttl Patroni "
                          "actually uses (`patronictl show-config`); record them as answers bootstrap_ttl and "
                          "live_ttl in lesson_answers (lesson 8)."),
    ),
    hints=(
        "`patronictl -c /etc/patroni/config.yml edit-config -s ttl=40 -s loop_wait=5` changes values without an "
        "editor; `-p name=value` sets a PostgreSQL parameter.",
        "`patronictl restart 18/main --pending` restarts only the members that wait for it.",
        "`pgha-lab exec dbnode1 -- grep -A4 'dcs:' /etc/patroni/config.yml` shows the bootstrap values; record "
        "with `pgha-lab psql -- -c \"insert into lesson_answers values (8, 'bootstrap_ttl', 'VALUE')\"`.",
    ),
    solution=("pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml edit-config --force "
              f"-s ttl={TTL} -s loop_wait={LOOP_WAIT} -p shared_buffers={SHARED_BUFFERS}\n"
              "pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml list        # Pending restart\n"
              "pgha-lab exec dbnode1 -- patronictl -c /etc/patroni/config.yml restart 18/main --pending --force\n"
              "pgha-lab exec dbnode1 -- grep -A3 'dcs:' /etc/patroni/config.yml\n"
              "pgha-lab psql -- -c \"insert into lesson_answers values (8, 'bootstrap_ttl', '<file>'), "
              f"(8, 'live_ttl', '{TTL}')\""),
    start=start, check=check, solve=solve, minutes=20)
