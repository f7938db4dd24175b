"""How a build shows progress: a line per finished step with its elapsed time, and on a
terminal a spinner line for the steps still running. Whether there is a terminal, and whether
it gets colour, is term.console's decision."""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from pgha_lab.term.console import console_for, has_colour
from pgha_lab.term.progress import SPINNER, spinner_frame, spinner_live

TITLE_WIDTH = 64


class BuildProgress(Protocol):
    """What an image build reports to as it goes (the terminal's Lines, or Silent)."""
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
    """Line-per-step output, safe to call from the concurrent image builds. `tty` overrides the
    stream's own isatty(); colour follows from it (term.console decides both)."""
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    tty: bool | None = None
    color: bool = field(init=False)
    console: Console = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _running: dict[str, tuple[str, float]] = field(default_factory=dict, init=False)
    _live: Live | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.console = console_for(self.stream, terminal=self.tty)
        self.tty = self.console.is_terminal
        self.color = has_colour(self.console)
        if self.tty:
            self._live = spinner_live(self.console, _RunningBuilds(self))
            self._live.start()

    # -- the BuildProgress protocol --------------------------------------------------------------
    def info(self, message: str) -> None:
        self.console.print(Text.assemble(("•", "cyan"), f" {message}"))

    def start(self, image: str, step: str) -> None:
        with self._lock:
            self._running[image] = (step, time.monotonic())

    def done(self, image: str, step: str, seconds: float, cached: bool = False) -> None:
        with self._lock:
            self._running.pop(image, None)
        when = ("cached", "dim") if cached else fmt_seconds(seconds)
        self.console.print(Text.assemble(("✓", "green"), f" {image:<8} {shorten(step)}  ", when))

    def fail(self, image: str, step: str, seconds: float, log_tail: str) -> None:
        with self._lock:
            self._running.pop(image, None)
        tail = "".join(f"\n    {line}" for line in log_tail.splitlines())
        # One print, so a concurrent build's line cannot land inside the log tail.
        self.console.print(Text.assemble(("✗", "red"),
                                         f" {image:<8} {shorten(step)}  failed after {fmt_seconds(seconds)}{tail}"))

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def running(self) -> list[tuple[str, str, float]]:
        """(image, step, started) for each step still running, by image."""
        with self._lock:
            return [(image, step, started) for image, (step, started) in sorted(self._running.items())]


class _RunningBuilds:
    """The spinner line under the finished steps: every running step with its seconds so far.
    Live renders it again on each refresh; with nothing running it takes no line at all."""

    def __init__(self, lines: Lines) -> None:
        self.lines = lines
        self.spinner = Spinner(SPINNER)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        running = self.lines.running()
        if not running:
            return
        now = time.monotonic()
        parts = " | ".join(f"{image} {shorten(step, 28)} {fmt_seconds(now - started)}"
                           for image, step, started in running)
        yield Text.assemble(spinner_frame(self.spinner, console), f" {parts}",
                            no_wrap=True, overflow="ellipsis")
