"""A drill started from the dashboard goes through the CLI's start sequence (drill/launch.py): the
same refusal of an unhealthy lab in the request's answer with no folder left behind, and on a
healthy lab a report folder named by the one run stamp, holding the run's report."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from pgha_lab.chaos.actions import Chaos
from pgha_lab.errors import LabError
from pgha_lab.wait import wait_until
from pgha_lab.web.controls import Controls
from pgha_lab.web.hub import Hub

pytestmark = [pytest.mark.docker, pytest.mark.lab]

DRILL_DEADLINE_S = 300.0


def folders(controls: Controls) -> set[str]:
    root = controls.drills_dir()
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def test_the_page_and_the_cli_refuse_an_unhealthy_lab_alike_and_leave_no_folder(lab, tmp_path):
    ctx = lab.ctx
    controls = Controls(ctx, Hub())
    replica = min(m.name for m in ctx.cluster().replicas)
    Chaos(ctx).run("stop", replica)
    assert wait_until(lambda: not ctx.health().ok, 60).ok
    before = folders(controls)
    with pytest.raises(LabError) as page:
        controls.drill("switchover")
    proc = lab.cli("drill", "switchover", "--out", str(tmp_path / "cli"), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    for said in (str(page.value), proc.stderr):   # one sentence, the reason read at its own moment
        assert "the lab is not healthy (" in said and "then run the drill again." in said, said
    assert folders(controls) == before and not (tmp_path / "cli").exists()
    assert not controls.hub.tasks, "a refused drill starts no task"


def test_a_drill_from_the_page_writes_its_report_in_a_folder_named_by_the_run_stamp(lab):
    controls = Controls(lab.ctx, Hub())
    before = folders(controls)
    task = controls.drill("switchover")
    try:
        ended = wait_until(lambda: task.status != "running", DRILL_DEADLINE_S, interval_s=1.0)
        assert ended.ok, f"the drill did not end in {DRILL_DEADLINE_S:.0f}s: {task.lines[-5:]}"
        assert task.status == "happened", (task.status, task.verdict)
        new = folders(controls) - before
        assert len(new) == 1, new
        name = new.pop()
        assert re.fullmatch(r"\d{8}T\d{6}Z-switchover", name), name
        doc = json.loads((controls.drills_dir() / name / "report.json").read_text())
        assert doc["run"] == f"{name}-1" and task.link == f"/drills/{name}/report.md"
    finally:
        for name in folders(controls) - before:
            shutil.rmtree(controls.drills_dir() / name)
