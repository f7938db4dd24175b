"""`pgha-lab drill matrix`: chosen scenarios across chosen settings, the lab re-configured between
cells, with each cell's expected outcome stated up front and checked against what was measured;
one report (Markdown table, JSON, a PNG heat map) over the per-cell drill folders."""
from __future__ import annotations

import itertools
import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pgha_lab import health, lab_settings, profiles, roles
from pgha_lab.context import LabContext
from pgha_lab.drill import report
from pgha_lab.drill.runner import DrillOptions, DrillResult, refuse_unfit, run_drill
from pgha_lab.drill.scenarios import SCENARIOS
from pgha_lab.errors import LabError
from pgha_lab.probes import Cluster
from pgha_lab.term.progress import Progress
from pgha_lab.wait import wait_until

FIGURES = ("write_downtime_s", "lost_writes", "hung_writes", "non_leader_acks", "split_brain_intervals")
FIGURE_TITLES = {"write_downtime_s": "downtime s", "lost_writes": "lost", "hung_writes": "hung",
                 "non_leader_acks": "non-leader acks", "split_brain_intervals": "split brain"}


@dataclass(frozen=True)
class Cell:
    """One column of the matrix: the settings and profile the lab runs while its scenarios drill."""
    settings: lab_settings.LabSettings
    profile: str

    @property
    def name(self) -> str:
        s = self.settings
        return f"{s.replication}-failsafe-{'on' if s.failsafe else 'off'}-{self.profile}"


@dataclass(frozen=True)
class Plan:
    scenarios: list[str]
    cells: list[Cell]
    repeat: int
    options: DrillOptions = DrillOptions()


def _split(text: str | None, what: str) -> list[str]:
    items = [x.strip() for x in (text or "").split(",") if x.strip()]
    if not items:
        raise LabError(f"the matrix needs at least one {what}; e.g. --scenarios isolate-leader,kill-replica.")
    return list(dict.fromkeys(items))


def plan(ctx: LabContext, *, scenarios: str | None, replication: str | None, failsafe: str | None,
         profile: str | None, repeat: int, sync_count: int | None = None,
         options: DrillOptions = DrillOptions()) -> Plan:
    """The cells to run, every name checked before the lab is touched."""
    names = _split(scenarios, "scenario")
    for n in names:
        if n not in SCENARIOS:
            raise LabError(f"unknown drill {n!r}; choose from: {', '.join(SCENARIOS)}.")
        refuse_unfit(SCENARIOS[n], options)
    if repeat < 1:
        raise LabError(f"--repeat takes a count of 1 or more, not {repeat}.")
    base = ctx.settings
    modes = _split(replication or base.replication, "replication mode")
    switches = [lab_settings.on_off(x, "--failsafe")
                for x in _split(failsafe or ("on" if base.failsafe else "off"), "failsafe value")]
    profile_names = _split(profile or ctx.profile.name, "profile")
    for p in profile_names:
        profiles.get(p)
    db_nodes = len(ctx.topology.db)
    cells = []
    for mode, fs, prof in itertools.product(modes, switches, profile_names):
        s = lab_settings.requested(base, replication=mode, failsafe=fs, sync_count=sync_count)
        cells.append(Cell(s.validate(db_nodes), prof))
    return Plan(names, cells, repeat, options)


# -- expected outcomes ---------------------------------------------------------------------------------
@dataclass
class Expected:
    text: str
    judge: Callable[[list[dict[str, Any]]], tuple[bool, str]]


def _all(runs: list[dict[str, Any]], key: str, pred: Callable[[Any], bool]) -> bool:
    return all(pred(r.get(key)) for r in runs)


