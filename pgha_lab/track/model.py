"""What the track is made of: a step's words (goal, background, tasks on named nodes, hints), the
readings its check takes (each naming where it came from), and the verdict a grader gives over them:
what was confirmed, and for a failure what is wrong and where to look."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Source:
    """Where a reading came from, so a FAIL can send the learner to the same place."""
    kind: str          # file | command | journal | tls | http | sql
    node: str | None   # the node it was read on; None when read from the host over the network
    what: str          # the path, the command line, the endpoint

    def look(self) -> str:
        """How the learner looks there themselves."""
        if self.kind == "file":
            return f"on {self.node}: sudo cat -n {self.what}"
        if self.kind == "journal":
            return f"on {self.node}: sudo journalctl -u {self.what} -n 50 --no-pager"
        if self.node:
            return f"on {self.node}: {self.what}"
        return f"from the host: {self.what}"


@dataclass(frozen=True)
class Reading:
    """One thing read from a node or the network. `ok` False: it could not be read, `error` says why.
    `unanswered`: the node gave no answer at all (paused, refused by the engine, too slow, its answer
    cut short), so the reading says nothing about what the learner did. A node powered off is not
    silence: it is a state some steps judge."""
    source: Source
    ok: bool
    value: Any = None
    error: str = ""
    unanswered: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Reading:
        return cls(Source(**doc["source"]), doc["ok"], doc.get("value"), doc.get("error", ""),
                   doc.get("unanswered", False))


class Readings(dict):
    """Readings by key (e.g. "etcd2:conf"): what one step's grader judges. Plain data, so a recorded
    set replays in a unit test exactly as a lab produced it."""

    def as_dict(self) -> dict[str, Any]:
        return {k: r.as_dict() for k, r in self.items()}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Readings:
        return cls({k: Reading.from_dict(v) for k, v in doc.items()})


@dataclass(frozen=True)
class Finding:
    """What is wrong, and where to look: a file and line, a log line, a command. `diagnosis` names a
    known mistake when one is recognised. Never the value to paste."""
    problem: str
    where: str
    diagnosis: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StepVerdict:
    step: int
    passed: bool
    confirmed: list[str] = field(default_factory=list)    # what a PASS rests on
    findings: list[Finding] = field(default_factory=list)  # the first is the one to fix first
    seconds: float = 0.0

    @property
    def summary(self) -> str:
        if self.passed:
            return "; ".join(self.confirmed)
        return self.findings[0].problem if self.findings else "not graded"

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "passed": self.passed, "summary": self.summary, "confirmed": self.confirmed,
                "findings": [f.as_dict() for f in self.findings], "seconds": round(self.seconds, 2)}


@dataclass(frozen=True)
class Task:
    nodes: str         # where it is done: "every node", "etcd1, etcd2, etcd3", "dbnode1", ...
    text: str


@dataclass(frozen=True)
class Step:
    id: int
    slug: str          # the tag of the exported playbook that solves it
    title: str
    goal: str
    background: str
    tasks: tuple[Task, ...]
    hints: tuple[str, ...]
    read: Callable[..., Readings]             # (Reader, Assignment) -> Readings, from the nodes and the network
    grade: Callable[..., StepVerdict]         # (Assignment, Readings) -> StepVerdict, pure
    minutes: int = 30

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "slug": self.slug, "title": self.title, "goal": self.goal,
                "background": self.background, "tasks": [asdict(t) for t in self.tasks],
                "hints": len(self.hints), "minutes": self.minutes}
