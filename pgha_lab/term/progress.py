"""Step-by-step progress lines, kind-style: a spinner on a terminal, a tick or a cross when done.

Off a terminal (CI, pipes) each step prints one plain line when it ends, so logs stay readable.
Colour only on a terminal and never when NO_COLOR is set.
"""
from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator, TextIO


SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def use_colour(stream: TextIO) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ


def paint(text: str, code: str, colour: bool) -> str:
    """text in the ANSI colour `code` when colour is on, else unchanged."""
    return f"\033[{code}m{text}\033[0m" if colour else text


class Progress:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.colour = use_colour(self.stream)
        self._detail = ""

    def _paint(self, text: str, code: str) -> str:
        return paint(text, code, self.colour)

    def detail(self, text: str) -> None:
        """A short live note next to the running step (shown on a terminal only)."""
        self._detail = text

    def info(self, text: str) -> None:
        if not self.quiet:
            print(f" • {text}", file=self.stream, flush=True)

    @contextmanager
    def step(self, title: str) -> Iterator["Progress"]:
        start = time.monotonic()
        self._detail = ""
        stop = threading.Event()
        spinner = None
        if self.tty and not self.quiet:
            spinner = threading.Thread(target=self._spin, args=(title, start, stop), daemon=True)
            spinner.start()
        ok = False
        try:
            yield self
            ok = True
        finally:
            stop.set()
            if spinner:
                spinner.join()
            if not self.quiet:
                elapsed = time.monotonic() - start
                mark = self._paint("✓", "32") if ok else self._paint("✗", "31")
                clear = "\r\033[K" if self.tty else ""
                print(f"{clear} {mark} {title} ({elapsed:.1f}s)", file=self.stream, flush=True)

    def _spin(self, title: str, start: float, stop: threading.Event) -> None:
        for frame in itertools.cycle(SPINNER):
            if stop.wait(0.1):
                return
            detail = f" — {self._detail}" if self._detail else ""
            line = f" {frame} {title} ({time.monotonic() - start:.0f}s){detail}"
            print(f"\r\033[K{line[:150]}", end="", file=self.stream, flush=True)
