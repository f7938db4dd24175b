"""`pgha-lab drill`: a measured failover experiment and its report."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from pgha_lab import profiles
from pgha_lab.commands import summary
from pgha_lab.commands._common import lab_context
from pgha_lab.drill import campaign, launch, report
from pgha_lab.drill.campaign import CATALOGUE
from pgha_lab.drill.clock import stamp
from pgha_lab.drill.ledger import WriterSettings
from pgha_lab.drill.runner import DrillOptions, DrillResult
from pgha_lab.drill.scenarios import SCENARIOS
from pgha_lab.drill.scenarios import get as get_scenario
from pgha_lab.drill.workload import WorkloadSettings
from pgha_lab.errors import EXIT_NOT_AS_EXPECTED, LabError
from pgha_lab.term.progress import Progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "drill", help=summary("drill"),
        description="Scenarios: " + "; ".join(f"{s.name} ({s.summary})" for s in SCENARIOS.values()) + ". "
                    "Exits 0 when the drill found no problem and left the "
                    f"lab healthy, {EXIT_NOT_AS_EXPECTED} when it found one.")
    p.add_argument("scenario", metavar="SCENARIO", help="one of: " + ", ".join(SCENARIOS)
                   + "; or `matrix` to run --scenarios across --replication/--failsafe/--profile settings")
    m = p.add_argument_group("matrix",
                             "`pgha-lab drill matrix`: the lab is re-configured between cells and put back after")
    m.add_argument("--scenarios", metavar="A,B", help="matrix: the scenarios (rows)")
    m.add_argument("--replication", metavar="MODES", help="matrix: replication modes, e.g. sync,async,strict,quorum")
    m.add_argument("--failsafe", metavar="off,on", help="matrix: failsafe_mode values")
    m.add_argument("--sync-count", type=int, default=None, metavar="N",
                   help="matrix: synchronous_node_count for every cell")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run the drill N times; the report adds min/median/max")
    p.add_argument("--profile", metavar="seed|fast|instant",
                   help="the timing profile the measurement assumes; refused when the lab runs another one "
                        "(matrix: the profiles to run, comma-separated)")
    add_workload_args(p)
    p.add_argument("--out", metavar="DIR", help="report folder (default: labs/<project>/drills/<time>-<scenario>)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    c = p.add_argument_group("campaign", "`drill campaign`: randomized faults against several clients, judged by "
                                         "the history checker")
    c.add_argument("--minutes", type=float, default=10.0, help="campaign length (default 10)")
    c.add_argument("--seed", type=int, default=42, help="the schedule's seed: the same seed, the same schedule")
    c.add_argument("--faults", metavar="NAME[,NAME]",
                   help="faults to draw from (default: all): " + ", ".join(CATALOGUE))
    c.add_argument("--dry-run", action="store_true", help="print the schedule and change nothing")
    p.set_defaults(func=cmd_drill)


def add_workload_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--write-rate", type=float, default=None, metavar="N",
                   help="ledger writes a second through 5432 (default 20)")
    p.add_argument("--bulk-rate", type=float, default=0.0, metavar="ROWS",
                   help="background bulk rows a second, so a replica can lag when the fault hits (default 0: off)")
    p.add_argument("--row-size", type=int, default=8192, metavar="BYTES", help="bytes per bulk row (default 8192)")


def drill_options(args: argparse.Namespace) -> DrillOptions:
    """The drill's workload from the command line, refused in one sentence when out of range."""
    writer = WriterSettings()
    if args.write_rate is not None:
        if not 0.5 <= args.write_rate <= 200:
            raise LabError(f"--write-rate takes 0.5 to 200 writes a second, not {args.write_rate:g}.")
        writer = replace(writer, interval_s=1 / args.write_rate)
    bulk = WorkloadSettings(rows_per_s=args.bulk_rate, row_bytes=args.row_size).validate()
    return DrillOptions(writer=writer, workload=bulk)


def cmd_matrix(args: argparse.Namespace) -> int:
    from dataclasses import asdict as _asdict

    from pgha_lab import lifecycle
    from pgha_lab.drill import matrix
    opts = drill_options(args)
    ctx = lab_context(args)
    if not ctx.paths.topology_file.exists():
        raise LabError(f"there is no lab {ctx.paths.project!r} here; start one with `pgha-lab up`.")
    plan = matrix.plan(ctx, scenarios=args.scenarios, replication=args.replication, failsafe=args.failsafe,
                       profile=args.profile, repeat=args.repeat, sync_count=args.sync_count, options=opts)
    folder = report.prepare_dir(Path(args.out).resolve() if args.out else launch.drills_dir(ctx) / f"{stamp()}-matrix")
    progress = Progress(stream=sys.stderr)
    before_settings, before_profile = ctx.settings, ctx.profile.name

    def reconfigure(cell) -> None:
        s = cell.settings
        lifecycle.bring_up(ctx, profile=cell.profile, pg_install="auto", progress=progress,
                           settings={k: v for k, v in _asdict(s).items()})

    try:
        results = matrix.run(ctx, plan, folder, progress, reconfigure)
    finally:   # the lab goes back to what it ran before the matrix, whatever happened
        from pgha_lab.chaos.actions import Chaos
        Chaos(ctx).heal_all()
        lifecycle.bring_up(ctx, profile=before_profile, pg_install="auto", progress=progress,
                           settings=_asdict(before_settings))
    files = matrix.write(results, plan, folder)
    if args.json:
        print(files["json"].read_text())
    else:
        print(files["markdown"].read_text())
        print(f"Report: {files['markdown']} (heat map {files['heatmap']})")
    return 0 if all(r.held for r in results) else EXIT_NOT_AS_EXPECTED


