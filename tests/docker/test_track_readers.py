"""What the track's reader makes of a node's answer, on a real container: a file that is not there is
missing; a node the engine would not run the check on (paused) gave no answer, which no grader may
read as a missing file; a node powered off says so, for the steps that judge a power cut."""
from __future__ import annotations

import subprocess
from types import SimpleNamespace

import pytest

from pgha_lab.track.readers import Reader

pytestmark = pytest.mark.docker


def test_a_missing_file_a_paused_node_and_a_stopped_one_read_as_what_they_are(node):
    reader = Reader(SimpleNamespace(docker=node))   # the reader only reaches the lab through its node control
    got = reader.files("n1", texts=["/etc/hostname"], certs=["/etc/etcd/tls/ca.crt"])
    assert got["text:/etc/hostname"].ok and not got["text:/etc/hostname"].unanswered
    absent = got["cert:/etc/etcd/tls/ca.crt"]
    assert not absent.ok and not absent.unanswered and absent.error == "/etc/etcd/tls/ca.crt does not exist on n1"

    subprocess.run(["docker", "pause", node.container("n1")], check=True, capture_output=True)
    try:
        paused = reader.files("n1", certs=["/etc/etcd/tls/ca.crt"])["cert:/etc/etcd/tls/ca.crt"]
    finally:
        subprocess.run(["docker", "unpause", node.container("n1")], check=True, capture_output=True)
    assert not paused.ok and paused.unanswered, paused
    assert paused.error.startswith("n1 could not be read: Error response from daemon") and "paused" in paused.error

    subprocess.run(["docker", "stop", "-t", "0", node.container("n1")], check=True, capture_output=True)
    stopped = reader.files("n1", certs=["/etc/etcd/tls/ca.crt"])["cert:/etc/etcd/tls/ca.crt"]
    assert not stopped.ok and not stopped.unanswered and stopped.error == "n1 is not running", stopped
