"""What the `lesson` command does, over one lab: start, check, hint, solve and reset, each
refusing bad requests before changing anything, and keeping the lab's progress file."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.lessons import catalogue, progress, reset
from pgha_lab.lessons.model import CheckReport, Lesson
from pgha_lab.lessons.progress import Current, LearnerRecord


@dataclass
class Started:
    lesson: Lesson
    reset: reset.ResetReport


def require_running(ctx: LabContext) -> None:
    states = ctx.docker.containers()
    if not any(state in ("running", "paused") for state in states.values()):
        raise LabError(f"lab {ctx.project!r} is down; start it with `pgha-lab up` (then `pgha-lab lesson start ID`).")


def current(ctx: LabContext, lesson_id: str | None) -> tuple[Lesson, Current]:
    """The started lesson (the one named must be it)."""
    prog = progress.load(ctx.paths)
    named = catalogue.get(lesson_id) if lesson_id is not None else None
    if prog.current is None:
        what = f"lesson {named.id}" if named else "a lesson"
        raise LabError(f"no lesson is started on lab {ctx.project!r}; start {what} with "
                       f"`pgha-lab lesson start {named.id if named else 'ID'}`.")
    lesson = catalogue.get(prog.current.lesson)
    if named is not None and named.id != lesson.id:
        raise LabError(f"lesson {lesson.id} is the one started on lab {ctx.project!r}; "
                       f"`pgha-lab lesson start {named.id}` starts lesson {named.id} instead.")
    return lesson, prog.current


def start(ctx: LabContext, lesson_id: str, note: Callable[[str], None] = lambda _: None) -> Started:
    lesson = catalogue.get(lesson_id)
    require_running(ctx)
    done = reset.reset(ctx, note)
    if done.resized:   # the reset shrank a grown lab: the lesson starts on the topology saved now
        ctx = LabContext.open(ctx.paths.home, ctx.paths.project)
    state = lesson.start(ctx)
    prog = progress.load(ctx.paths)
    prog.current = Current(lesson.id, progress.now(), state)
    prog.hints_shown.pop(lesson.id, None)
    progress.save(ctx.paths, prog)
    return Started(lesson, done)


def check(ctx: LabContext, lesson_id: str | None) -> CheckReport:
    lesson, cur = current(ctx, lesson_id)
    require_running(ctx)
    report = CheckReport(lesson.id, lesson.check(ctx, cur.state))
    if report.passed:
        prog = progress.load(ctx.paths)
        prog.passed.setdefault(lesson.id, progress.now())
        progress.save(ctx.paths, prog)
    return report


@dataclass
class Hint:
    lesson: Lesson
    number: int           # 1-based; the last one's number again once every hint is shown
    text: str
    none_left: bool       # every hint was shown before this call: `text` says so, and where to go next

    @property
    def last(self) -> bool:
        return self.number == len(self.lesson.hints)


def hint(ctx: LabContext, lesson_id: str | None) -> Hint:
    """The next hint; once all are shown, a word that none is left instead of the last one again."""
    if lesson_id is None:
        lesson, _ = current(ctx, None)
    else:
        lesson = catalogue.get(lesson_id)
    prog = progress.load(ctx.paths)
    before = prog.hints_shown.get(lesson.id, 0)
    if before >= len(lesson.hints):
        return Hint(lesson, len(lesson.hints), f"No hint left: all {len(lesson.hints)} were shown. `pgha-lab lesson "
                                               "check` says what is still missing; "
                                               f"`pgha-lab lesson solve {lesson.id}` "
                                               "prints the reference solution.", True)
    prog.hints_shown[lesson.id] = before + 1
    progress.save(ctx.paths, prog)
    return Hint(lesson, before + 1, lesson.hints[before], False)


def solve(ctx: LabContext, lesson_id: str) -> CheckReport:
    """Perform the reference solution of the started lesson, then check it."""
    lesson, cur = current(ctx, lesson_id)
    require_running(ctx)
    lesson.solve(ctx, cur.state)
    return check(ctx, str(lesson.id))


def reset_lab(ctx: LabContext, note: Callable[[str], None] = lambda _: None) -> reset.ResetReport:
    require_running(ctx)
    done = reset.reset(ctx, note)
    prog = progress.load(ctx.paths)
    prog.current = None
    progress.save(ctx.paths, prog)
    return done


def status(ctx: LabContext) -> LearnerRecord:
    return progress.load(ctx.paths)
