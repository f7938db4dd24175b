"""The page's buttons, on the library the CLI uses: chaos through Chaos(ctx).run and wait(outcome),
switchover/failover through roles, drills through drill.launch (the CLI's start sequence). A refusal
(LabError) comes back before anything changed; the slow part runs in a thread and ends in a verdict."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pgha_lab import roles
from pgha_lab.chaos import catalogue
from pgha_lab.chaos.actions import Chaos, wait
from pgha_lab.context import LabContext
from pgha_lab.drill import launch, report
from pgha_lab.drill.runner import DrillOptions
from pgha_lab.drill.scenarios import SCENARIOS
from pgha_lab.drill.scenarios import get as get_scenario
from pgha_lab.drill.workload import WorkloadSettings
from pgha_lab.errors import LabError
from pgha_lab.term.progress import Progress
from pgha_lab.web.hub import Hub, Task

# A drill that needs a bulk writer (isolate-leader-lagging) gets a light one from the page: about
# 0.4 MB/s of WAL, enough for a standby on a slow link to fall behind.
PAGE_BULK_ROWS_S = 50.0

ROLE_CHANGE_DEADLINE_S = 120.0          # as `pgha-lab switchover`'s default --timeout
REPORT_FILES = {".md", ".json", ".png", ".csv"}


class PageProgress(Progress):
    """A drill's progress steps as lines on its card (start and end of each step, and its notes)."""

    def __init__(self, task: Task, hub: Hub) -> None:
        super().__init__(quiet=True)
        self.task, self.hub = task, hub

    def _line(self, text: str) -> None:
        self.task.lines.append(text)
        self.hub.touch()

    def info(self, text: str) -> None:
        self._line(f"• {text}")

    def detail(self, text: str) -> None:
        if self.task.lines and self.task.lines[-1].startswith("  ") and self.task.lines[-1] == f"  {text}":
            return
        self._line(f"  {text}")

    @contextmanager
    def step(self, title: str) -> Iterator[Progress]:
        self._line(f"… {title}")
        ok = False
        try:
            yield self
            ok = True
        finally:
            self._line(f"{'✓' if ok else '✗'} {title}")


