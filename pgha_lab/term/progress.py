"""Step-by-step progress lines, kind-style: a spinner on a terminal, a tick or a cross when done.

Off a terminal (CI, pipes) each step prints one plain line when it ends, so logs stay readable.
Whether there is a terminal, and whether it gets colour, is term.console's decision.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from pgha_lab.term.console import console_for

SPINNER = "dots"


def spinner_frame(spinner: Spinner, console: Console) -> Text:
    """The spinner's frame now. rich types render() as any renderable; one without text is a Text."""
    frame = spinner.render(console.get_time())
    return frame if isinstance(frame, Text) else Text(str(frame))


class Progress:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.console = console_for(stream)
        self.stream = self.console.file
        self.quiet = quiet
        self.tty = self.console.is_terminal
        self._detail = ""
        self._live: Live | None = None

    def detail(self, text: str) -> None:
        """A short live note next to the running step (shown on a terminal only)."""
        self._detail = text

    @property
    def latest_detail(self) -> str:
        return self._detail

    def info(self, text: str) -> None:
        if not self.quiet:
            self.console.print(Text.assemble(" ", ("•", "cyan"), f" {text}"))

    @contextmanager
    def step(self, title: str) -> Iterator[Progress]:
        started = time.monotonic()
        self._detail = ""
        # A step inside a step keeps the outer spinner; rich draws one live display per console.
        spin = self.tty and not self.quiet and self._live is None
        live = self._spinner(title, started) if spin else None
        ok = False
        try:
            if live is not None:
                live.start()
                self._live = live
            yield self
            ok = True
        finally:
            if live is not None:
                live.stop()
                self._live = None
            if not self.quiet:
                self.console.print(ended_line(title, ok, time.monotonic() - started))

    def _spinner(self, title: str, started: float) -> Live:
        return spinner_live(self.console, _RunningStep(self, title, started))


def spinner_live(console: Console, renderable: RenderableType) -> Live:
    """A live display that redraws `renderable` at the bottom of `console` and leaves no trace."""
    return Live(renderable, console=console, refresh_per_second=10, transient=True,
                # Prints to the stream we draw on go above the spinner instead of through it.
                # Prints to the other stream stay on it: `pgha-lab up > file` keeps its stdout.
                redirect_stdout=console.file is sys.stdout, redirect_stderr=console.file is sys.stderr)


def ended_line(title: str, ok: bool, seconds: float) -> Text:
    mark = ("✓", "green") if ok else ("✗", "red")
    return Text.assemble(" ", mark, f" {title} ({seconds:.1f}s)")


class _RunningStep:
    """The spinner line; Live renders it again on every refresh, so the seconds keep counting and
    the latest detail shows."""

    def __init__(self, progress: Progress, title: str, started: float) -> None:
        self.progress = progress
        self.title = title
        self.started = started
        self.spinner = Spinner(SPINNER)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        detail = f" — {self.progress.latest_detail}" if self.progress.latest_detail else ""
        elapsed = time.monotonic() - self.started
        yield Text.assemble(" ", spinner_frame(self.spinner, console),
                            f" {self.title} ({elapsed:.0f}s){detail}", no_wrap=True, overflow="ellipsis")
