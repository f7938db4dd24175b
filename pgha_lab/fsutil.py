"""Idempotent, atomic file writes for generated lab state (certs, secrets, rendered configs)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_if_changed(path: Path, data: bytes | str, mode: int = 0o644) -> bool:
    """Write `data` to `path` only when the content differs; returns True when it wrote.

    Unchanged files keep their bytes and mtime, so compose sees no change and `up` stays a no-op.
    The new content lands through a temporary file and a rename, so a crash never leaves half a key.
    The mode is applied before the rename: a key is never readable by others, not even for a moment.
    """
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.read_bytes() == raw:
            if (path.stat().st_mode & 0o777) != mode:
                os.chmod(path, mode)
            return False
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def write_in_place(path: Path, data: str) -> None:
    """Overwrite the file itself rather than replace it: a container that mounts this one file (a
    single-file bind mount holds its inode) sees the new content at once, where a rename would leave
    it reading the old inode until it restarts. For rendered configs (no secret in them)."""
    try:
        with path.open("r+") as fh:
            fh.truncate(0)
            fh.write(data)
    except FileNotFoundError:   # removed by hand: nothing mounts it any more
        path.write_text(data)


def ensure_dir(path: Path, mode: int = 0o755) -> None:
    """Create `path` (and parents) and give it `mode`; private folders hold keys, so 0700 there."""
    path.mkdir(parents=True, exist_ok=True)
    if (path.stat().st_mode & 0o777) != mode:
        os.chmod(path, mode)