@dataclass
class Controls:
    ctx: LabContext
    hub: Hub
    after_action: Callable[[], None] = lambda: None   # e.g. re-read chaos rules on the next tick

    def __post_init__(self) -> None:
        self._drill_lock = threading.Lock()

    # -- catalogue -----------------------------------------------------------------------------
    def catalogue(self) -> dict[str, Any]:
        topo = self.ctx.topology
        return {"actions": [*(f.name for f in catalogue.page_faults()), catalogue.HEAL_ALL],
                "faults": {f.name: {"summary": f.summary, "takes": f.takes, "buttons": [asdict(b) for b in f.buttons]}
                           for f in catalogue.page_faults()},
                "roles": ["switchover", "failover"],
                "scenarios": {name: s.summary for name, s in SCENARIOS.items()},
                "nodes": [{"name": n.name, "kind": n.role.value, "address": str(n.address)} for n in topo.nodes],
                "ports": {"primary": topo.ports.haproxy_primary, "replicas": topo.ports.haproxy_replicas}}

    def _not_during_drill(self) -> None:
        if self._drill_lock.locked():
            raise LabError("a drill is running; wait for its report before acting on the lab.")

    # -- chaos ----------------------------------------------------------------------------------
    def chaos(self, action: str, target: str | None, *, peers: str | None = None, clear: bool = False,
              loss: str | None = None, delay: str | None = None, rate: str | None = None) -> Task:
        self._not_during_drill()
        chaos = Chaos(self.ctx)
        if action == catalogue.HEAL_ALL:
            done = chaos.heal_all()
            text = "; ".join(done) if done else "nothing to heal: every node runs, connected, without network faults"
            self.hub.log("chaos", f"heal-all: {text}")
            self.after_action()
            return self.hub.new_task("heal-all", "heal-all", status="done", done=text)
        fault = catalogue.get(action)
        if fault is None or not fault.chaos:
            names = ", ".join([*(f.name for f in catalogue.page_faults()), catalogue.HEAL_ALL])
            raise LabError(f"unknown chaos action {action!r}; choose one of: {names}.")
        if not target and catalogue.needs_target(fault):
            raise LabError(f"chaos {action} needs a TARGET: a node name, leader or replica.")
        outcome = chaos.run(action, target, peers=peers, clear=clear, loss=loss, delay=delay, rate=rate)
        self.hub.log("chaos", outcome.done)
        self.after_action()
        title = f"chaos {action} {target}" + (f" --from {peers}" if peers else "") + (" --clear" if clear else "")
        task = self.hub.new_task("chaos", title, done=f"{outcome.done}.",
                                 expected=f"Expected: {outcome.expectation.text}")

        def verdict() -> None:
            wait(outcome)
            task.verdict = outcome.verdict_line
            task.status = {True: "happened", False: "not-happened", None: "done"}[outcome.happened]
            self.hub.log("chaos", f"{title}: {task.verdict}")
        threading.Thread(target=verdict, name="dashboard-chaos-wait", daemon=True).start()
        return task

    # -- switchover / failover --------------------------------------------------------------------
    def role_change(self, kind: str, to: str | None) -> Task:
        if kind not in ("switchover", "failover"):
            raise LabError(f"unknown role change {kind!r}; choose switchover or failover.")
        self._not_during_drill()
        change = roles.request_change(self.ctx, kind, to or None)
        text = (f"{kind}: {change.old_leader or 'no leader'} -> {change.new_leader or '(Patroni picks)'} requested; "
                f"waiting for writes on the new leader through HAProxy...")
        self.hub.log("chaos", text)
        task = self.hub.new_task(kind, f"{kind}" + (f" --to {to}" if to else ""), done=text)

        def verdict() -> None:
            try:
                done = roles.wait_for_writes(self.ctx, change, ROLE_CHANGE_DEADLINE_S)
                task.verdict = (f"{done.new_leader} takes writes through HAProxy, {done.seconds_to_writes:.1f}s after "
                                f"Patroni answered the request (the write probe measures the downtime: last ack "
                                f"before to first ack after).")
                task.status = "happened"
            except LabError as exc:
                task.verdict, task.status = str(exc), "not-happened"
            self.hub.log("chaos", f"{kind}: {task.verdict}")
        threading.Thread(target=verdict, name="dashboard-role-wait", daemon=True).start()
        return task

    # -- drills -----------------------------------------------------------------------------------
    def drills_dir(self) -> Path:
        return launch.drills_dir(self.ctx)

    def drill(self, scenario_name: str) -> Task:
        scenario = get_scenario(scenario_name)
        if not self._drill_lock.acquire(blocking=False):
            raise LabError("a drill is already running; wait for its report.")
        opts = DrillOptions(workload=WorkloadSettings(rows_per_s=PAGE_BULK_ROWS_S)) if scenario.needs_bulk \
            else DrillOptions()
        try:
            drill = launch.prepare(self.ctx, scenario, opts)   # refused at once, in the request's answer, like the CLI
        except LabError:
            self._drill_lock.release()
            raise
        folder = drill.folder
        task = self.hub.new_task("drill", f"drill {scenario.name}", done=scenario.summary)
        self.hub.log("drill", f"drill {scenario.name} started")

        def run() -> None:
            try:
                result = drill.run(PageProgress(task, self.hub))[0][0]
                figs = result.figures()
                down = figs.get("write_downtime_s")
                task.verdict = (f"write downtime {down if down is not None else '—'}s, {figs.get('lost_writes')} lost, "
                                f"{figs.get('non_leader_acks')} acked by a non-leader, "
                                f"{figs.get('split_brain_intervals')} split-brain interval(s)"
                                + "".join(f"; problem: {p}" for p in result.problems()))
                task.status = "not-happened" if result.problems() else "happened"
                task.link = f"/drills/{folder.name}/report.md"
            except Exception as exc:   # a LabError names the fix; anything else is still worth showing
                task.verdict, task.status = str(exc), "failed"
                if not any(folder.iterdir()):
                    folder.rmdir()
            finally:
                self._drill_lock.release()
                self.hub.log("drill", f"drill {scenario.name}: {task.verdict}")
        threading.Thread(target=run, name="dashboard-drill", daemon=True).start()
        return task

    def drill_reports(self) -> list[dict[str, Any]]:
        """Past report folders, newest first, with their figures and timeline."""
        root = self.drills_dir()
        out = []
        for folder in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True) if root.is_dir() else []:
            single = folder / report.FILES["json"]
            first_run = folder / "run-01"
            doc = _read_json(single) or _read_json(folder / "summary.json")
            if doc is None:
                continue
            base = folder if single.exists() else first_run
            figures = doc.get("figures") or {k: v.get("median") for k, v in (doc.get("summary") or {}).items()
                                             if isinstance(v, dict)}
            rel = lambda p: f"/drills/{p.relative_to(root).as_posix()}"   # noqa: E731
            md = folder / ("report.md" if single.exists() else "summary.md")
            png = base / report.FILES["timeline"]
            problems = doc.get("problems") or []
            if isinstance(problems, dict):   # a --repeat summary: run -> its problems
                problems = [f"{run}: {p}" for run, ps in problems.items() for p in ps]
            out.append({"name": folder.name, "scenario": doc.get("scenario", ""), "problems": problems,
                        "figures": figures, "report": rel(md) if md.exists() else "",
                        "timeline": rel(png) if png.exists() else ""})
        return out

    def report_file(self, rel: str) -> Path:
        """A file under the drills folder, refused when the path leaves it or is not a report file."""
        root = self.drills_dir().resolve()
        path = (root / rel).resolve()
        if root not in path.parents or path.suffix not in REPORT_FILES or not path.is_file():
            raise LabError("no such report file.")
        return path


def _read_json(path: Path) -> dict[str, Any] | None:
    import json
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