def expected(scenario: str, cell: Cell, db_nodes: int) -> Expected:
    """What the tool says must happen in this cell, and the check over the cell's runs."""
    s, p = cell.settings, profiles.get(cell.profile)
    safe = "never two primaries, " + ("no write acknowledged while another node held the key" if s.failsafe
                                      else "no write acknowledged by a non-leader")

    def no_split(runs: list[dict[str, Any]]) -> tuple[bool, str]:
        # wrong_acks: the drill's own judgement of its non-leader acks (reconcile.Findings.judged_non_leader_acks).
        bad = [r for r in runs if (r.get("split_brain_intervals") or 0) or r.get("wrong_acks")]
        return (not bad, "" if not bad else f"{len(bad)} run(s) with split brain or non-leader acks")

    def both(*checks: Callable[[list[dict[str, Any]]], tuple[bool, str]]):
        def judge(runs: list[dict[str, Any]]) -> tuple[bool, str]:
            notes = []
            for c in checks:
                ok, why = c(runs)
                if not ok:
                    notes.append(why)
            return (not notes, "; ".join(notes) or "held in every run")
        return judge

    def zero_lost(runs: list[dict[str, Any]]) -> tuple[bool, str]:
        n = [r.get("lost_writes") for r in runs]
        return (all(x == 0 for x in n), f"lost writes {n}")

    def writable(runs: list[dict[str, Any]]) -> tuple[bool, str]:
        d = [r.get("write_downtime_s") for r in runs]
        return (all(x is None or x <= 3.0 for x in d), f"write downtime {d} (failsafe should keep writes going)")

    def stopped(runs: list[dict[str, Any]]) -> tuple[bool, str]:
        d = [r.get("write_downtime_s") for r in runs]
        return (all(x is not None and x >= p.retry_timeout for x in d), f"write downtime {d}")

    def hung(runs: list[dict[str, Any]]) -> tuple[bool, str]:
        h = [r.get("hung_writes") or 0 for r in runs]
        return (all(x > 0 for x in h), f"hung writes {h}")

    known = SCENARIOS.get(scenario)
    own = known.in_matrix(s.failsafe, s.replication, p) if known else None
    if own:
        writes = {"flow": writable, "stop": stopped, "hang": hung}[own.writes]
        return Expected(f"{own.text}; 0 lost; {safe}", both(writes, zero_lost, no_split))
    cuts_leader = bool(known and known.cuts_leader)
    if s.replication == "async" and cuts_leader:
        def bounded(runs: list[dict[str, Any]]) -> tuple[bool, str]:
            over = [r for r in runs if (r.get("lost_writes") or 0) > (r.get("async_loss_bound_writes") or 0)
                    or (r.get("bulk_bytes_lost") or 0) > (r.get("async_loss_bound_bytes") or 0)]
            lost = [(r.get("lost_writes"), r.get("bulk_bytes_lost")) for r in runs]
            return (not over, f"lost (writes, bulk bytes) per run {lost}; over Patroni's bound in {len(over)} run(s)")
        return Expected(f"async: acknowledged writes not yet streamed may be lost, within Patroni's documented bound "
                        f"(maximum_lag_on_failover {s.max_lag} bytes plus what was written in the last ttl "
                        f"{p.ttl} s); {safe}", both(bounded, no_split))
    if s.replication == "quorum" and cuts_leader and db_nodes >= 3:
        return Expected("quorum: the majority side elects a new leader, the cut-off minority stops; 0 lost; " + safe,
                        both(zero_lost, no_split))
    if s.replication == "async":
        return Expected(f"async: the leader stays, so nothing unstreamed is lost; {safe}", both(zero_lost, no_split))
    return Expected(f"{s.replication}: every acknowledged write is on a standby, so 0 lost; {safe}",
                    both(zero_lost, no_split))


# -- figures per run -------------------------------------------------------------------------------------
def run_figures(result: DrillResult) -> dict[str, Any]:
    """The drill's figures plus what the matrix adds: hung writes and the async loss bound."""
    figs = result.figures()
    timeout_s = result.writer_settings.statement_timeout_ms / 1000
    figs["hung_writes"] = sum(1 for a in result.attempts
                              if "synchronous replication" in a.notice or "statement timeout" in a.error
                              or (a.end_s - a.start_s) >= 0.9 * timeout_s)
    ttl = result.profile.ttl
    figs["async_loss_bound_writes"] = sum(1 for a in result.attempts if a.ok and a.server == result.old_leader
                                          and a.start_s >= result.fault_s - ttl)
    w = result.workload or {}
    rate = (w.get("rows_per_s") or 0) * (w.get("row_bytes") or 0)
    figs["async_loss_bound_bytes"] = int(result.settings.get("max_lag", 0) + rate * ttl)
    figs["bulk_rows_lost"] = w.get("rows_lost")
    figs["bulk_bytes_lost"] = w.get("bytes_lost")
    return figs


