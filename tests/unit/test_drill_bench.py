"""bench/drills.py puts the lab back after a drill that left it unhealthy, not only after a crash."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "drills.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_drills", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_bench(monkeypatch, stdout: str) -> list[tuple[str, ...]]:
    bench = load_bench()
    calls: list[tuple[str, ...]] = []

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        calls.append(args)
        return subprocess.CompletedProcess(args, 3, stdout if args[0] == "drill" else "", "boom")
    monkeypatch.setattr(bench, "cli", cli)
    monkeypatch.setattr(bench, "absent_images", lambda: [])
    monkeypatch.setattr(bench, "fresh_lab", lambda profile: None)
    monkeypatch.setattr(sys, "argv", ["drills.py", "--scenarios", "kill-leader,switchover", "--profiles", "fast",
                                      "--repeat", "1", "--keep"])
    assert bench.main() == 0
    return calls


def drill_output(healthy: bool) -> str:
    return json.dumps({"runs": [{"run": "r1", "figures": {"write_downtime_s": 1.5}, "healthy_after": healthy,
                                 "problems": [] if healthy else ["the lab did not return to health after healing: x"]}]})


def test_a_drill_that_left_the_lab_unhealthy_is_followed_by_heal_and_up(monkeypatch):
    calls = run_bench(monkeypatch, drill_output(healthy=False))
    assert [c[0] for c in calls] == ["drill", "chaos", "up", "drill", "chaos", "up"]


def test_a_drill_that_crashed_is_followed_by_heal_and_up(monkeypatch):
    calls = run_bench(monkeypatch, "Traceback ...")
    assert [c[0] for c in calls] == ["drill", "chaos", "up", "drill", "chaos", "up"]


def test_a_healthy_drill_is_not(monkeypatch):
    calls = run_bench(monkeypatch, drill_output(healthy=True))
    assert [c[0] for c in calls] == ["drill", "drill"]


def test_the_bench_table_formats_like_the_reports():
    bench = load_bench()
    assert bench.spread([0, 0]) == "0"
    assert bench.spread([1, 2]) == "1.00/1.50/2.00"   # an x.5 median is not rounded to a whole number
    assert bench.spread([0, 2, 2, 4]) == "0/2/4"
