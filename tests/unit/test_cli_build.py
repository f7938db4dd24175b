"""The build and doctor commands fail the way a user can act on: one sentence, no traceback."""
import subprocess
import sys

import pytest


def cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "pgha_lab.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/pgha-lab-test.sock"}


def test_build_without_an_engine_prints_one_sentence(tmp_path):
    proc = cli("--home", str(tmp_path), "build", env_extra=NO_ENGINE)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Docker engine" in lines[0] and "setup-host.sh" in lines[0]


@pytest.mark.parametrize("argv", [["build", "--no-such-flag"], ["build", "--pg-install", "brew"],
                                  ["doctor", "--bogus"]])
def test_bad_flags_print_usage_and_exit_2(argv):
    proc = cli(*argv, env_extra=NO_ENGINE)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr and "Traceback" not in proc.stderr


def test_doctor_json_without_an_engine_reports_it():
    import json
    proc = cli("doctor", "--json", env_extra=NO_ENGINE)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    engine = next(c for c in doc["checks"] if c["name"] == "engine")
    assert doc["ok"] is False and engine["ok"] is False
