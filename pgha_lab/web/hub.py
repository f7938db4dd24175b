"""What every viewer of the page is sent: the latest LabView, the event log, the write probe's
points and the actions under way. Threads (the ticker, actions) write it; the event loop's SSE
streams read it and are woken on every change, so N viewers cost one lab reading per tick."""
from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from pgha_lab.web.state import LabView, changes, first_reading
from pgha_lab.web.writeprobe import ProbeStatus

MAX_EVENTS = 300
MAX_POINTS = 900      # 90 s of probe writes at ~100 ms
MAX_TASKS = 8


@dataclass
class Event:
    seq: int
    at: float
    kind: str      # node, role, leader-key, timeline, etcd, haproxy, chaos, probe, drill, lab
    text: str


@dataclass
class Task:
    """One action started from the page, shown as a card: what was done, what should happen, the verdict."""
    id: int
    kind: str                   # chaos, switchover, failover, heal-all, drill
    title: str
    status: str = "running"     # running, happened, not-happened, done, failed
    done: str = ""
    expected: str = ""
    verdict: str = ""
    lines: list[str] = field(default_factory=list)   # live progress (drills)
    link: str = ""              # the report, when a drill is done
    started: float = field(default_factory=time.time)


@dataclass
class Cursor:
    """How far one viewer has been sent."""
    version: int = -1
    event_seq: int = 0
    point_seq: int = 0


class Hub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._version = 0
        self._seq = itertools.count(1)
        self._task_ids = itertools.count(1)
        self.view: LabView | None = None
        self.probe = ProbeStatus(False)
        self.events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self.points: deque[tuple[int, dict[str, Any]]] = deque(maxlen=MAX_POINTS)
        self.tasks: deque[Task] = deque(maxlen=MAX_TASKS)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def version(self) -> int:
        return self._version

    # -- writers (any thread) ----------------------------------------------------------------
    def publish(self, view: LabView, points: list[dict[str, Any]], probe: ProbeStatus) -> None:
        with self._lock:
            if self.view is None:
                self._log("lab", first_reading(view), view.at)
            for kind, text in changes(self.view, view):
                self._log(kind, text, view.at)
            self.view = view
            self.probe = probe
            for p in points:
                self.points.append((next(self._seq), p))
        self.touch()

    def log(self, kind: str, text: str) -> None:
        with self._lock:
            self._log(kind, text, time.time())
        self.touch()

    def _log(self, kind: str, text: str, at: float) -> None:
        self.events.append(Event(next(self._seq), at, kind, text))

    def new_task(self, kind: str, title: str, **fields: Any) -> Task:
        task = Task(next(self._task_ids), kind, title, **fields)
        with self._lock:
            self.tasks.append(task)
        self.touch()
        return task

    def touch(self) -> None:
        """Wake every stream; called after any change (tasks are changed in place, then touched)."""
        with self._lock:
            self._version += 1
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- readers (the event loop) ---------------------------------------------------------------
    async def wait_newer(self, version: int, timeout_s: float) -> None:
        if self._version != version:
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except TimeoutError:
            pass

    def message(self, cursor: Cursor) -> dict[str, Any]:
        """Everything `cursor` has not been sent yet; the view, probe status and tasks in full (small)."""
        with self._lock:
            cursor.version = self._version
            events = [asdict(e) for e in self.events if e.seq > cursor.event_seq]
            points = [p for seq, p in self.points if seq > cursor.point_seq]
            if self.events:
                cursor.event_seq = self.events[-1].seq
            if self.points:
                cursor.point_seq = self.points[-1][0]
            return {"view": self.view.as_dict() if self.view else None, "events": events, "points": points,
                    "probe": asdict(self.probe), "tasks": [asdict(t) for t in self.tasks]}
