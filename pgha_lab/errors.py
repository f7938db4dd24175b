"""The error type for mistakes a user can cause: the CLI prints its message as one sentence."""


class LabError(Exception):
    """A user-facing failure; its message names the fix. The CLI exits 1 with it, no traceback."""