@dataclass
class CellResult:
    scenario: str
    cell: str
    expected: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    held: bool | None = None
    why: str = ""
    error: str = ""
    repairs: list[str] = field(default_factory=list)   # members re-cloned after a run so the matrix goes on

    def spread(self, key: str) -> tuple[Any, Any, Any]:
        values = [r[key] for r in self.runs if isinstance(r.get(key), (int, float))]
        if not values:
            return (None, None, None)
        return (min(values), statistics.median(values), max(values))


REPAIR_DEADLINE_S = 180.0   # a clone of the lab's few hundred MiB, then streaming


def stuck_members(cluster: Cluster) -> list[str]:
    """Members a healed run left behind, with a leader to clone them from: not streaming."""
    if cluster.leader is None:
        return []
    return [m.name for m in cluster if m.name != cluster.leader_name and m.state != "streaming"]


def repair(ctx: LabContext) -> str | None:
    """What a DBA does when a run leaves a member Patroni cannot bring back (a former leader whose
    pg_rewind failed): clone it again from the leader, so the rest of the matrix runs on a healthy
    lab. What was done and why, or None when there was nothing to clone or it did not help."""
    stuck = stuck_members(ctx.cluster())
    if not stuck:
        return None
    notes = []
    for name in stuck:
        log = health.diverged_line(ctx.docker.logs_tail(name, health.DIVERGED_TAIL_LINES))
        member = ctx.cluster().member(name)
        why = log[:160] if log else (member.state if member else "not registered")
        try:
            roles.reinit(ctx, name)
        except LabError:   # Patroni refused: the run's unhealthy lab stays the cell's finding
            return None
        notes.append(f"{name} could not rejoin ({why}): re-initialised from the leader")
    expected = [n.name for n in ctx.topology.db]
    if not wait_until(lambda: health.assess_patroni(ctx.cluster(), expected), REPAIR_DEADLINE_S).ok:
        return None
    return "; ".join(notes)


def run(ctx: LabContext, p: Plan, folder: Path, progress: Progress,
        reconfigure: Callable[[Cell], None]) -> list[CellResult]:
    """Each cell: re-configure the lab, then every scenario `repeat` times, a report per run."""
    out: list[CellResult] = []
    db_nodes = len(ctx.topology.db)
    for cell in p.cells:
        progress.info(f"cell {cell.name}: {cell.settings.summary()}, {cell.profile} profile")
        reconfigure(cell)
        for scenario in p.scenarios:
            exp = expected(scenario, cell, db_nodes)
            cr = CellResult(scenario, cell.name, exp.text)
            out.append(cr)
            for k in range(p.repeat):
                run_id = f"{folder.name}-{cell.name}-{scenario}-{k + 1}"
                target = folder / cell.name / scenario / f"run-{k + 1:02d}"
                target.mkdir(parents=True, exist_ok=True)
                progress.info(f"{scenario} run {k + 1} of {p.repeat} ({cell.name})")
                try:
                    result = run_drill(ctx, SCENARIOS[scenario], run_id, p.options, progress=progress)
                except LabError as exc:   # one broken cell must not cost the rest of the matrix
                    cr.error = str(exc)
                    progress.info(f"  drill refused or failed: {exc}")
                    break
                report.write(result, target)
                cr.runs.append(run_figures(result))
                cr.folders.append(str(target.relative_to(folder)))
                if not result.healthy_after:
                    repaired = repair(ctx)
                    if repaired is None:
                        cr.error = f"the lab did not return to health: {result.health_note}"
                        break
                    cr.repairs.append(f"after run {k + 1}: {repaired}")
                    progress.info(f"  {cr.repairs[-1]}")
            if cr.runs:
                cr.held, cr.why = exp.judge(cr.runs)
                if cr.error:
                    cr.held, cr.why = False, f"{cr.why}; {cr.error}"
            else:
                cr.held, cr.why = False, cr.error or "no run"
    return out


# -- the report ------------------------------------------------------------------------------------------
def _cell_text(cr: CellResult) -> str:
    parts = []
    for key in FIGURES:
        lo, med, hi = cr.spread(key)
        cells = report.spread_cells([lo, med, hi])
        parts.append(f"{FIGURE_TITLES[key]} {cells[1]}" + (f" ({cells[0]}–{cells[2]})" if lo != hi else ""))
    if cr.repairs:
        parts.append(f"{len(cr.repairs)} member(s) re-cloned after a run")
    mark = "✓" if cr.held else "✗"
    return f"{mark} " + "<br>".join(parts)