def cmd_drill(args: argparse.Namespace) -> int:
    if args.scenario == "matrix":
        return cmd_matrix(args)
    if args.scenario == "campaign":
        return cmd_campaign(args)
    # Every refusal comes before anything is touched.
    scenario = get_scenario(args.scenario)
    opts = drill_options(args)
    launch.refuse_options(scenario, opts, args.repeat)
    ctx = lab_context(args)
    paths = ctx.paths
    if not paths.topology_file.exists():
        raise LabError(f"there is no lab {paths.project!r} here; start one with `pgha-lab up`.")
    running = ctx.saved_profile or profiles.DEFAULT
    if args.profile is not None:
        profiles.get(args.profile)   # an unknown name is refused with the valid ones
        if args.profile != running:
            # Re-running `up` from here would restart Patroni and HAProxy under the user's feet; a drill
            # only measures, so it refuses rather than silently comparing against the wrong timings.
            raise LabError(f"lab {paths.project!r} runs the {running} profile, not {args.profile}; run "
                           f"`pgha-lab up --profile {args.profile}` first, or drop --profile.")
    profile = profiles.get(running)
    drill = launch.prepare(ctx, scenario, opts, repeat=args.repeat, out=Path(args.out).resolve() if args.out else None)
    folder = drill.folder
    results, summary = drill.run(Progress(stream=sys.stderr))

    if args.json:
        doc = {"scenario": scenario.name, "folder": str(folder), "profile": profile.name,
               "settings": results[0].settings if results else {},
               "runs": [{"run": r.run, "figures": r.figures(), "problems": r.problems(),
                         "healthy_after": r.healthy_after} for r in results]}
        if summary:
            doc["summary"] = summary["summary"]
        print(json.dumps(doc, indent=2))
    else:
        print(_human(results, folder, summary))
    # The same list the report shows, so "no problem found" and exit 0 always go together.
    return EXIT_NOT_AS_EXPECTED if any(r.problems() for r in results) else 0


def _human(results: list[DrillResult], folder: Path, summary: dict | None) -> str:
    lines = []
    for r in results:
        assert r.findings is not None
        figs = r.figures()
        # "not within" rather than "over": writes that never resumed fail the bound at any length.
        verdict = r.bound_note or ("" if r.within_bound is None else "within" if r.within_bound else "NOT within")
        bound = f" (bound {r.bound_s:.1f}s: {verdict})" if verdict else ""
        down = figs["write_downtime_s"]
        lines.append(f"{r.run}: write downtime {down if down is not None else '—'}s{bound}, "
                     f"{figs['lost_writes']} lost, {figs['duplicate_writes']} duplicate, "
                     f"{figs['non_leader_acks']} acked by a non-leader, "
                     f"{figs['split_brain_intervals']} split-brain interval(s); "
                     f"timeline {figs['timeline_before']} -> {figs['timeline_after']}")
        lines += [f"  problem: {p}" for p in r.problems()]
    if summary:
        lines.append("")
        lines.append(f"{'figure':34} {'min':>8} {'median':>8} {'max':>8}")
        for key in ("write_downtime_s", "lost_writes", "non_leader_acks", "split_brain_intervals", "new_leader_s",
                    "haproxy_switched_s", "first_write_s"):
            s = summary["summary"].get(key, {})
            cells = report.spread_cells([s.get(k) for k in ("min", "median", "max")])
            lines.append(f"{key:34} {cells[0]:>8} {cells[1]:>8} {cells[2]:>8}")
    lines.append(f"Report: {folder / ('summary.md' if summary else 'report.md')}")
    return "\n".join(lines)


def cmd_campaign(args: argparse.Namespace) -> int:
    # Every refusal comes before anything is touched.
    minutes = campaign.check_minutes(args.minutes)
    if args.dry_run:
        faults = campaign.parse_faults(args.faults)
        steps = campaign.schedule(args.seed, minutes, faults)
        print(f"campaign seed {args.seed}, {minutes:g} minutes, {len(steps)} faults (dry run: nothing changed)")
        print(campaign.format_schedule(steps))
        return 0
    ctx = lab_context(args)
    paths = ctx.paths
    if not paths.topology_file.exists():
        raise LabError(f"there is no lab {paths.project!r} here; start one with `pgha-lab up`.")
    faults = campaign.parse_faults(args.faults, ctx.topology)
    running = ctx.saved_profile or profiles.DEFAULT
    if args.profile is not None:
        profiles.get(args.profile)
        if args.profile != running:
            raise LabError(f"lab {paths.project!r} runs the {running} profile, not {args.profile}; run "
                           f"`pgha-lab up --profile {args.profile}` first, or drop --profile.")
    run_stamp = stamp()
    folder = launch.report_folder(ctx, run_stamp, "campaign", "campaign",
                                  Path(args.out).resolve() if args.out else None)
    result = campaign.run_campaign(ctx, args.seed, minutes, faults, f"{run_stamp}-campaign-{args.seed}", folder,
                                   progress=Progress(stream=sys.stderr))
    files = report.write_campaign(result, folder)
    if args.json:
        print(json.dumps({**result.as_dict(), "folder": str(folder)}, indent=2))
    else:
        v = result.verdict
        print(f"campaign seed {result.seed}: {len([r for r in result.records if not r.skipped])} faults injected, "
              f"{result.operations} operations; checker: {v.summary if v else 'not run'}")
        for r in result.records:
            state = ("skipped: " + r.skipped) if r.skipped else (
                "expected outcome seen" if r.happened else "expected outcome NOT seen" if r.happened is False else "")
            print(f"  {r.step.at_s:6.1f}s {r.step.fault:17} {r.target:8} {state}")
        for p in result.problems():
            print(f"  problem: {p}")
        print(f"Report: {files['report']}")
    return EXIT_NOT_AS_EXPECTED if result.problems() else 0
