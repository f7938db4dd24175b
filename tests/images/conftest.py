"""The image tests' containers are testcontainers' own; this removes any a failure left behind."""
from __future__ import annotations

import os
import warnings

# Ryuk, testcontainers' reaper, is an image pulled from a registry that a lab machine need not
# reach, so it stays off unless someone turns it on. Cleanup then rests on each test's `with`
# block and, for whatever escapes one (a fixture failing half-way), the finalizer below, which
# removes everything testcontainers labelled with this session's id. Set before testcontainers
# first starts a container, which is when it reads the flag.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import docker  # noqa: E402
import pytest  # noqa: E402
from testcontainers.core.labels import LABEL_SESSION_ID, SESSION_ID  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def remove_this_sessions_containers():
    yield
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException:
        return   # no engine, so nothing of ours runs on it
    session = {"label": f"{LABEL_SESSION_ID}={SESSION_ID}"}
    left = client.containers.list(all=True, filters=session)
    for container in left:
        container.remove(force=True, v=True)
    for network in client.networks.list(filters=session):
        network.remove()
    if left:   # a `with` block should have removed them: worth knowing which test did not
        warnings.warn(f"removed containers left by this test session: {[c.name for c in left]}")
