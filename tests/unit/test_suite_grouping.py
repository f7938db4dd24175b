"""The labs phase relies on pytest-xdist's loadgroup: tests marked with one xdist_group run on one
worker, in order, on that worker's lab (the bare chain builds on one bare lab step by step). When
the installed pytest and pytest-xdist stop agreeing on it, grouping is silently ignored and each
worker builds its own lab; this test runs a small suite the way scripts/test.sh runs the labs."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def test_an_xdist_group_runs_on_one_worker(tmp_path):
    (tmp_path / "test_chain.py").write_text(textwrap.dedent("""
        import os, time
        import pytest
        pytestmark = pytest.mark.xdist_group("chain")

        @pytest.mark.parametrize("step", range(6))
        def test_step(step):
            time.sleep(0.1)
            print("WORKER", os.environ["PYTEST_XDIST_WORKER"])
        """))
    (tmp_path / "test_other.py").write_text(textwrap.dedent("""
        import time
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_other(n):
            time.sleep(0.1)
        """))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "3", "--dist", "loadgroup",
                           "-rA", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:]
    workers = {line.split()[-1] for line in proc.stdout.splitlines() if line.startswith("WORKER")}
    assert len(workers) == 1, f"the group's tests ran on {sorted(workers)}: loadgroup ignored xdist_group"
