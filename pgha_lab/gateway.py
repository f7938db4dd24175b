"""Access to the Docker engine, with the one sentence a user needs when it is not there."""
from __future__ import annotations

import shutil
import subprocess

from pgha_lab.errors import LabError

NO_ENGINE = ("cannot reach the Docker engine; start it (as root on Debian or Ubuntu, "
             "`bash scripts/setup-host.sh` installs and starts it).")


def client():
    """A docker SDK client for a reachable engine, or LabError."""
    import docker  # imported late: unit tests and --help need no engine
    try:
        cli = docker.from_env(timeout=120)
        cli.ping()
        return cli
    except Exception:  # the SDK raises several unrelated types for "not there"
        raise LabError(NO_ENGINE) from None


def require_compose() -> str:
    """Compose v2 (`docker compose`) must be on the host; its version."""
    if shutil.which("docker") is None:
        raise LabError("the docker command is missing; install Docker (as root on Debian or Ubuntu, `bash scripts/setup-host.sh`).")
    proc = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True)
    version = proc.stdout.strip().lstrip("v")
    if proc.returncode != 0 or not version.startswith("2"):
        raise LabError("Docker Compose v2 (`docker compose`) is missing; install it (as root on Debian or Ubuntu, `bash scripts/setup-host.sh`).")
    return version
