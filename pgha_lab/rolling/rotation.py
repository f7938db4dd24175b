"""CA rotation with overlapping trust: on a running lab, three stages (tls.ROTATION_STAGES), each
rolled node by node before the next, so at no moment do two nodes stop trusting each other. On a
stopped lab the CA and every certificate are simply made again."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from pgha_lab import tls
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.rolling import execute, staleness
from pgha_lab.rolling.plan import plan, plan_text
from pgha_lab.term.progress import Progress

STAGE_TEXT = {
    "trust-both": "a new CA, trusted beside the old one by every node and the host (certificates unchanged)",
    "new-leaves": "every certificate made again from the new CA (the old CA still trusted)",
    "new-only": "the old CA dropped: every channel verifies against the new CA only",
}
WHAT = "`pgha-lab certs --rotate`"


@dataclass
class RotationOutcome:
    running: bool
    stages: list[str] = field(default_factory=list)
    rolls: list[execute.RollOutcome] = field(default_factory=list)
    seconds: float = 0.0


def _roll_stale(ctx: LabContext, progress: Progress) -> execute.RollOutcome | None:
    stale = [f.node for f in staleness.stale_nodes(ctx)]
    if not stale:
        return None
    _, outcome = execute.roll(ctx, stale, progress, what=WHAT)
    return outcome


def rotate(ctx: LabContext, progress: Progress, *, dry_run: bool = False) -> RotationOutcome:
    started = time.monotonic()
    if ctx.topology.bare:
        raise LabError(execute.BARE)
    if not ctx.is_running():
        if dry_run:
            progress.info("the lab is stopped: a new CA and new certificates would be made; "
                          "the next `pgha-lab up` starts every node with them.")
            return RotationOutcome(running=False)
        tls.ensure(ctx.paths, ctx.topology, rotate=True)
        return RotationOutcome(running=False, stages=["regenerated"], seconds=time.monotonic() - started)

    execute.require_rollable(ctx, WHAT)
    stage = tls.rotation_stage(ctx.paths)
    todo = list(tls.ROTATION_STAGES[tls.ROTATION_STAGES.index(stage) + 1:] if stage else tls.ROTATION_STAGES)
    if dry_run:
        steps = plan(ctx.topology, ctx.topology.names, execute.current_roles(ctx))
        if stage:
            progress.info(f"an interrupted rotation is at stage {stage!r}: nodes still on older files roll first")
        for i, name in enumerate(todo, 1):
            progress.info(f"stage {i}/{len(todo)}: {STAGE_TEXT[name]}; then every node rolls:\n" + plan_text(steps))
        return RotationOutcome(running=True)

    outcome = RotationOutcome(running=True)
    if stage:   # finish the roll an interrupted run left half done
        progress.info(f"resuming the rotation after stage {stage!r}")
        rolled = _roll_stale(ctx, progress)
        if rolled:
            outcome.rolls.append(rolled)
    for i, name in enumerate(todo, 1):
        progress.info(f"CA rotation, stage {i}/{len(todo)}: {STAGE_TEXT[name]}")
        tls.rotate_stage(ctx.paths, ctx.topology, name)
        rolled = _roll_stale(ctx, progress)
        if rolled:
            outcome.rolls.append(rolled)
        outcome.stages.append(name)
    outcome.seconds = time.monotonic() - started
    return outcome