def write(results: list[CellResult], p: Plan, folder: Path) -> dict[str, Path]:
    cells = [c.name for c in p.cells]
    by = {(r.scenario, r.cell): r for r in results}
    lines = [f"# Drill matrix: {len(p.scenarios)} scenario(s) × {len(cells)} setting(s), {p.repeat} run(s) each", "",
             "Each cell: median (min–max) over the runs of write downtime (s), acknowledged writes lost, writes that "
             "hung (waited for a standby until cancelled, or hit the statement timeout), writes acknowledged by a "
             "non-leader, split-brain intervals; ✓ = the expected outcome held, ✗ = it did not.", "",
             "| scenario | " + " | ".join(cells) + " |", "|---|" + "---|" * len(cells)]
    for sc in p.scenarios:
        lines.append(f"| {sc} | " + " | ".join(_cell_text(by[(sc, c)]) if (sc, c) in by else "—" for c in cells) + " |")
    lines += ["", "## Expected outcomes and whether they held", ""]
    for r in results:
        lines.append(f"- **{r.scenario} / {r.cell}**: {'held' if r.held else 'DID NOT HOLD'}. Expected: {r.expected}. "
                     f"Measured: {r.why}." + "".join(f" Repaired {x}." for x in r.repairs)
                     + (" Runs: " + ", ".join(f"[{i + 1}]({f}/report.md)" for i, f in enumerate(r.folders))
                        if r.folders else ""))
    lines += ["", "## Settings", ""] + [f"- `{c.name}`: {c.settings.summary()}, {c.profile} profile" for c in p.cells]
    w = p.options.workload
    lines += ["", f"Workload: one ledger insert every {p.options.writer.interval_s * 1000:.0f} ms"
              + (f", bulk writer {w.rows_per_s:g} rows/s of {w.row_bytes} bytes" if w.enabled else "") + ".", ""]
    files = {"markdown": folder / "matrix.md", "json": folder / "matrix.json", "heatmap": folder / "heatmap.png"}
    files["markdown"].write_text("\n".join(lines))
    doc = {"scenarios": p.scenarios, "repeat": p.repeat,
           "cells": [{"name": c.name, "profile": c.profile, "settings": c.settings.as_dict()} for c in p.cells],
           "workload": {"writer": asdict(p.options.writer), "bulk": asdict(w)},
           "results": [{**asdict(r), "spread": {k: r.spread(k) for k in FIGURES}} for r in results]}
    files["json"].write_text(json.dumps(doc, indent=2) + "\n")
    heatmap(results, p, files["heatmap"])
    return files


def heatmap(results: list[CellResult], p: Plan, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c.name for c in p.cells]
    by = {(r.scenario, r.cell): r for r in results}
    grid = [[(by[(s, c)].spread("write_downtime_s")[1] if (s, c) in by else None) for c in cells] for s in p.scenarios]
    values = [[float("nan") if v is None else v for v in row] for row in grid]
    fig, ax = plt.subplots(figsize=(max(6, 1.9 * len(cells)), max(2.5, 0.9 * len(p.scenarios) + 1.5)))
    im = ax.imshow(values, cmap="YlOrRd", aspect="auto")
    top = max((v for row in grid for v in row if v is not None), default=0.0)
    ax.set_xticks(range(len(cells)), cells, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(p.scenarios)), p.scenarios, fontsize=8)
    for i, s in enumerate(p.scenarios):
        for j, c in enumerate(cells):
            r = by.get((s, c))
            if r is None:
                continue
            down = r.spread("write_downtime_s")[1]
            lost = r.spread("lost_writes")[1]
            hung = r.spread("hung_writes")[1]
            text = (f"{down:.1f}s" if down is not None else "—") + f"\nlost {lost if lost is not None else '—'}" \
                + (f"\nhung {hung:g}" if hung else "") + ("" if r.held else "\n✗")
            dark = down is not None and top and down > 0.6 * top   # readable on the darkest cells
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    fig.colorbar(im, ax=ax, label="median write downtime (s)")
    ax.set_title("Write downtime by scenario and setting (lost acknowledged writes in each cell)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
