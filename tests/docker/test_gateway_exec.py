"""The lab's exec and container states go through the engine's API, not a `docker` CLI process each:
what callers read of them must stay what the CLI gave (exit status, stdout and stderr apart, the
engine's refusal as status 1 with its message, a command that outlives its timeout as a LabError),
on a real container of the lab's base image."""
from __future__ import annotations

import subprocess
import time

import pytest

from pgha_lab.errors import LabError

pytestmark = pytest.mark.docker


def test_exec_gives_the_status_and_both_streams_as_the_cli_does(node):
    proc = node.exec("n1", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
    assert node.exec("n1", "id", "-un", user="nobody").stdout == "nobody\n"
    with pytest.raises(LabError, match=r"^`sh -c echo no; exit 2` failed on n1: no$"):
        node.exec("n1", "sh", "-c", "echo no; exit 2")
    # A program the node does not have: the runtime's 126 and its message, as `docker exec` shows them.
    missing = node.exec("n1", "no-such-program", check=False)
    assert missing.returncode == 126 and "no-such-program" in missing.stdout + missing.stderr


def test_the_engines_refusals_read_as_status_1_with_its_message(node):
    gone = node.exec("n2", "true", check=False)
    assert gone.returncode == 1 and "No such container" in gone.stderr, gone
    subprocess.run(["docker", "pause", node.container("n1")], check=True, capture_output=True)
    try:
        paused = node.exec("n1", "true", check=False)
        assert paused.returncode == 1 and "is paused" in paused.stderr, paused
        assert node.state("n1").status == "paused"
    finally:
        subprocess.run(["docker", "unpause", node.container("n1")], check=True, capture_output=True)


def test_a_command_past_its_timeout_is_a_lab_error_in_about_that_time(node):
    started = time.monotonic()
    with pytest.raises(LabError, match=r"`sleep 30` on n1 did not finish within 2s"):
        node.exec("n1", "sleep", "30", timeout=2)
    assert time.monotonic() - started < 5


def test_states_and_listing_read_the_containers_that_exist(node):
    states = node.states(["n1", "n2"])
    assert states["n1"].status == "running" and states["n1"].image.startswith("sha256:")
    assert states["n1"].started_at and states["n1"].created and not states["n1"].on_lab_network
    assert states["n2"].status == "missing" and node.running_image("n2") is None
    assert node.containers() == {"n1": "running"}
    subprocess.run(["docker", "kill", node.container("n1")], check=True, capture_output=True)
    stopped = node.state("n1")
    assert stopped.status == "exited" and stopped.exit_code == 137 and stopped.condition == "stopped"
