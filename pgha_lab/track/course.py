"""What the `track` command does over one bare lab: check steps, reveal hints, and keep the lab's
progress record (the lessons' record, in its own file). Each refuses bad requests before anything."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.lessons import progress
from pgha_lab.lessons.progress import LearnerRecord
from pgha_lab.track import catalogue
from pgha_lab.track.assignment import Assignment
from pgha_lab.track.model import Finding, Readings, Step, StepVerdict
from pgha_lab.track.readers import Reader

PROGRESS_FILE = progress.TRACK_FILE


@dataclass
class TrackReport:
    project: str
    verdicts: list[StepVerdict] = field(default_factory=list)

    @property
    def first_failing(self) -> StepVerdict | None:
        return next((v for v in self.verdicts if not v.passed), None)

    @property
    def passed(self) -> bool:
        return bool(self.verdicts) and all(v.passed for v in self.verdicts)

    def as_dict(self) -> dict[str, Any]:
        first = self.first_failing
        return {"lab": self.project, "passed": self.passed, "first_failing": first.step if first else None,
                "steps": [v.as_dict() for v in self.verdicts]}


def require_bare(ctx: LabContext) -> None:
    """The track grades a lab the learner builds; a ready lab's work is graded by the lessons."""
    if not ctx.paths.topology_file.exists():
        raise LabError(f"there is no lab {ctx.project!r} yet; `pgha-lab --project {ctx.project} up --bare` makes "
                       f"the bare nodes the track is built on.")
    if not getattr(ctx.topology, "bare", False):
        raise LabError(f"lab {ctx.project!r} is a ready lab that pgha-lab configured itself, so there is nothing of "
                       f"yours for the track to grade; its work is graded with `pgha-lab lesson check`, and the track "
                       f"runs on a bare lab (`pgha-lab --project NAME up --bare`).")
    states = ctx.docker.containers()
    if not any(state == "running" for state in states.values()):
        raise LabError(f"lab {ctx.project!r} is down; `pgha-lab --project {ctx.project} up --bare` boots its nodes "
                       f"(your work on them stays).")


def steps_of(refs: Iterable[str | int] | None) -> list[Step]:
    return [catalogue.get(r) for r in refs] if refs else list(catalogue.STEPS)


def grade_step(step: Step, reader: Reader, assignment: Assignment) -> tuple[StepVerdict, Readings]:
    started = time.monotonic()
    readings = step.read(reader, assignment)
    silent = [r for r in readings.values() if r.unanswered]
    if silent:   # a node that gave no answer says nothing of the learner's work: not judged, and said so
        verdict = StepVerdict(step.id, False, findings=[Finding(
            f"{silent[0].error}, so step {step.id} was not judged (nothing is known to be wrong yet); "
            f"check again once every node answers", "`pgha-lab status`", "unanswered")])
    else:
        verdict = step.grade(assignment, readings)
    verdict.seconds = time.monotonic() - started
    return verdict, readings


def check(ctx: LabContext, refs: Iterable[str | int] | None = None,
          on_step: Callable[[StepVerdict], None] = lambda _: None) -> TrackReport:
    """Grade the steps asked for (every step by default), in order; record the ones that pass."""
    steps = steps_of(refs)
    require_bare(ctx)
    prog = load(ctx)
    reader, assignment = Reader(ctx, since=prog.passed.get(6, "")), Assignment.of(ctx.topology)
    report = TrackReport(ctx.project)
    for step in steps:
        verdict, _ = grade_step(step, reader, assignment)
        report.verdicts.append(verdict)
        on_step(verdict)
    record_passed(ctx, [v.step for v in report.verdicts if v.passed], prog)
    return report


def record_passed(ctx: LabContext, steps: Iterable[int], prog: LearnerRecord | None = None) -> None:
    """Steps just seen passing, in the lab's record (the first time each passed stays)."""
    prog = prog or load(ctx)
    for step in steps:
        prog.passed.setdefault(step, progress.now())
    save(ctx, prog)


def first_failing_before(ctx: LabContext, step: Step) -> StepVerdict | None:
    """The first step before `step` whose check fails now (what `solve --apply` must not build on)."""
    require_bare(ctx)
    reader, assignment = Reader(ctx), Assignment.of(ctx.topology)
    for earlier in catalogue.STEPS:
        if earlier.id >= step.id:
            return None
        verdict, _ = grade_step(earlier, reader, assignment)
        if not verdict.passed:
            return verdict
    return None


def hint(ctx: LabContext, ref: str | int | None) -> tuple[Step, int, str]:
    """The next hint of the step asked for (default: the first step not passed yet); the last one again
    once all are shown."""
    prog = load(ctx)
    if ref is None:
        step = next((s for s in catalogue.STEPS if s.id not in prog.passed), catalogue.STEPS[-1])
    else:
        step = catalogue.get(ref)
    shown = min(prog.hints_shown.get(step.id, 0) + 1, len(step.hints))
    prog.hints_shown[step.id] = shown
    save(ctx, prog)
    return step, shown, step.hints[shown - 1]


def load(ctx: LabContext) -> LearnerRecord:
    return progress.load(ctx.paths, PROGRESS_FILE)


def save(ctx: LabContext, prog: LearnerRecord) -> None:
    progress.save(ctx.paths, prog, PROGRESS_FILE)
