"""The lessons' baseline, and how far the live lab is from it: what every member really runs,
compared with what the lab renders and bootstraps, as a list of differences a reset can undo.

Read from the lab the way a DBA would look: Docker (every node running, on the network), Patroni
(roles, tags, the dynamic configuration), each member's PostgreSQL (postgresql.auto.conf through
pg_file_settings, every parameter Patroni sets against what runs, pending restarts, pg_hba.conf,
ALTER ROLE/DATABASE settings), the files on the host against a fresh rendering and the files each
node runs against the host's, HAProxy's routing, etcd's keys, and the lessons' tables. Each
difference says where the learner can see it and which undo applies; nothing here changes the lab.
"""
from __future__ import annotations

import json
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from pgha_lab import dynamic_config, health, render
from pgha_lab.context import LabContext
from pgha_lab.errors import first_line
from pgha_lab.gateway import volume_name
from pgha_lab.lessons import sql
from pgha_lab.render import patroni
from pgha_lab.rolling import staleness
from pgha_lab.rows import one_row
from pgha_lab.wait import Verdict

# How each difference is undone (reset.py acts on these).
HEAL, FILE, RESTART_NODE, CONFIG, ALTER_SYSTEM, ROLE_SETTINGS, RESTART_PG, RELOAD, ETCD_KEY, TABLES, ROLES, WAIT = (
    "heal", "render the file", "restart the node", "restore the dynamic configuration", "ALTER SYSTEM RESET ALL",
    "reset role and database settings", "restart PostgreSQL", "reload Patroni", "delete the key", "drop the tables",
    "switch over", "wait")

