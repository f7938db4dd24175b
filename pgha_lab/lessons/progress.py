"""A lab's lesson progress, kept in labs/<project>/lessons.json: the lesson started (and what its
start remembered), hints revealed, and which lessons passed and when."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgha_lab.errors import LabError
from pgha_lab.fsutil import write_if_changed
from pgha_lab.paths import TRACK_FILE, LabPaths  # TRACK_FILE: the hand-build track's record, same shape

FILE = "lessons.json"
__all__ = ["FILE", "TRACK_FILE", "Current", "LearnerRecord", "forget", "load", "now", "path", "save"]


@dataclass
class Current:
    lesson: int
    started_at: str
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class LearnerRecord:
    """A learner's record of one course (the lessons, or the hand-build track): the lesson started,
    which passed and when, the hints revealed."""
    current: Current | None = None
    passed: dict[int, str] = field(default_factory=dict)        # lesson id -> when its check first passed
    hints_shown: dict[int, int] = field(default_factory=dict)   # lesson id -> hints revealed so far

    def as_dict(self) -> dict[str, Any]:
        return {"current": asdict(self.current) if self.current else None,
                "passed": {str(k): v for k, v in self.passed.items()},
                "hints_shown": {str(k): v for k, v in self.hints_shown.items()}}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> LearnerRecord:
        cur = doc.get("current")
        return cls(current=Current(int(cur["lesson"]), str(cur["started_at"]), dict(cur.get("state") or {}))
                   if cur else None,
                   passed={int(k): str(v) for k, v in (doc.get("passed") or {}).items()},
                   hints_shown={int(k): int(v) for k, v in (doc.get("hints_shown") or {}).items()})


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def path(paths: LabPaths, file: str = FILE) -> Path:
    return paths.state / file


def load(paths: LabPaths, file: str = FILE) -> LearnerRecord:
    """`file`: the lessons' record by default; the hand-build track keeps its own (track/course.py)."""
    f = path(paths, file)
    if not f.exists():
        return LearnerRecord()
    try:
        return LearnerRecord.from_dict(json.loads(f.read_text()))
    except (ValueError, KeyError, TypeError):
        raise LabError(f"{f} is not a progress file pgha-lab wrote; remove it to start the lessons afresh.") from None


def forget(paths: LabPaths, file: str) -> None:
    """Drop a record whose lab is gone (its nodes and volumes removed), so a new lab starts from nothing."""
    path(paths, file).unlink(missing_ok=True)


def save(paths: LabPaths, progress: LearnerRecord, file: str = FILE) -> None:
    f = path(paths, file)
    f.parent.mkdir(parents=True, exist_ok=True)
    write_if_changed(f, json.dumps(progress.as_dict(), indent=2) + "\n")
