"""The error type for mistakes a user can cause: the CLI prints its message as one sentence."""


class LabError(Exception):
    """A user-facing failure; its message names the fix. The CLI exits 1 with it, no traceback."""


def first_line(exc: BaseException) -> str:
    """An error as one short line, for ledgers and messages."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


# Exit codes, the same for every command.
EXIT_OK = 0
EXIT_ERROR = 1           # a LabError: the message names the fix
EXIT_NOT_AS_EXPECTED = 3  # the command ran, and what it checked did not hold (an outcome, a drill's findings)
EXIT_INTERRUPTED = 130
