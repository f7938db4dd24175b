"""Carrying out a rolling plan on a running lab: one node at a time, each followed by a wait on a
real readiness signal (the node answers, then the one health verdict), stopping at the first step
that does not come back."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import takewhile

from pgha_lab import dynamic_config, roles
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.rolling import staleness
from pgha_lab.rolling.plan import RESTART, SWITCHOVER, Roles, Step, plan, plan_text
from pgha_lab.term.progress import Progress
from pgha_lab.topology import Role, TopologyError
from pgha_lab.wait import Verdict, wait_until

# A roll replaces containers: on a bare lab that would wipe what its builder did on the nodes.
BARE = ("a bare lab's nodes run what you (or the playbook) installed, and a roll would replace them; restart a "
        "service on its node instead (`pgha-lab exec NODE -- systemctl restart patroni`), or run the playbook again.")

STEP_DEADLINE_S = 180.0   # one node back (etcd rejoin, PostgreSQL recovery, streaming), seed timings, a busy laptop
REST_TIMEOUT_S = 10.0


@dataclass
class StepTiming:
    step: Step
    seconds: float


@dataclass
class RollOutcome:
    steps: list[StepTiming] = field(default_factory=list)
    seconds: float = 0.0


def current_roles(ctx: LabContext) -> Roles:
    etcd_leader = next((ep.name for ep in ctx.probe.etcd() if ep.is_leader), None)
    cluster = ctx.cluster()
    return Roles(etcd_leader, cluster.leader_name, tuple(m.name for m in cluster.sync_standbys))


def resolve_nodes(ctx: LabContext, names: list[str]) -> list[str]:
    """The nodes asked for, checked against the topology (every node when none is named)."""
    if not names:
        return ctx.topology.names
    out = []
    for name in names:
        try:
            out.append(ctx.topology.node(name).name)
        except TopologyError as exc:
            raise LabError(str(exc)) from None
    return list(dict.fromkeys(out))


def require_rollable(ctx: LabContext, what: str) -> None:
    """Refuse, before anything changes, a lab in which restarting one node more could cost more
    than a switchover: a node down, paused or cut off, or a lab that is not healthy."""
    for node in ctx.topology.nodes:
        state = ctx.docker.state(node)
        if state.status == "paused":
            raise LabError(f"{node.name} is paused; resume it first (`pgha-lab "
                           f"chaos heal-all`), then run {what} again.")
        if not state.running:
            raise LabError(f"{node.name} is {state.status}; bring it back first (`pgha-lab up` or "
                           f"`pgha-lab chaos heal-all`), then run {what} again.")
        if not state.on_lab_network:
            raise LabError(f"{node.name} is cut off the lab network; reconnect it first (`pgha-lab chaos heal-all`), "
                           f"then run {what} again.")
    verdict = ctx.health()
    if not verdict.ok:
        raise LabError(f"the lab is not healthy ({verdict.reason}), so restarting nodes one by one could cost more "
                       f"than a switchover; bring it back first (`pgha-lab status` shows it), then run {what} again.")


def _node_back(ctx: LabContext, step: Step, since: float) -> Verdict:
    node = ctx.topology.node(step.node)
    if step.role is Role.ETCD:
        ep = ctx.probe.etcd_status(node)
        if ep.error:
            return Verdict(False, f"{node.name} does not answer yet ({ep.error})", node.name)
        # Every Patroni has reached etcd since the member came back: the next restart must not
        # find one still retrying a connection the last restart broke.
        for db in ctx.topology.db:
            code, doc = ctx.probe.rest(db, "/patroni")
            seen = doc.get("dcs_last_seen")
            if code == 200 and isinstance(seen, (int, float)) and seen < since:
                return Verdict(False, f"{db.name} has not reached etcd since {node.name} came back", db.name)
    elif step.role is Role.DB:
        code, doc = ctx.probe.rest(node, "/patroni")
        if code != 200:
            return Verdict(False, f"{node.name}'s REST API does not answer yet", node.name)
        if doc.get("state") != "running" or doc.get("role") not in ("replica", "sync_standby"):
            return Verdict(False, f"{node.name} is {doc.get('state')} as {doc.get('role')}", node.name)
        if doc.get("replication_state", "streaming") != "streaming":
            return Verdict(False, f"{node.name} is {doc.get('replication_state')}, not streaming", node.name)
    return ctx.health()


# The image's own copy step (images/base/entrypoint-common.sh), run again for a reload in place.
INSTALL_TLS = ". /usr/local/lib/pgha-lab/entrypoint-common.sh && pgha_install_tls {dest} {owner}"


def _reload_haproxy_tls(ctx: LabContext, step: Step, progress: Progress) -> bool:
    """HAProxy whose only change is its certificates reloads in place instead of restarting: the
    master re-reads them and hands the listening sockets over, so no client connection drops.
    False when more than certificates changed (its config is a pinned single-file mount: only a
    new container sees a new one)."""
    node = ctx.topology.node(step.node)
    files = staleness.survey(ctx, [node])[0]
    if files.stale != [staleness.CERTIFICATES]:
        return False
    progress.detail("only its certificates changed: reloading in place, connections kept")
    ctx.docker.exec(node, "sh", "-c", INSTALL_TLS.format(dest=staleness.TLS_DIRS[Role.HAPROXY], owner="haproxy"))
    ctx.docker.signal(node, "USR2")   # master-worker reload (haproxy -W)
    return True


def _restart(ctx: LabContext, step: Step, deadline_s: float, progress: Progress) -> None:
    if not (step.role is Role.HAPROXY and _reload_haproxy_tls(ctx, step, progress)):
        ctx.docker.recreate(step.node)
    since = time.time()   # wall clock: Patroni reports dcs_last_seen as a Unix time
    verdict = wait_until(lambda: _node_back(ctx, step, since), deadline_s,
                         on_verdict=lambda v: progress.detail(v.reason))
    if not verdict.ok:
        raise LabError(f"{step.node} did not come back within {deadline_s:.0f}s of its restart ({verdict.reason}); "
                       f"the steps after it were not run: `pgha-lab logs {verdict.culprit or step.node}` shows why, "
                       f"and `pgha-lab roll` resumes once it is fixed.")


def _switchover(ctx: LabContext, step: Step, deadline_s: float, progress: Progress) -> None:
    cluster = ctx.cluster()
    if cluster.leader_name != step.node:
        progress.detail(f"{step.node} no longer leads; nothing to switch over")
        return
    targets = [m.name for m in cluster.sync_standbys if m.name != step.node] or \
              [m.name for m in cluster.replicas if m.state == "streaming"]
    if not targets:
        raise LabError(f"no streaming replica to switch over to from {step.node}; `pgha-lab status` shows the lab.")
    change = roles.request_change(ctx, "switchover", targets[0])
    roles.wait_for_writes(ctx, change, deadline_s)
    verdict = wait_until(ctx.health, deadline_s, on_verdict=lambda v: progress.detail(v.reason))
    if not verdict.ok:
        raise LabError(f"after the switchover to {change.new_leader} the "
                       f"lab did not become healthy ({verdict.reason}); "
                       f"`pgha-lab status` shows it, and `pgha-lab roll` resumes once it is fixed.")


def _members_paused(ctx: LabContext, paused: bool) -> Verdict:
    for db in ctx.topology.db:
        code, doc = ctx.probe.rest(db, "/patroni")
        if code != 200:
            return Verdict(False, f"{db.name}'s REST API does not answer", db.name)
        if bool(doc.get("pause")) != paused:
            return Verdict(False, f"{db.name} has not {'entered' if paused else 'left'} maintenance mode yet", db.name)
    return Verdict(True, "every member " + ("paused" if paused else "managing PostgreSQL again"))


def _set_maintenance(ctx: LabContext, paused: bool, deadline_s: float, progress: Progress) -> None:
    """`patronictl pause`/`resume` through the REST API, then wait until every member has read it."""
    node = dynamic_config.leader_node(ctx) or ctx.topology.db[0]
    # null drops the key again, so the lab's dynamic configuration ends as it began.
    dynamic_config.send(ctx, node, {"pause": True if paused else None},
                        f"Patroni refused to {'pause' if paused else 'resume'} "
                        f"({{why}}); `pgha-lab status` shows the lab.",
                        timeout=REST_TIMEOUT_S)
    verdict = wait_until(lambda: _members_paused(ctx, paused), deadline_s,
                         on_verdict=lambda v: progress.detail(v.reason))
    if not verdict.ok:
        raise LabError(f"{verdict.reason} within {deadline_s:.0f}s; `pgha-lab logs {verdict.culprit}` shows why"
                       + ("" if paused else ", and `patronictl resume` ends maintenance mode by hand") + ".")


@contextmanager
def _maintenance_for_etcd(ctx: LabContext, steps: list[Step], deadline_s: float, progress: Progress) -> Iterator[None]:
    """Patroni in maintenance mode while etcd members restart. A member that is shutting down can
    answer the leader's lease keep-alive with a gRPC error instead of refusing the connection;
    Patroni takes that as a failed leader-lock update and demotes the primary at once
    (`demoted self because failed to update leader lock in DCS`), seconds of write downtime that
    retry_timeout does not prevent. Paused, Patroni keeps the primary running through it."""
    if not any(s.role is Role.ETCD and s.action == RESTART for s in steps) or not ctx.topology.db:
        yield
        return
    config = dynamic_config.read_member(ctx.probe, ctx.topology.db[0])
    if config is not None and config.get("pause"):   # the user's own maintenance mode: leave it alone
        yield
        return
    with progress.step("Patroni into maintenance mode while etcd members restart (no demotion on a lost lock)"):
        _set_maintenance(ctx, True, deadline_s, progress)
    try:
        yield
    finally:
        with progress.step("Patroni out of maintenance mode"):
            _set_maintenance(ctx, False, deadline_s, progress)


def _run_steps(ctx: LabContext, steps: list[Step], first: int, last: int, outcome: RollOutcome,
               deadline_s: float, progress: Progress) -> None:
    for i in range(first, last):
        step, t0 = steps[i], time.monotonic()
        with progress.step(f"[{i + 1}/{len(steps)}] {step.title()}"):
            if step.action == RESTART:
                _restart(ctx, step, deadline_s, progress)
            elif step.action == SWITCHOVER:
                _switchover(ctx, step, deadline_s, progress)
        outcome.steps.append(StepTiming(step, time.monotonic() - t0))


def execute(ctx: LabContext, steps: list[Step], progress: Progress,
            step_deadline_s: float = STEP_DEADLINE_S) -> RollOutcome:
    outcome = RollOutcome()
    started = time.monotonic()
    # The plan puts the etcd members first: they restart in one maintenance window.
    etcd_first = len(list(takewhile(lambda s: s.role is Role.ETCD, steps)))
    with _maintenance_for_etcd(ctx, steps[:etcd_first], step_deadline_s, progress):
        _run_steps(ctx, steps, 0, etcd_first, outcome, step_deadline_s, progress)
    _run_steps(ctx, steps, etcd_first, len(steps), outcome, step_deadline_s, progress)
    # A restarted HAProxy starts with every server UP until its checks say otherwise: the roll is
    # over when the one health verdict holds, so whatever comes next (the next rotation stage) finds
    # the lab as it expects it.
    with progress.step("Waiting for the whole lab to be healthy"):
        verdict = wait_until(ctx.health, step_deadline_s, on_verdict=lambda v: progress.detail(v.reason))
    if not verdict.ok:
        raise LabError(f"after the roll the lab did not become healthy ({verdict.reason}); "
                       f"`pgha-lab status` shows it.")
    outcome.seconds = time.monotonic() - started
    return outcome


def roll(ctx: LabContext, nodes: list[str], progress: Progress, *, what: str = "`pgha-lab roll`",
         dry_run: bool = False, step_deadline_s: float = STEP_DEADLINE_S) -> tuple[list[Step], RollOutcome | None]:
    """Plan the rolling restart of `nodes` on the running lab, print the plan, then (unless
    dry_run) carry it out."""
    if ctx.topology.bare:
        raise LabError(BARE)
    if not dry_run:
        require_rollable(ctx, what)
    steps = plan(ctx.topology, nodes, current_roles(ctx))
    progress.info("rolling plan:\n" + plan_text(steps))
    if dry_run or not steps:
        return steps, None
    return steps, execute(ctx, steps, progress, step_deadline_s)
