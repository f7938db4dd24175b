"""How a build shows progress: a line per finished step with its elapsed time, and on a
terminal a spinner line for the steps still running. Colour only on a terminal, never with
NO_COLOR set."""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from pgha_lab.term.progress import SPINNER, paint

TITLE_WIDTH = 64


class Progress(Protocol):
    def info(self, message: str) -> None: ...
    def start(self, image: str, step: str) -> None: ...
    def done(self, image: str, step: str, seconds: float, cached: bool = False) -> None: ...
    def fail(self, image: str, step: str, seconds: float, log_tail: str) -> None: ...
    def close(self) -> None: ...


def shorten(text: str, width: int = TITLE_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def fmt_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


@dataclass
class Silent:
    """For callers that want no output (library use); failures still reach the LabError."""
    def info(self, message: str) -> None: pass
    def start(self, image: str, step: str) -> None: pass
    def done(self, image: str, step: str, seconds: float, cached: bool = False) -> None: pass
    def fail(self, image: str, step: str, seconds: float, log_tail: str) -> None: pass
    def close(self) -> None: pass


@dataclass
class Lines:
    """Line-per-step output, safe to call from the concurrent image builds."""
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    tty: bool | None = None
    color: bool | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _running: dict[str, tuple[str, float]] = field(default_factory=dict, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _spinner: threading.Thread | None = field(default=None, init=False)
    _status_shown: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.tty is None:
            self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if self.color is None:
            self.color = bool(self.tty) and "NO_COLOR" not in os.environ
        if self.tty:
            self._spinner = threading.Thread(target=self._spin, daemon=True)
            self._spinner.start()

    # -- the Progress protocol --------------------------------------------------------------
    def info(self, message: str) -> None:
        self._line(f"{self._paint('•', '36')} {message}")

    def start(self, image: str, step: str) -> None:
        with self._lock:
            self._running[image] = (step, time.monotonic())

    def done(self, image: str, step: str, seconds: float, cached: bool = False) -> None:
        with self._lock:
            self._running.pop(image, None)
        mark = self._paint("✓", "32")
        when = "cached" if cached else fmt_seconds(seconds)
        self._line(f"{mark} {image:<8} {shorten(step)}  {self._paint(when, '2') if cached else when}")

    def fail(self, image: str, step: str, seconds: float, log_tail: str) -> None:
        with self._lock:
            self._running.pop(image, None)
        self._line(f"{self._paint('✗', '31')} {image:<8} {shorten(step)}  failed after {fmt_seconds(seconds)}")
        for line in log_tail.splitlines():
            self._line(f"    {line}")

    def close(self) -> None:
        self._stop.set()
        if self._spinner is not None:
            self._spinner.join(timeout=1)
        with self._lock:
            self._clear_status()

    # -- drawing ---------------------------------------------------------------------------
    def _paint(self, text: str, code: str) -> str:
        return paint(text, code, bool(self.color))

    def _clear_status(self) -> None:
        if self._status_shown:
            self.stream.write("\r\x1b[K")
            self._status_shown = False

    def _line(self, text: str) -> None:
        with self._lock:
            self._clear_status()
            self.stream.write(text + "\n")
            self.stream.flush()

    def _spin(self) -> None:
        frame = 0
        # Redrawing on a timer is display pacing, not waiting for anything.
        while not self._stop.wait(0.15):
            with self._lock:
                if not self._running:
                    self._clear_status()
                    continue
                now = time.monotonic()
                parts = [f"{img} {shorten(step, 28)} {fmt_seconds(now - t0)}"
                         for img, (step, t0) in sorted(self._running.items())]
                width = 200
                try:
                    width = os.get_terminal_size(self.stream.fileno()).columns
                except (OSError, ValueError, AttributeError):
                    pass
                status = f"{SPINNER[frame % len(SPINNER)]} " + " | ".join(parts)
                self.stream.write("\r\x1b[K" + status[: max(10, width - 1)])
                self.stream.flush()
                self._status_shown = True
                frame += 1
