"""Bringing a lab up and taking it down: each an ordered list of named steps over one LabContext,
in the manner of kind's create actions. A step that refuses does so before anything is changed."""
from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pgha_lab import disks, dynamic_config, health, lab_settings, node_paths, profiles, render, roles, vip
from pgha_lab.context import LabContext, load_topology
from pgha_lab.errors import LabError
from pgha_lab.gateway import Engine, require_compose, volume_name
from pgha_lab.imaging import images, recipes
from pgha_lab.paths import TRACK_FILE
from pgha_lab.probes import LabProbe, Member
from pgha_lab.render import compose
from pgha_lab.rolling import execute, staleness
from pgha_lab.term.progress import Progress
from pgha_lab.wait import Verdict, held_for, wait_until

UP_DEADLINE_S = 240.0      # first boot: initdb, a base backup, and TLS everywhere


# -- refusals ------------------------------------------------------------------------------------
def check_ports_free(ctx: LabContext) -> None:
    """Refuse, before anything starts, a published port that something else holds."""
    topo = ctx.topology
    if not topo.published_pairs():
        return
    ours: set[str] = set()
    if ctx.docker.containers().get(topo.haproxy.name) == "running":
        ours = ctx.docker.published_ports(topo.haproxy)
    for host_port, _ in topo.published_pairs():
        if str(host_port) in ours:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((topo.published.bind, host_port))
            except OSError:
                raise LabError(f"port {host_port} on {topo.published.bind} is already taken; free it or choose "
                               f"another with --publish-ports (e.g. --publish-ports 15432,15433,18404).") from None


def check_stale_dcs(ctx: LabContext) -> None:
    """Empty data nodes beside an etcd that remembers the cluster would wait for a leader forever."""
    topo = ctx.topology
    vols = ctx.docker.volumes()
    etcd_vols = {volume_name(topo.project, n.name) for n in topo.etcd}
    db_vols = {volume_name(topo.project, n.name) for n in topo.db}
    if etcd_vols & vols and not db_vols & vols:
        raise LabError("etcd still holds this lab's cluster but every db node's data is gone, so Patroni would wait "
                       "for a leader forever; run `pgha-lab down --volumes` to start clean.")


# -- waiting for health ----------------------------------------------------------------------------
@dataclass
class Wait:
    title: str
    check: Callable[[], Verdict]


def health_waits(probe: LabProbe, expected_db: list[str], sync_required: bool = True) -> list[Wait]:
    """The parts of health.assess_lab one at a time, so progress says which part is still coming."""
    return [
        Wait("Waiting for etcd: every member healthy, one leader", lambda: health.assess_etcd(probe.etcd())),
        Wait("Waiting for Patroni: one leader, replicas streaming"
             + (", a synchronous standby" if sync_required else ""),
             lambda: health.assess_patroni(probe.cluster(), expected_db, sync_required)),
        Wait("Waiting for HAProxy: 5432 to the leader, 5433 to the replicas",
             lambda: health.assess_routing(probe.haproxy(), probe.cluster())),
    ]


TAIL_LINES, TAIL_WIDTH = 12, 220   # the log shown under a failed wait: enough to see the error, no wall of text
def failure_sentence(ctx: LabContext, check: str, verdict: Verdict, deadline_s: float) -> str:
    """One sentence: which node, which check, the likely cause and the fix."""
    node = verdict.culprit
    where = f"{node} failed the check \"{check}\"" if node else f"the check \"{check}\" failed"
    head = f"the lab did not become healthy in {deadline_s:.0f}s: {where} ({verdict.reason})"
    if not node or node not in ctx.topology.names:
        return f"{head}; `pgha-lab status` shows which part is missing."
    state = ctx.docker.state(node)
    if not state.running:
        return (f"{head}; likely cause: {node} is {state.status}, so it stopped at start; "
                "fix what its log below names, then `pgha-lab up`.")
    files = staleness.check_node(ctx, ctx.topology.node(node), state.status, {}, set())
    if files.is_stale:
        return (f"{head}; likely cause: {node} runs older {', '.join(files.stale)} than the host's, so its peers "
                f"reject it; fix: `pgha-lab roll --stale` applies them one node at a time.")
    log = ctx.docker.logs_tail(node, health.DIVERGED_TAIL_LINES)   # read once: the checks below look at its end
    diverged = health.diverged_line(log)
    if diverged:
        return (f"{head}; likely cause: {node} left the leader's timeline and pg_rewind could not bring it back "
                f"(its log: {diverged[:TAIL_WIDTH]}); fix: clone it again from the leader with `pgha-lab exec {node} "
                f"-- patronictl -c {node_paths.PATRONI_CONFIG} reinit {ctx.topology.scope} {node} --force --wait`.")
    tail = "\n".join(log.splitlines()[-TAIL_LINES:]).lower()
    if any(word in tail for word in ("certificate", "tls:", "ssl", "bad record mac")):
        return (f"{head}; likely cause: a TLS mismatch between {node} and its peers (its log shows certificate "
                f"errors); fix: `pgha-lab roll --stale`, or `pgha-lab down` then `pgha-lab up`.")
    return f"{head}; likely cause: in its log below; fix: `pgha-lab roll {node}` restarts it in place."


