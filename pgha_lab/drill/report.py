"""A drill's report on disk: Markdown for the DBA, JSON for scripts, the raw ledger and samples
as CSV for re-plotting, and the timeline PNG; plus a min/median/max summary over repeats."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pgha_lab.check.history import FAIL, OK, UNKNOWN, load_history, write_finals
from pgha_lab.drill import ledger, sampler
from pgha_lab.drill.campaign import CampaignResult
from pgha_lab.drill.reconcile import summarize
from pgha_lab.drill.runner import DrillResult
from pgha_lab.errors import LabError

FILES = {"markdown": "report.md", "json": "report.json", "ledger": "ledger.csv", "samples": "samples.csv",
         "timeline": "timeline.png"}
NODE_LOGS = "node-logs"   # a drill that left the lab unhealthy keeps each db node's log here

# Figure names as a DBA reads them, in the order the tables show them.
LABELS = {
    "write_downtime_s": "write downtime (s): from the last write acknowledged before the fault to the first "
                        "acknowledged after it (the longest gap between acks ending after the fault)",
    "recovery_bound_s": "bound implied by the profile (s)",
    "lost_writes": "acknowledged writes lost",
    "duplicate_writes": "duplicate writes",
    "non_leader_acks": "writes acknowledged by a non-leader",
    "keyless_acks": "of which while no node held the leader key (failsafe_mode's design when on)",
    "wrong_acks": "of which a problem (all of them, unless failsafe_mode made the keyless ones its design)",
    "unjudged_acks": "acknowledged writes not judged (leader key unreadable around them)",
    "split_brain_intervals": "split-brain intervals (two primaries)",
    "split_brain_s": "split-brain time (s)",
    "haproxy_stale_primary_s": "HAProxy had a demoted node still UP behind 5432 (s)",
    "leader_key_gone_s": "leader key gone (s after fault)",
    "new_leader_s": "new leader holds the key (s after fault)",
    "haproxy_switched_s": "HAProxy 5432 on the new leader (s after fault)",
    "first_write_s": "first acknowledged write after the outage (s after fault)",
    "host_cpu_busy_pct": "host CPUs busy from the fault to recovery (%)",
    "timeline_before": "timeline before",
    "timeline_after": "timeline after",
    "attempts": "write attempts",
    "acknowledged": "acknowledged",
    "failed": "failed",
    "unacknowledged_commits": "failed for the client but committed",
    "sync_wait_cancelled": "acknowledged after a cancelled synchronous-replication wait",
}


def refuse_occupied(path: Path) -> Path:
    """Refuse an output folder that already holds files, so no report is overwritten."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise LabError(f"{path} already exists and is not an empty folder; choose another --out.")
    return path