# Patroni's own keys under /service/<scope>/ (members/ has one per db node); /failover is a switchover
# or failover request Patroni clears itself once done (it writes `{}` there, the key stays): waited
# for, never deleted under it, unless scheduled for later (what `patronictl flush` cancels).
PATRONI_KEYS = ("config", "failsafe", "history", "initialize", "leader", "status", "sync")
REQUEST_KEY = "failover"
_MEMORY = re.compile(r"^(\d+)\s*(B|kB|MB|GB|TB)$")
_UNITS = {"B": 1, "kB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


@dataclass(frozen=True)
class Difference:
    text: str               # what differs and where the learner can see it
    undo: str               # which of the undos above applies
    node: str | None = None
    item: str = ""          # what the undo acts on: the file, the etcd key


def verdict(differences: list[Difference], ok_text: str) -> Verdict:
    if not differences:
        return Verdict(True, ok_text)
    return Verdict(False, "; ".join(d.text for d in differences), differences[0].node)


# -- what the baseline is ------------------------------------------------------------------------
def patroni_settings(ctx: LabContext, node: str) -> dict[str, Any]:
    """The Patroni configuration the lab renders for one db node, with the lessons' default settings."""
    return patroni.settings(ctx.topology, ctx.topology.node(node), ctx.profile)


def baseline_config(ctx: LabContext) -> dict[str, Any]:
    """The dynamic configuration the lab bootstraps with, in its current timing profile."""
    return patroni_settings(ctx, ctx.topology.db[0].name)["bootstrap"]["dcs"]


def expected_parameters(ctx: LabContext, node: str, config: dict[str, Any] | None = None) -> dict[str, str]:
    """Every PostgreSQL parameter Patroni is told to set on `node`: the dynamic configuration's, then
    the node's own file's, which wins (`config`: the dynamic configuration to expect)."""
    dynamic = ((config or baseline_config(ctx)).get("postgresql") or {}).get("parameters") or {}
    local = patroni_settings(ctx, node)["postgresql"].get("parameters") or {}
    return {k: str(v) for k, v in {**dynamic, **local}.items()}


def effective_tags(tags: dict[str, Any]) -> dict[str, Any]:
    """Tags as Patroni reports them: a false boolean is the same as no tag."""
    return {k: v for k, v in tags.items() if v is not False}


def same_setting(running: str, wanted: str) -> bool:
    """SHOW's spelling against the configuration's ('128MB' = '131072kB'; 'on' = 'ON')."""
    if running.lower() == wanted.lower():
        return True
    a, b = _MEMORY.match(running.strip()), _MEMORY.match(wanted.strip())
    return bool(a and b and int(a[1]) * _UNITS[a[2]] == int(b[1]) * _UNITS[b[2]])


def hba_lines(text: str) -> list[str]:
    """pg_hba.conf's rules, comments and spacing left out."""
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


# -- readings ------------------------------------------------------------------------------------
def rendered_files(ctx: LabContext) -> dict[tuple[str, Path], str]:
    """(node, host path) -> what pgha-lab renders there now, for every node's files (not its TLS folder)."""
    paths, topo, profile = ctx.paths, ctx.topology, ctx.profile
    bootstrap = render.bootstrap_profile(paths, profile)
    pinned = render.bootstrap_settings(paths, ctx.settings)
    return {(node.name, paths.node_dir(node.name) / f.name): f.content
            for node in topo.nodes for f in render.node_files(topo, node, profile, bootstrap, pinned)}


def host_files(ctx: LabContext) -> list[Difference]:
    """Host files that differ from what pgha-lab renders now (a learner edited patroni.yml, say)."""
    out = []
    for (node, target), content in rendered_files(ctx).items():
        try:
            same = target.read_text() == content
        except OSError:
            same = False
        if not same:
            shown = target.relative_to(ctx.paths.home)
            out.append(Difference(f"{shown} differs from what pgha-lab renders for {node} "
                                  "(`pgha-lab config show` prints what the node runs)", FILE, node, str(shown)))
    return out


def running_files(ctx: LabContext, states=None) -> list[Difference]:
    return [Difference(f"{f.text()} (`pgha-lab status` names it)", RESTART_NODE, f.node)
            for f in staleness.stale_nodes(ctx, None, states)]


def member(ctx: LabContext, name: str, config: dict[str, Any] | None) -> list[Difference]:
    """One member's PostgreSQL, asked directly: ALTER SYSTEM's file, pending restarts, every parameter
    Patroni sets against what runs, and pg_hba.conf against the rendered rules."""
    wanted = expected_parameters(ctx, name, config)
    hba = [" ".join(r.split()) for r in patroni_settings(ctx, name)["postgresql"]["pg_hba"]]
    out = []
    try:
        with sql.connect_node(ctx, name) as conn:
            auto = conn.execute("select name, setting from pg_file_settings where sourcefile like "
                                "'%/postgresql.auto.conf' order by seqno").fetchall()
            pending = [r[0] for r in conn.execute("select name from pg_settings where pending_restart order by name")]
            running = dict(conn.execute("select name, current_setting(name) from pg_settings where name = any(%s)",
                                        (list(wanted),)).fetchall())
            sources = dict(conn.execute("select name, coalesce(sourcefile, source) from pg_settings "
                                        "where name = any(%s)", (list(wanted),)).fetchall())
            rules = hba_lines(one_row(conn.execute("select pg_read_file('pg_hba.conf')"))[0])
    except psycopg.Error as exc:
        return [Difference(f"{name}'s PostgreSQL does not answer ({first_line(exc)})", WAIT, name)]
    if auto:
        sets = ", ".join(f"{k} = '{v}'" for k, v in auto)
        out.append(Difference(f"{name}'s postgresql.auto.conf sets {sets} (ALTER SYSTEM; "
                              "`select * from pg_file_settings` shows it)", ALTER_SYSTEM, name))
    if pending:
        out.append(Difference(f"{name} waits for a restart to apply {', '.join(pending)} "
                              "(`patronictl list` says 'Pending restart')", RESTART_PG, name))
    drifted = [k for k, v in wanted.items() if k in running and not same_setting(running[k], v)]
    if drifted and not pending:
        shown = ", ".join(f"{k} = {running[k]} (from {sources.get(k)}), the baseline {wanted[k]}" for k in drifted)
        out.append(Difference(f"{name} runs {shown} (`show {drifted[0]}` on {name})", RESTART_PG, name))
    if rules != hba:
        out.append(Difference(f"{name}'s pg_hba.conf differs from the rules in its patroni.yml "
                              "(`select * from pg_hba_file_rules` on it)", RESTART_PG, name))
    return out


def role_settings(ctx: LabContext) -> list[Difference]:
    """ALTER ROLE ... SET and ALTER DATABASE ... SET (pg_db_role_setting), read through 5432."""
    try:
        with sql.connect(ctx) as conn:
            rows = conn.execute("select coalesce(r.rolname, '(every role)'), coalesce(d.datname, '(every database)'), "
                                "array_to_string(s.setconfig, ', ') from pg_db_role_setting s "
                                "left join pg_roles r on r.oid = s.setrole "
                                "left join pg_database d on d.oid = s.setdatabase").fetchall()
    except psycopg.Error as exc:
        return [Difference(f"SQL through HAProxy failed: {first_line(exc)}", WAIT)]
    return [Difference(f"{role} in {db} sets {conf} (ALTER ROLE/DATABASE ... SET; `\\drds` in psql shows it)",
                       ROLE_SETTINGS) for role, db, conf in rows]


def tags(ctx: LabContext, cluster) -> list[Difference]:
    out = []
    for m in cluster:
        if m.name not in {n.name for n in ctx.topology.db}:
            continue
        want = effective_tags(patroni_settings(ctx, m.name)["tags"])
        have = effective_tags(m.tags)
        if have != want:
            extra = {k: v for k, v in have.items() if want.get(k) != v}
            missing = sorted(k for k in want if k not in have)
            said = ", ".join([f"{k}: {v}" for k, v in sorted(extra.items())] + [f"no {k}" for k in missing])
            out.append(Difference(f"{m.name}'s Patroni runs with tags {said} (`patronictl list`, column Tags)",
                                  RELOAD, m.name))
    return out


def request_pending(key: str, value: str | None, scope: str) -> list[Difference]:
    """What Patroni's /failover key asks for: nothing once Patroni has cleaned it up (`{}`, or gone);
    a switchover scheduled for later is cancelled (deleted, as `patronictl flush` does); any other
    request is Patroni's to carry out, and waited for."""
    try:
        request = json.loads(value) if value else {}
    except ValueError:
        request = None
    if not isinstance(request, dict):
        return [Difference(f"etcd's {key} holds {value!r}, which is no request Patroni wrote", ETCD_KEY, item=key)]
    if not request:
        return []
    if request.get("scheduled_at"):
        return [Difference(f"a switchover is scheduled for {request['scheduled_at']} (`patronictl flush {scope} "
                           f"switchover` cancels it)", ETCD_KEY, item=key)]
    return [Difference(f"a switchover or failover request is still pending in etcd ({key}: {value})", WAIT)]


def etcd_keys(ctx: LabContext) -> list[Difference]:
    """Keys in etcd besides Patroni's own for this cluster (a learner's `ectl put`, a request left behind)."""
    keys = ctx.probe.etcd_keys()
    if keys is None:
        return [Difference("no etcd member answers a key listing", WAIT)]
    prefix = f"/service/{ctx.topology.scope}/"
    allowed = {prefix + k for k in PATRONI_KEYS} | {f"{prefix}members/{n.name}" for n in ctx.topology.db}
    out = []
    if prefix + REQUEST_KEY in keys:
        answered, value = ctx.probe.etcd_read(prefix + REQUEST_KEY)
        out = [Difference("no etcd member answers a key read", WAIT)] if not answered else \
            request_pending(prefix + REQUEST_KEY, value, ctx.topology.scope)
    return out + [Difference(f"etcd holds {key}, which Patroni did not write (`ectl get {key}`)", ETCD_KEY, item=key)
                  for key in keys if key not in allowed and key != prefix + REQUEST_KEY
                  and not key.startswith(f"{prefix}members/")]


def differences(ctx: LabContext, config: dict[str, Any] | None = None) -> list[Difference]:
    """Everything that differs from the baseline now, most basic first (`config`: the dynamic
    configuration to expect instead of the baseline's, as the reset runs with). Every source is read
    at once; a reading costs its slowest source."""
    topo, probe = ctx.topology, ctx.probe
    with ThreadPoolExecutor(max_workers=len(topo.db) + 12, thread_name_prefix="baseline") as pool:
        # Each source its own type: the reading below picks each one out by name.
        jobs: dict[str, Future[Any]] = {
            "states": pool.submit(ctx.docker.states, list(topo.nodes)), "volumes": pool.submit(ctx.docker.volumes),
            "files": pool.submit(host_files, ctx), "etcd": pool.submit(probe.etcd),
            "cluster": pool.submit(probe.cluster), "haproxy": pool.submit(probe.haproxy),
            "config": pool.submit(dynamic_config.read_member, probe, topo.db[0]),
            "running": pool.submit(running_files, ctx, None), "roles": pool.submit(role_settings, ctx),
            "keys": pool.submit(etcd_keys, ctx), "tables": pool.submit(_stray_tables, ctx)}
        members = [pool.submit(member, ctx, n.name, config) for n in topo.db]
        got = {name: job.result() for name, job in jobs.items()}
        per_member = [job.result() for job in members]
    states, files, cluster = got["states"], got["files"], got["cluster"]
    down = [Difference(f"{n.name} is {states[n.name].text()}", HEAL, n.name) for n in topo.nodes
            if states[n.name].condition != "running"]
    stray = sorted(v for v in got["volumes"] if v.endswith("-data")
                   and v not in {volume_name(ctx.project, n.name) for n in topo.nodes})
    down += [Difference(f"data volumes of nodes no longer in the lab: {', '.join(stray)}", HEAL)] if stray else []
    if down:
        return down + files
    lab_health = health.assess_lab(got["etcd"], cluster, got["haproxy"], [n.name for n in topo.db],
                                   sync_required=ctx.settings.expects_sync_standby)
    if not lab_health.ok:
        return [Difference(lab_health.reason, WAIT, lab_health.culprit)] + files
    out: list[Difference] = []
    strangers = [m.name for m in cluster if m.name not in {n.name for n in topo.db}]
    if strangers:
        out.append(Difference(f"{', '.join(strangers)} is registered with Patroni but not part of the lab", HEAL))
    first, second = topo.db[0].name, topo.db[1].name
    if cluster.leader_name != first:
        out.append(Difference(f"{cluster.leader_name} leads, not {first}", ROLES, cluster.leader_name))
    elif second not in [m.name for m in cluster.sync_standbys]:
        out.append(Difference(f"{second} is not the synchronous standby", WAIT, second))
    live = got["config"]
    patch = dynamic_config.patch_replacing(live, config or baseline_config(ctx)) if live is not None \
        else {"(unreadable)": None}
    if patch:
        out.append(Difference(f"Patroni's dynamic configuration differs from the baseline in "
                              f"{', '.join(sorted(patch))} (`patronictl show-config`)",
                              CONFIG if live is not None else WAIT))
    for found in per_member:
        out += found
    return out + tags(ctx, cluster) + files + got["running"] + got["roles"] + got["keys"] + got["tables"]


def _stray_tables(ctx: LabContext) -> list[Difference]:
    try:
        stray = sql.stray_tables(ctx)
    except psycopg.Error as exc:   # HAProxy may still be moving 5432: a reading, not a failure
        return [Difference(f"SQL through HAProxy failed: {first_line(exc)}", WAIT)]
    return [Difference(f"lesson tables left: {', '.join(stray)}", TABLES)] if stray else []


def ok_text(ctx: LabContext) -> str:
    first, second = ctx.topology.db[0].name, ctx.topology.db[1].name
    return (f"baseline: {first} leads, {second} synchronous standby, {ctx.profile.name} timings, no faults; every "
            f"member runs the rendered files, tags, parameters and pg_hba, nothing in postgresql.auto.conf")


def assess(ctx: LabContext, config: dict[str, Any] | None = None) -> Verdict:
    return verdict(differences(ctx, config), ok_text(ctx))
