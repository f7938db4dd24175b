"""Shared fixtures. Tests that need Docker fail, never skip, when the engine is missing."""
from __future__ import annotations

from pathlib import Path

import pytest

from pgha_lab.paths import LabPaths

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
    """The node images, built (or reused from the build cache) once per session."""
    from pgha_lab.build import images
    images.ensure_built(LabPaths(home=REPO))
    return dict(images.IMAGES)