def trimmed_tail(ctx: LabContext, node: str) -> str:
    lines = ctx.docker.logs_tail(node, TAIL_LINES).splitlines()
    return "\n".join(line if len(line) <= TAIL_WIDTH else line[:TAIL_WIDTH] + " …" for line in lines)


def wait_for(progress: Progress, waits: list[Wait], ctx: LabContext, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    for w in waits:
        with progress.step(w.title):
            verdict = wait_until(w.check, max(0.0, end - time.monotonic()),
                                 on_verdict=lambda v: progress.detail(v.reason))
            if not verdict.ok:
                culprit = verdict.culprit
                logs = (f"\n--- last lines of {culprit}'s log ---\n{trimmed_tail(ctx, culprit)}"
                        if culprit else "")
                raise LabError(failure_sentence(ctx, w.title, verdict, deadline_s) + logs)


# -- up ------------------------------------------------------------------------------------------------
@dataclass
class UpOutcome:
    ctx: LabContext
    profile: str
    members: list[Member] = field(default_factory=list)
    seconds: float = 0.0
    settings: lab_settings.LabSettings = lab_settings.DEFAULT

    def connect_text(self) -> str:
        t, ctx = self.ctx.topology, self.ctx
        lines = [
            "",
            f"Lab {t.project!r} is healthy ({self.profile} timings, {self.seconds:.0f}s).",
            f"Settings: {self.settings.summary()}.",
            "Connect through HAProxy (primary on 5432, replicas on 5433), TLS verified end to end:",
            f"  psql \"{ctx.dsn()}\"",
            f"  URI: {ctx.uri()}",
            f"  password: PGPASSWORD=$(sed -n 's/^PATRONI_SUPERUSER_PASSWORD=//p' {ctx.paths.secrets_file})",
            "  no psql on this host? `pgha-lab psql` runs one inside the lab.",
        ]
        if t.vip is not None and t.haproxy2 is not None:   # a VIP comes with the second HAProxy
            lines.append(f"  {t.vip} is a virtual address keepalived moves between {t.haproxy.name} and "
                         f"{t.haproxy2.name}; no host port is published with two HAProxy nodes.")
        if t.published_pairs():
            lines.append(f"  Docker Desktop: the same on {t.published.bind}:{t.published.primary} "
                         f"(replicas {t.published.replicas}).")
        stats = f"http://{t.entry_address}:{t.ports.haproxy_stats}/"
        if t.published_pairs():
            stats += f" (or http://{t.published.bind}:{t.published.stats}/)"
        lines.append(f"HAProxy stats: {stats}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"project": self.ctx.project, "profile": self.profile, "seconds": round(self.seconds, 1),
                "settings": self.settings.as_dict(),
                "members": [asdict(m) for m in self.members], "dsn": self.ctx.dsn(),
                "replica_dsn": self.ctx.dsn(replica=True)}


@dataclass
class UpRun:
    """What the up steps share: the request, and what earlier steps found."""
    ctx: LabContext
    progress: Progress
    profile_request: str | None
    pg_install: str
    deadline_s: float
    started: float = field(default_factory=time.monotonic)
    chosen_profile: profiles.Profile | None = None   # set by the first step, _refuse
    settings_request: dict[str, Any] = field(default_factory=dict)
    settings: lab_settings.LabSettings = lab_settings.DEFAULT
    running_before: set[str] = field(default_factory=set)
    changed: list[Path] = field(default_factory=list)

    @property
    def profile(self) -> profiles.Profile:
        """The profile _refuse chose, which every later step reads."""
        if self.chosen_profile is None:
            raise RuntimeError("a step read the profile before _refuse chose it")
        return self.chosen_profile


def _refuse(run: UpRun) -> None:
    Engine.connect()
    require_compose()
    check_ports_free(run.ctx)
    check_stale_dcs(run.ctx)
    disks.check_host(run.ctx.paths, run.ctx.topology)
    # An unknown saved profile is refused here, before any build.
    run.chosen_profile = profiles.get(run.profile_request or run.ctx.saved_profile or profiles.DEFAULT)
    run.settings = lab_settings.requested(run.ctx.settings, **run.settings_request).validate(len(run.ctx.topology.db))


def _build_images(run: UpRun) -> None:
    built = images.ensure_built(   # the build prints its own lines, image by image
        run.ctx.paths, pg_install=run.pg_install,
        announce=lambda roles: run.progress.info(f"building images: {', '.join(roles)} missing or out of date"))
    if not built:
        run.progress.info("node images match this checkout")


def _drop_db_nodes(run: UpRun) -> None:
    """A lab asked for fewer db nodes loses the last ones as one would retire VMs: the leader handed
    to a member that stays, then each dropped node's container, data volume and Patroni member key
    removed (no dead member left for health checks to wait on, nothing for a later growth to find).
    The members that stay keep running: nothing in their files names the others."""
    ctx = run.ctx
    if not ctx.paths.topology_file.exists():
        return
    before = ctx.with_topology(load_topology(ctx.paths))
    keep = [n.name for n in ctx.topology.db]
    dropped = [n for n in before.topology.db if n.name not in keep]
    if not dropped:
        return
    names = ", ".join(n.name for n in dropped)
    cluster = before.cluster() if before.docker.containers() else None
    if cluster is not None and cluster.leader_name not in (None, *keep):
        heir = next((m.name for m in cluster.sync_standbys if m.name in keep), keep[0])
        with run.progress.step(f"Switching over from {cluster.leader_name} to {heir} before removing {names}"):
            change = roles.request_change(before, "switchover", heir)
            roles.wait_for_writes(before, change, run.deadline_s)
    with run.progress.step(f"Removing {names}: container, data volume and Patroni member key"):
        for node in dropped:
            before.docker.remove_node(node)
            if before.topology.db_disk_size is not None:
                disks.release(disks.disk(ctx.paths, node.name))
            if cluster is not None:
                before.probe.etcd_delete(before.probe.member_key_path(node.name))


def _write_files(run: UpRun) -> None:
    ctx = run.ctx
    run.running_before = {name for name, state in ctx.docker.containers().items() if state == "running"}
    with run.progress.step("Writing certificates, secrets and node configs"):
        run.changed = render.write_lab(ctx.paths, ctx.topology, run.profile, settings=run.settings)
        compose.write_compose(ctx.topology, ctx.paths)
        ctx.save_profile(run.profile.name)
        lab_settings.save(ctx.paths.state, run.settings)


def _prepare_disks(run: UpRun) -> None:
    if run.ctx.topology.db_disk_size is None:
        return
    with run.progress.step("Mounting each db node's own data disk"):
        for line in disks.prepare(run.ctx.paths, run.ctx.topology):
            run.progress.detail(line)


def _start_nodes(run: UpRun) -> None:
    ctx = run.ctx
    if run.running_before:
        # A running lab: start what is missing or stopped, and leave every running node to the
        # rolling step, which replaces them one at a time instead of all at once.
        with run.progress.step("Starting missing or stopped nodes (running ones roll next)"):
            ctx.docker.compose("up", "-d", "--no-recreate", "--remove-orphans")
        return
    with run.progress.step(f"Starting {len(ctx.topology.nodes)} nodes"):
        ctx.docker.compose("up", "-d", "--remove-orphans")
    # Nodes recreated on newer images free the old ones, which no build has removed yet.
    recipes.prune_superseded(images.sdk(), ctx.paths)


def _restart_changed(run: UpRun) -> None:
    # Configs and TLS are read at boot (single-file mounts even pin the old file), so a running
    # node whose files, compose settings or image changed is replaced, as one would reboot a VM
    # after editing its config: one node at a time in the safe order while the lab is healthy.
    ctx = run.ctx
    if not run.running_before:
        return
    stale = staleness.stale_nodes(ctx)
    if not stale:
        return
    for f in stale:
        run.progress.info(f.text())
    names = [f.node for f in stale]
    verdict = ctx.health()
    if verdict.ok:
        execute.roll(ctx, names, run.progress, what="`pgha-lab up`")
    else:
        run.progress.info(f"the lab is not healthy ({verdict.reason}), so there is no service to keep: "
                          f"replacing {', '.join(names)} together")
        with run.progress.step(f"Replacing {', '.join(names)} with their new files"):
            ctx.docker.compose("up", "-d", "--no-deps", "--force-recreate", *names)
    recipes.prune_superseded(images.sdk(), ctx.paths)


def _wait_healthy(run: UpRun) -> None:
    ctx = run.ctx
    # The synchronous standby is waited for after the settings step: the replication mode in etcd
    # may still be the lab's previous one (async has no synchronous standby to wait for).
    waits = health_waits(ctx.probe, [n.name for n in ctx.topology.db], sync_required=False)
    if ctx.topology.vip is not None:
        # Whichever node started first may hold the VIP until haproxy's higher priority takes it back:
        # `up` ends with the VIP where the lab says it lives, so the first kill hits the known holder.
        first = ctx.topology.haproxy.name
        waits.append(Wait(f"Waiting for keepalived: the VIP {ctx.topology.vip} on {first}, taking writes",
                          vip.served_by(ctx, first)))
    wait_for(run.progress, waits, ctx, run.deadline_s)


def _apply_dcs(run: UpRun) -> None:
    with run.progress.step("Checking Patroni's timings and settings in etcd"):
        note = apply_dcs_config(run.ctx, run.profile, run.settings)
    if note.startswith("set"):
        run.progress.info(f"Patroni's dynamic configuration in etcd: {note} ({run.profile.name} profile)")
    ctx = run.ctx
    def settled() -> Verdict:
        cluster = ctx.probe.cluster()
        verdict = health.assess_standby_roles(cluster, run.settings.replication)
        if not verdict.ok:
            return verdict
        return health.assess_lab(ctx.probe.etcd(), cluster, ctx.probe.haproxy(), [n.name for n in ctx.topology.db],
                                 run.settings.expects_sync_standby)
    # A changed mode takes Patroni a loop or two, through states that look settled (the old /sync
    # key read under the new mode) and then briefly are not: the verdict must hold that long.
    changed = note.startswith("set")
    waits = [Wait(f"Waiting for the lab to run {run.settings.summary()}",
                  held_for(settled, 2 * run.profile.loop_wait + 1) if changed else settled)]
    wait_for(run.progress, waits, ctx, max(60.0, run.deadline_s - (time.monotonic() - run.started)))


UP_STEPS: tuple[Callable[[UpRun], None], ...] = (
    _refuse, _build_images, _drop_db_nodes, _write_files, _prepare_disks, _start_nodes, _restart_changed,
    _wait_healthy, _apply_dcs)


def bring_up(ctx: LabContext, *, profile: str | None, pg_install: str, progress: Progress,
             deadline_s: float = UP_DEADLINE_S, settings: dict[str, Any] | None = None) -> UpOutcome:
    """`settings`: the lab settings the command line changed (settings.requested's keywords)."""
    run = UpRun(ctx, progress, profile, pg_install, deadline_s, settings_request=settings or {})
    for step in UP_STEPS:
        step(run)
    return UpOutcome(ctx=ctx, profile=run.profile.name, members=ctx.probe.members(), settings=run.settings,
                     seconds=time.monotonic() - run.started)


def apply_dcs_timings(ctx: LabContext, profile: profiles.Profile) -> str:
    """The profile's timings with the lab's saved settings (see apply_dcs_config)."""
    return apply_dcs_config(ctx, profile, ctx.settings)


def apply_dcs_config(ctx: LabContext, profile: profiles.Profile, settings: lab_settings.LabSettings) -> str:
    """bootstrap.dcs only counts on the first boot; later profile and settings changes go to etcd
    through the REST API (what `patronictl edit-config` does), so `up --profile/--replication/...`
    works on a running lab: Patroni applies all of them without restarting PostgreSQL."""
    timings = {"ttl": profile.ttl, "loop_wait": profile.loop_wait, "retry_timeout": profile.retry_timeout}
    wanted, _ = dynamic_config.change(
        ctx, lambda live: dynamic_config.patch_merging(live, {**timings, **settings.dcs()}),
        f"Patroni refused the {profile.name} timings and settings ({settings.summary()}): {{why}}.")
    if not wanted:
        return "already " + ", ".join(f"{k} {v}" for k, v in timings.items()) + "; " + settings.summary()
    return "set " + ", ".join(f"{k} {v}" for k, v in wanted.items())


# -- down ------------------------------------------------------------------------------------------------
def take_down(ctx: LabContext, *, volumes: bool, progress: Progress) -> None:
    paths = ctx.paths
    if not paths.compose_file.exists():
        raise LabError(f"there is no lab {ctx.project!r} here ({paths.compose_file} is missing); nothing to stop.")
    if ctx.topology.bare and not volumes:
        # A bare node holds what its builder did on it (certificates, configs, the venv, units): as a
        # VM's power-off, down stops it and `up --bare` boots it again; removing it is --volumes' job.
        with progress.step("Shutting the nodes down (nodes and their data kept)"):
            ctx.docker.compose("stop")
        return
    title = "Removing nodes, network and data volumes" if volumes else "Stopping nodes (data volumes kept)"
    with progress.step(title):
        ctx.docker.compose("down", "--remove-orphans", *(["--volumes"] if volumes else []))
    if volumes:   # the next up bootstraps a new cluster, with the profile and settings it is given then
        (paths.state / render.BOOTSTRAP_PROFILE_FILE).unlink(missing_ok=True)
        (paths.state / render.BOOTSTRAP_SETTINGS_FILE).unlink(missing_ok=True)
        (paths.state / TRACK_FILE).unlink(missing_ok=True)   # what the track saw built is gone with the nodes
        released = disks.release_all(paths)
        if released:
            progress.info(f"deleted the data disks of {', '.join(released)}")