def prepare_dir(path: Path) -> Path:
    """The output folder, created (refused when occupied)."""
    refuse_occupied(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(f"cannot create {path}: {exc.strerror}.") from None
    return path


def as_json(result: DrillResult) -> dict[str, Any]:
    f = result.findings
    assert f is not None
    return {
        "scenario": result.scenario.name, "summary": result.scenario.summary, "project": result.project,
        "run": result.run, "started": result.started, "profile": result.profile.as_dict(),
        "fault": {"target": result.fault.target, "role_before": result.fault.role_before, "done": result.fault.done,
                  "expected": result.fault.expected, "also": result.fault.extra_targets,
                  "at_s": round(result.fault_s, 3)},
        "old_leader": result.old_leader,
        "bound": {"seconds": result.bound_s, "derivation": result.scenario.bound_text, "within": result.within_bound,
                  "note": result.bound_note},
        "recovered": result.recovered, "recovery_note": result.recovery_note,
        "healed": result.healed, "healthy_after": result.healthy_after, "health_note": result.health_note,
        "events": [asdict(e) for e in result.events],
        "figures": result.figures(),
        "problems": result.problems(),
        "findings": f.as_dict(),
        "members_before": result.members_before, "members_after": result.members_after,
        "writer": asdict(result.writer_settings),
        "settings": result.settings,
        "workload": result.workload,
        "files": FILES,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def spread_cells(values: list[Any]) -> list[str]:
    """Figures shown side by side (min / median / max) in one format: no decimals when all are whole
    numbers, two otherwise. Going by type would print 0 / 0.00 / 0, as the median of an even count of
    whole numbers is a float; a median like 1.5 turns the whole row to two decimals."""
    whole = all(float(v).is_integer() for v in values if v is not None)
    return ["—" if v is None else f"{v:.0f}" if whole else f"{v:.2f}" for v in values]


def _settings_text(s: dict[str, Any]) -> str:
    if not s:
        return "not recorded"
    sync = f", sync count {s['sync_count']}" if s.get("replication") != "async" else ""
    return (f"replication {s['replication']}{sync}, failsafe {'on' if s['failsafe'] else 'off'}, "
            f"maximum_lag_on_failover {s['max_lag']} bytes, use_pg_rewind {'on' if s['rewind'] else 'off'}")


def _workload_text(w: dict[str, Any]) -> str:
    return (f"a bulk writer adding {w['rows_per_s']:g} rows/s of {w['row_bytes']} bytes "
            f"({w['rows_acked']} rows, {w['bytes_acked']} bytes acknowledged)")


def markdown(result: DrillResult) -> str:
    f = result.findings
    assert f is not None
    p = result.profile
    figs = result.figures()
    problems = result.problems()
    verdict = "no problem found" if not problems else f"{len(problems)} problem(s)"
    bound = result.bound_s
    lines = [
        f"# Drill `{result.scenario.name}` — {verdict}",
        "",
        f"{result.scenario.summary}. Lab `{result.project}`, {p.name} profile (ttl {p.ttl}s, loop_wait {p.loop_wait}s, "
        f"retry_timeout {p.retry_timeout}s, HAProxy inter "
        f"{p.check_inter_ms}ms fall {p.check_fall} rise {p.check_rise}); "
        f"started {result.started}, run id `{result.run}`.",
        "",
        f"- **Settings**: {_settings_text(result.settings)}.",
        f"- **Workload**: one insert every {result.writer_settings.interval_s * 1000:.0f} ms through 5432"
        + (f"; {_workload_text(result.workload)}" if result.workload.get("enabled") else "") + ".",
        f"- **Fault** at {result.fault_s:.2f}s: {result.fault.done}.",
        f"- **Expected**: {result.fault.expected}",
        f"- **Recovery**: {result.recovery_note}. **Healed**: {', '.join(result.healed) or 'nothing to heal'}. "
        f"**Healthy after**: {'yes' if result.healthy_after else 'NO — ' + result.health_note}"
        + (f" (each db node's log since the drill began: `{NODE_LOGS}/`)." if result.node_logs else "."),
        "",
        "## Figures",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for key, label in LABELS.items():
        lines.append(f"| {label} | {_fmt(figs.get(key))} |")
    if bound is not None and f.unresumed is not None:
        lines += ["", f"Writes had not resumed by the end of the drill (at least {f.unresumed.seconds:.2f}s without an "
                      f"acknowledgement): **not within** the bound of {bound:.1f}s ({result.scenario.bound_text})."]
    elif bound is not None and f.downtime is not None:
        verdict = result.bound_note or f"**{'within' if result.within_bound else 'OVER'}** the bound"
        lines += ["", f"Write downtime {f.downtime.seconds:.2f}s against a bound of {bound:.1f}s "
                      f"({result.scenario.bound_text}): {verdict}."]
    lines += ["", "## Problems", ""]
    keyless = (f"{len(f.non_leader_acks)} write(s) taken while no node held the leader key (failsafe_mode on), "
               f"none while another node held it" if f.non_leader_acks else "no write acknowledged by a non-leader")
    lines += [f"- {x}" for x in problems] or [f"None: every acknowledged write is in the table, no duplicate, "
                                                   f"{keyless}, never two primaries."]
    if f.haproxy_lag:
        spans = ", ".join(f"{'+'.join(o.nodes)} {o.start_s:.2f}-{o.end_s:.2f}s" for o in f.haproxy_lag)
        lines += ["", "HAProxy kept a node that no longer answered as "
                      f"primary UP behind 5432 next to the new one ({spans}): "
                      f"its checks need {p.check_fall} failures to mark a "
                      f"server down but {p.check_rise} passes to mark one up, "
                      f"so new sessions may still reach the old node and fail. Routing lag, not a second primary."]
    ph = f.phases
    lines += ["", "## Phases (seconds after the fault)", "", "| phase | at | detail |", "|---|---|---|",
              f"| fault | 0.00 | {result.fault.target} ({result.fault.role_before}) |",
              f"| leader key gone | {_fmt(ph.leader_key_gone)} | "
              + (f"{ph.old_leader} no longer holds it |" if ph.leader_key_gone is not None
                 else f"{ph.old_leader} held it throughout (or etcd could not be read) |"),
              f"| new leader | {_fmt(ph.new_leader)} | {ph.new_leader_name or 'no other node took the key'} |",
              f"| HAProxy switched | {_fmt(ph.haproxy_switched)} | "
              + (f"5432 routes only to {ph.new_leader_name} |" if ph.haproxy_switched is not None else "— |"),
              (f"| first write | {_fmt(ph.first_write)} | first acknowledgement after the longest gap since the fault, "
               f"by {ph.first_write_server} |" if ph.first_write is not None else
               "| first write | — | writes never stopped for longer than their usual rhythm (or never resumed) |"),
              "", f"Timeline {_fmt(f.timeline_before)} → {_fmt(f.timeline_after)}.", ""]
    d = f.downtime
    if d is not None and d.open:
        lines.append("The longest gap since the fault starts at write "
                     f"#{d.last_id} ({d.start_s:.2f}s) and was still open "
                     f"at the last attempt, #{d.first_id} ({d.end_s:.2f}s).")
    elif d is not None:
        lines.append(f"The longest gap since the fault runs from write #{d.last_id} ({d.start_s:.2f}s) "
                     f"to write #{d.first_id} ({d.end_s:.2f}s).")
    lines += ["", "## Writes", "",
              f"{f.attempts} attempts, {f.acked} acknowledged, {f.failed} failed; acknowledged by "
              + ", ".join(f"{k or '?'} ({v})" for k, v in sorted(f.servers.items())) + "."]
    if f.unacknowledged_commits:
        lines.append(f"{len(f.unacknowledged_commits)} attempt(s) failed for the client yet committed "
                     f"(ids {', '.join(map(str, f.unacknowledged_commits[:10]))}): "
                     "an application that retries them writes twice.")
    if f.sync_cancelled:
        lines.append(f"{len(f.sync_cancelled)} write(s) came back as "
                     "success with PostgreSQL's WARNING that the wait for "
                     f"synchronous replication was cancelled: committed locally, maybe not on the standby "
                     f"(ids {', '.join(map(str, f.sync_cancelled[:10]))}).")
    lines += ["", "## Events (drill time, s)", ""] + [f"- {e.t_s:.2f} {e.label}" for e in result.events]
    lines += ["", "## Files", "",
              "- `ledger.csv`: one row per write attempt (id, start_s, "
              "end_s, ok, server, error, notice, latency_ms, start_epoch)",
              "- `samples.csv`: one row per reading (t_s, source "
              "patroni/etcd/haproxy, node, value, state, timeline, error, epoch)",
              "- `report.json`: everything above for scripts; `timeline.png`: latency, errors and roles over time", ""]
    return "\n".join(lines)


def write(result: DrillResult, folder: Path) -> dict[str, Path]:
    from pgha_lab.drill import plot
    files = {k: folder / v for k, v in FILES.items()}
    ledger.write_csv(result.attempts, files["ledger"], result.clock)
    sampler.write_csv(result.samples, files["samples"], result.clock)
    files["json"].write_text(json.dumps(as_json(result), indent=2) + "\n")
    files["markdown"].write_text(markdown(result))
    plot.timeline(result, files["timeline"])
    if result.node_logs:
        (folder / NODE_LOGS).mkdir(exist_ok=True)
        for name, text in result.node_logs.items():
            (folder / NODE_LOGS / f"{name}.log").write_text(text + "\n")
    return files


def write_summary(scenario: str, results: list[DrillResult], folder: Path) -> dict[str, Any]:
    """min / median / max of every figure over the runs of a --repeat."""
    runs = [r.figures() for r in results]
    summary = summarize(runs)
    doc: dict[str, Any] = {"scenario": scenario, "runs": len(results), "profile": results[0].profile.name,
           "summary": summary, "per_run": runs,
           "problems": {r.run: r.problems() for r in results if r.problems()}}
    (folder / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"# Drill `{scenario}` × {len(results)} ({results[0].profile.name} profile)", "",
             "| figure | min | median | max |", "|---|---|---|---|"]
    for key, label in LABELS.items():
        s = summary.get(key)
        if s:
            lines.append("| " + " | ".join([label, *spread_cells([s["min"], s["median"], s["max"]])]) + " |")
    lines += ["", "Runs: " + ", ".join(f"[{r.run}](run-{i + 1:02d}/report.md)" for i, r in enumerate(results)), ""]
    if doc["problems"]:
        lines += ["## Problems", ""] + [f"- {run}: {p}" for run, ps in doc["problems"].items() for p in ps]
    (folder / "summary.md").write_text("\n".join(lines) + "\n")
    return doc


# -- the campaign's report: its checker verdict and fault timeline beside the drill's readings --------
def write_campaign(result: CampaignResult, folder: Path) -> dict[str, Path]:
    from pgha_lab.drill import plot
    paths = {"json": folder / "campaign.json", "report": folder / "report.md", "finals": folder / "finals.json",
             "png": folder / "timeline.png", "samples": folder / "samples.csv"}
    paths["json"].write_text(json.dumps(result.as_dict(), indent=1) + "\n")
    write_finals(paths["finals"], result.finals)
    sampler.write_csv(result.samples, paths["samples"], result.clock)
    paths["report"].write_text(campaign_markdown(result))
    history = folder / "history.jsonl"
    plot.campaign_timeline(result, load_history(history).operations if history.exists() else (), paths["png"])
    return paths


def campaign_markdown(result: CampaignResult) -> str:
    v = result.verdict
    lines = [f"# Campaign {result.run}", "",
             f"Seed {result.seed}, {result.minutes:g} minutes, profile "
             f"{result.profile}, faults: {', '.join(result.faults)}.",
             f"{result.operations} operations ({result.counts.get(OK, 0)} ok, {result.counts.get(FAIL, 0)} failed, "
             f"{result.counts.get(UNKNOWN, 0)} unknown); lab healthy "
             f"after healing: {'yes' if result.healthy_after else 'NO'}.",
             "", "## Checker verdict", "", "```", v.table() if v else "not checked", "```", "",
             "## Faults", "", "| at (s) | fault | target | healed (s) | expected | outcome |",
             "|---|---|---|---|---|---|"]
    for r in result.records:
        if r.skipped:
            lines.append(f"| {r.step.at_s:.1f} | {r.step.fault} | - | - | skipped: {r.skipped} | - |")
            continue
        got = ("happened" + (f" after {r.happened_s:.1f}s" if r.happened_s is not None else "") if r.happened
               else "NOT seen" if r.happened is False else "-")
        healed = f"{r.healed_s:.1f}" if r.healed_s is not None else "-"
        lines.append(f"| {r.injected_s:.1f} | {r.step.fault} | {r.target} | {healed} | {r.expected or r.done} | "
                     f"{got}: {r.outcome} |")
    lines += ["", "## Problems", ""] + ([f"- {p}" for p in result.problems()] or ["none"])
    lines += ["", "## Surprises", ""] + ([f"- {s}" for s in result.surprises()] or ["none"])
    lines += ["", "![timeline](timeline.png)", ""]
    return "\n".join(lines)
