"""`up --bare`: the nodes powered on like fresh VMs, as ordered steps over one run (the ready lab's
`up` is lifecycle.py, whose waits it reuses: so it sits beside it, above bare/, whose images and
survey it starts and reads). Certificates, secrets and configs are made on the host for the exported
playbook to install (deploy/); nothing of them reaches a node. A lab the playbook has configured
boots its enabled units, so `up` then also waits for the lab's health, as the ready lab's does."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pgha_lab import lab_settings, lifecycle, profiles, render
from pgha_lab.bare import images, survey
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.gateway import Engine, require_compose
from pgha_lab.render import compose
from pgha_lab.term.progress import Progress
from pgha_lab.wait import wait_until

BOOT_DEADLINE_S = 120.0


@dataclass
class BareUpRun:
    ctx: LabContext
    progress: Progress
    profile_request: str | None
    pg_install: str
    deadline_s: float
    settings_request: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    chosen_profile: profiles.Profile | None = None   # set by the first step, _refuse
    settings: lab_settings.LabSettings = lab_settings.DEFAULT
    readings: list[survey.NodeReading] = field(default_factory=list)

    @property
    def profile(self) -> profiles.Profile:
        """The profile _refuse chose, which every later step reads."""
        if self.chosen_profile is None:
            raise RuntimeError("a step read the profile before _refuse chose it")
        return self.chosen_profile


@dataclass
class BareUpOutcome:
    ctx: LabContext
    profile: str
    readings: list[survey.NodeReading]
    configured: bool
    seconds: float

    def text(self) -> str:
        t = self.ctx.topology
        lines = [f"Bare lab {t.project!r} is up ({self.seconds:.0f}s): {len(t.nodes)} nodes booted systemd, "
                 + ("the cluster the playbook built is healthy." if self.configured else "nothing configured yet.")]
        lines += [f"  {r.text()}" for r in self.readings]
        if not self.configured:
            lines += [
                "Build it by hand on the nodes (`pgha-lab exec etcd1 -- bash`), or let Ansible build it:",
                (f"  pgha-lab --project {t.project} export ansible" if t.project != "pgha-lab"
                 else "  pgha-lab export ansible"),
            ]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"project": self.ctx.project, "bare": True, "profile": self.profile, "seconds": round(self.seconds, 1),
                "configured": self.configured, "nodes": [r.__dict__ for r in self.readings]}


def _refuse(run: BareUpRun) -> None:
    Engine.connect()
    require_compose()
    lifecycle.check_ports_free(run.ctx)
    run.chosen_profile = profiles.get(run.profile_request or run.ctx.saved_profile or profiles.DEFAULT)
    run.settings = lab_settings.requested(run.ctx.settings, **run.settings_request).validate(len(run.ctx.topology.db))


def _build_images(run: BareUpRun) -> None:
    built = images.ensure_built(
        run.ctx.paths, pg_install=run.pg_install,
        announce=lambda roles: run.progress.info(f"building images: {', '.join(roles)} missing or out of date"))
    if not built:
        run.progress.info("bare node images match this checkout")


def _write_files(run: BareUpRun) -> None:
    # The host keeps what the playbook will install (certificates, secrets, each node's configs);
    # the nodes get none of it: compose mounts nothing but the data volumes.
    ctx = run.ctx
    with run.progress.step("Writing the compose file, and certificates, secrets and configs for the playbook"):
        render.write_lab(ctx.paths, ctx.topology, run.profile, settings=run.settings)
        compose.write_compose(ctx.topology, ctx.paths)
        ctx.save_profile(run.profile.name)
        lab_settings.save(ctx.paths.state, run.settings)


def _start_nodes(run: BareUpRun) -> None:
    with run.progress.step(f"Powering on {len(run.ctx.topology.nodes)} nodes"):
        run.ctx.docker.compose("up", "-d", "--no-recreate", "--remove-orphans")


def _wait_booted(run: BareUpRun) -> None:
    ctx = run.ctx
    with run.progress.step("Waiting for systemd to finish booting on every node"):
        def check():
            run.readings = survey.read(ctx)
            return survey.booted(run.readings)
        verdict = wait_until(check, min(BOOT_DEADLINE_S, run.deadline_s), interval_s=0.5,
                             on_verdict=lambda v: run.progress.detail(v.reason))
        if not verdict.ok:
            raise LabError(f"the bare lab did not boot in {BOOT_DEADLINE_S:.0f}s: {verdict.reason}; "
                           f"`pgha-lab exec {verdict.culprit or ctx.topology.etcd[0].name} -- systemctl --failed` "
                           f"shows what failed.")


def _wait_configured(run: BareUpRun) -> None:
    """A lab the playbook built starts its enabled units at boot: wait for them and for health."""
    ctx = run.ctx
    if not survey.configured(run.readings):
        return
    waits = [lifecycle.Wait("Waiting for the enabled units to start",
                                lambda: survey.services_started(survey.read(ctx))),
             *lifecycle.health_waits(ctx.probe, [n.name for n in ctx.topology.db],
                                         run.settings.expects_sync_standby)]
    lifecycle.wait_for(run.progress, waits, ctx, max(60.0, run.deadline_s - (time.monotonic() - run.started)))


BARE_UP_STEPS: tuple[Callable[[BareUpRun], None], ...] = (
    _refuse, _build_images, _write_files, _start_nodes, _wait_booted, _wait_configured)


def bring_up(ctx: LabContext, *, profile: str | None, pg_install: str, progress: Progress,
             deadline_s: float = lifecycle.UP_DEADLINE_S, settings: dict[str, Any] | None = None) -> BareUpOutcome:
    if not ctx.topology.bare:
        raise LabError("bring_up of bare/ is for a bare lab; the ready lab's `up` is lifecycle.bring_up.")
    run = BareUpRun(ctx, progress, profile, pg_install, deadline_s, settings_request=settings or {})
    for step in BARE_UP_STEPS:
        step(run)
    return BareUpOutcome(ctx, run.profile.name, run.readings, survey.configured(run.readings),
                         time.monotonic() - run.started)
