"""The error type for mistakes a user can cause: the CLI prints its message as one sentence."""


class LabError(Exception):
    """A user-facing failure; its message names the fix. The CLI exits 1 with it, no traceback."""


def first_line(exc: BaseException) -> str:
    """An error as one short line, for ledgers and messages."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
