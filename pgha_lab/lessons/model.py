"""What a lesson is: its words (goal, background, tasks, hints, solution) and its three actions
on a live lab (start, check, solve), plus the per-task result a check returns."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pgha_lab.context import LabContext

# What `start` remembers for `check` and `solve` (the leader it began with, a marker row's id, ...);
# kept in the lab's progress file, so a check in a later shell still knows where the lesson began.
State = dict[str, Any]


@dataclass(frozen=True)
class Task:
    key: str          # short and stable: the key a check result refers to
    text: str         # what the learner does, in the words of the lab


@dataclass(frozen=True)
class TaskResult:
    key: str
    passed: bool
    reason: str       # why it passed, or what is still missing (read from the live lab)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Lesson:
    id: int
    slug: str
    title: str
    goal: str
    background: str
    tasks: tuple[Task, ...]
    hints: tuple[str, ...]
    solution: str                                    # the reference solution as a learner would type it
    start: Callable[[LabContext], State]             # from the healthy baseline to the lesson's start
    check: Callable[[LabContext, State], list[TaskResult]]
    solve: Callable[[LabContext, State], None]       # performs `solution` (lesson solve --apply)
    minutes: int = 15
    needs: str = ""                                  # anything beyond the default lab (e.g. a third db node)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "slug": self.slug, "title": self.title, "goal": self.goal,
                "background": self.background, "tasks": [asdict(t) for t in self.tasks],
                "hints": len(self.hints), "minutes": self.minutes, "needs": self.needs}


@dataclass
class CheckReport:
    lesson: int
    results: list[TaskResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {"lesson": self.lesson, "passed": self.passed, "tasks": [r.as_dict() for r in self.results]}


def result(key: str, passed: bool, reason: str) -> TaskResult:
    return TaskResult(key, passed, reason)
