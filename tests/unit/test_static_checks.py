"""ruff at 0 findings on pgha_lab/ and bench/, mypy at 0 on pgha_lab/, with the rules and strictness set
in pyproject.toml.

They run as the tools' own command lines (the test extras pin both), so a finding fails the unit
phase of the README's test command with the tools' own report as the reason.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # The tools of the interpreter running the tests: the ones the test extras installed.
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    done = _run("ruff", "check", "--no-cache", "--output-format", "concise", "pgha_lab", "bench")
    assert done.returncode == 0, f"ruff check pgha_lab bench (exit {done.returncode}):\n{done.stdout}{done.stderr}"


def test_mypy_finds_nothing():
    # The package, the options and the cache come from pyproject.toml's [tool.mypy].
    done = _run("mypy")
    assert done.returncode == 0, f"mypy (exit {done.returncode}):\n{done.stdout}{done.stderr}"
