"""The package's one decision about an output stream: is it a terminal, and may it have colour."""
from __future__ import annotations

import os
import sys
from typing import TextIO

from rich.console import Console

# Off a terminal nothing should wrap: CI logs and pipes keep each line whole, and tables rendered
# to text keep their borders straight however many columns they have.
PLAIN_WIDTH = 10_000


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):   # a closed or detached stream is no terminal
        return False


def colour_allowed(terminal: bool) -> bool:
    # no-color.org: NO_COLOR set to anything but the empty string turns colour off.
    return terminal and os.environ.get("NO_COLOR", "") == ""


def console_for(stream: TextIO | None = None, *, terminal: bool | None = None) -> Console:
    """A rich Console on `stream` (stderr unless given) that draws spinners only on a terminal
    and colours only on a terminal without NO_COLOR.

    `terminal` overrides the stream's own isatty() answer. Every setting is passed explicitly so
    that rich's own environment guesses (FORCE_COLOR, TTY_COMPATIBLE, Jupyter) cannot overrule
    this decision.
    """
    stream = sys.stderr if stream is None else stream
    on_terminal = is_terminal(stream) if terminal is None else terminal
    colour = colour_allowed(on_terminal)
    return Console(file=stream, force_terminal=on_terminal, force_interactive=on_terminal,
                   force_jupyter=False, color_system="auto" if colour else None, no_color=not colour,
                   width=None if on_terminal else PLAIN_WIDTH,
                   # Messages carry docker step titles like "[4/9] RUN ..." and tags in brackets:
                   # they are text, never markup, emoji codes or numbers to highlight.
                   markup=False, emoji=False, highlight=False)


def has_colour(console: Console) -> bool:
    return console.color_system is not None
