"""Shared fixtures. Tests that need Docker fail, never skip, when the engine is missing."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

# Ryuk, testcontainers' reaper, is an image pulled from a registry that a lab machine need not
# reach, so it stays off unless someone turns it on. Cleanup then rests on each test's `with`
# block and, for whatever escapes one (a fixture failing half-way), the session finalizer below,
# which removes everything testcontainers labelled with this session's id. Set before
# testcontainers first starts a container, which is when it reads the flag.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import docker  # noqa: E402
import pytest  # noqa: E402
from testcontainers.core.labels import LABEL_SESSION_ID, SESSION_ID  # noqa: E402

from pgha_lab.paths import LabPaths
from pgha_lab.topology import Topology
from pgha_lab.wait import wait_until
from tests.labkit import BARE_PROJECT, BARE_SUBNET, KEEP, PORTS, PROJECT, SUBNET, BareLabUnderTest, LabUnderTest, \
    remove_leftovers

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def docker_client():
    """A client for a running engine; a test that needs one fails without it."""
    import docker

    from pgha_lab.errors import LabError
    from pgha_lab.gateway import Engine
    try:
        Engine.connect()
    except LabError as exc:
        pytest.fail(f"this test needs Docker: {exc}", pytrace=False)
    return docker.from_env(timeout=120)   # tests drive containers with the SDK directly


@pytest.fixture(scope="session")
def built_images(docker_client):
    """The node images, built (or reused from the build cache) once per session. scripts/test.sh
    builds them before the workers start; the lock keeps two workers of a bare `pytest -n` from
    building them at once."""
    import fcntl

    from pgha_lab.imaging import images
    from pgha_lab.gateway import IMAGES
    lock = REPO / ".cache" / "build.lock"
    lock.parent.mkdir(exist_ok=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        images.ensure_built(LabPaths(home=REPO))
    return dict(IMAGES)


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


# -- the suite's one lab, shared by tests/lab and tests/web ------------------------------------
@pytest.fixture(scope="session")
def test_lab(docker_client, built_images):
    if not KEEP:
        remove_leftovers()
    paths = LabPaths(home=REPO, project=PROJECT)
    topo = Topology.build(project=PROJECT, subnet=SUBNET, published=PORTS)
    lab = LabUnderTest(paths, topo)
    yield lab
    if not KEEP:
        remove_leftovers()


@pytest.fixture()
def healthy_lab(test_lab):
    """The test lab, brought up (nothing to do when it is already healthy)."""
    test_lab.ensure_healthy()
    return test_lab


HEAL_DEADLINE_S = 120.0   # a healed lab recovers by itself: the old leader rewinds and rejoins


@pytest.fixture()
def lab(healthy_lab):
    """A healthy lab before the test, put back together after it whatever the test broke. A fault
    that heal-all does not heal is a finding: the test that left it fails (an error at its
    teardown, naming what stayed broken), and only then `up` repairs the lab for the next test.
    heal-all runs in-process (the same code as `chaos heal-all`: a CLI start costs seconds)."""
    from pgha_lab.chaos.actions import Chaos
    from pgha_lab.errors import LabError
    yield healthy_lab
    refused = ""
    try:
        try:
            Chaos(healthy_lab.ctx).heal_all()
        except LabError as exc:
            refused = str(exc)
        verdict = wait_until(healthy_lab.ctx.health, HEAL_DEADLINE_S, interval_s=1.0)
    finally:
        healthy_lab.ensure_healthy()
    if refused:
        pytest.fail(f"heal-all after the test refused: {refused}", pytrace=False)
    if not verdict.ok:
        pytest.fail(f"the lab did not heal within {HEAL_DEADLINE_S:.0f}s of heal-all after the test: "
                    f"{verdict.reason}", pytrace=False)


# -- the bare lab (`up --bare`), one per worker, shared by tests/bare -------------------------------
@pytest.fixture(scope="session")
def bare_images(built_images):
    """The bare node images, built from the lab images once per session."""
    from pgha_lab.bare import images
    images.ensure_built(LabPaths(home=REPO))


BARE_LABS: list[BareLabUnderTest] = []   # the session's bare lab, once a test asked for it


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After a worker's last bare-lab test before others (xdist hands a group's tests out together),
    put its bare lab away; a later bare test brings it up again (fresh_bare_lab, configured_bare_lab)."""
    yield
    if KEEP or nextitem is None or not BARE_LABS or BARE_LABS[0].removed:
        return
    if "bare_lab" in item.fixturenames and "bare_lab" not in nextitem.fixturenames:
        BARE_LABS[0].put_away()


@pytest.fixture(scope="session")
def bare_lab(docker_client, bare_images):
    """The slot's bare lab, booted; tests that need it unconfigured or configured ask for
    `fresh_bare_lab` or `configured_bare_lab` (tests/bare/conftest.py)."""
    if not KEEP:
        remove_leftovers(BARE_PROJECT)
    paths = LabPaths(home=REPO, project=BARE_PROJECT)
    lab = BareLabUnderTest(paths, Topology.build(project=BARE_PROJECT, subnet=BARE_SUBNET, bare=True))
    lab.up()
    BARE_LABS.append(lab)
    yield lab
    BARE_LABS.remove(lab)
    if not KEEP:
        remove_leftovers(BARE_PROJECT)
