"""A drill's start sequence, the one the CLI (`pgha-lab drill`) and the dashboard both call: the
refusals before anything is touched (the options, the lab's shape, an occupied --out folder, an
unhealthy lab), the run's stamp and report folder, then the runs, each written as a report.

Two steps, because the dashboard answers the request with the refusal and runs the drill in a
thread: `prepare` refuses or makes the folder, `Drill.run` runs and reports."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgha_lab.context import LabContext
from pgha_lab.drill import report
from pgha_lab.drill.clock import stamp
from pgha_lab.drill.runner import DrillOptions, DrillResult, refuse_unfit, require_healthy, run_drill
from pgha_lab.drill.scenarios import Scenario
from pgha_lab.errors import LabError
from pgha_lab.term.progress import Progress


def drills_dir(ctx: LabContext) -> Path:
    """Where a lab's drill reports go unless --out says otherwise."""
    return ctx.paths.state / "drills"


def report_folder(ctx: LabContext, run_stamp: str, name: str, what: str = "drill", out: Path | None = None) -> Path:
    """The report folder of a run stamped `run_stamp`: `out`, or labs/<project>/drills/<stamp>-<name>;
    refused when it holds files or the lab is not healthy, created only after both checks, so a
    refusal leaves nothing behind. `what` names the run in the health refusal (drill, campaign)."""
    folder = report.refuse_occupied(out if out is not None else drills_dir(ctx) / f"{run_stamp}-{name}")
    require_healthy(ctx, what)
    return report.prepare_dir(folder)


@dataclass
class Drill:
    """A drill whose refusals have passed and whose report folder exists."""
    ctx: LabContext
    scenario: Scenario
    opts: DrillOptions
    stamp: str
    folder: Path
    repeat: int = 1

    def run(self, progress: Progress) -> tuple[list[DrillResult], dict[str, Any] | None]:
        """Run it `repeat` times (stopping when a run leaves the lab unhealthy), each run's report in
        the folder (run-NN/ when repeated); (the results, the --repeat summary or None)."""
        results: list[DrillResult] = []
        for k in range(self.repeat):
            if self.repeat > 1:
                progress.info(f"run {k + 1} of {self.repeat}")
            result = run_drill(self.ctx, self.scenario, f"{self.stamp}-{self.scenario.name}-{k + 1}", self.opts,
                               progress=progress)
            target = self.folder / f"run-{k + 1:02d}" if self.repeat > 1 else self.folder
            target.mkdir(exist_ok=True)
            report.write(result, target)
            results.append(result)
            if not result.healthy_after:
                if self.repeat > 1:
                    progress.info(f"the lab did not return to health ({result.health_note}); stopping the repeats")
                break
        summary = report.write_summary(self.scenario.name, results, self.folder) if self.repeat > 1 else None
        return results, summary


def refuse_options(scenario: Scenario, opts: DrillOptions, repeat: int = 1) -> None:
    """What the options alone rule out (the CLI asks first, before it opens the lab)."""
    refuse_unfit(scenario, opts)
    if repeat < 1:
        raise LabError(f"--repeat takes a count of 1 or more, not {repeat}.")


def prepare(ctx: LabContext, scenario: Scenario, opts: DrillOptions, *, repeat: int = 1,
            out: Path | None = None) -> Drill:
    """Every refusal a drill has, before anything is touched, then its stamp and report folder."""
    refuse_options(scenario, opts, repeat)
    if scenario.requires is not None:   # a lab whose shape cannot take the scenario (e.g. one HAProxy)
        scenario.requires(ctx)
    run_stamp = stamp()
    return Drill(ctx, scenario, opts, run_stamp, report_folder(ctx, run_stamp, scenario.name, out=out), repeat)
