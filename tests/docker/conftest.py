"""A throwaway node for the tests of how the lab reaches into containers."""
from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from pgha_lab.gateway import BASE_IMAGE, LABEL_NODE, LABEL_PROJECT, LabDocker


@pytest.fixture()
def node(docker_client, built_images):
    """A running container named and labelled as a lab's node `n1` of a throwaway project."""
    project = f"pgha-exectest-{uuid.uuid4().hex[:8]}"
    name = f"{project}-n1"
    subprocess.run(["docker", "run", "-d", "--name", name, "--label", f"{LABEL_PROJECT}={project}",
                    "--label", f"{LABEL_NODE}=n1", BASE_IMAGE, "sleep", "infinity"], check=True, capture_output=True)
    try:
        yield LabDocker(project, Path("/nonexistent/compose.yaml"))
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
