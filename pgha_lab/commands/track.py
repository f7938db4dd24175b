"""`pgha-lab track`: the hand-build track on a bare lab: list, show, check, hint and solve."""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any

from pgha_lab.commands import summary
from pgha_lab.commands._common import lab_context, lab_paths
from pgha_lab.errors import EXIT_NOT_AS_EXPECTED
from pgha_lab.term.progress import Progress
from pgha_lab.track import catalogue, course, solve
from pgha_lab.track.model import Step, StepVerdict

WIDTH = 100


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("track", help=summary("track"),
                       description="The course's build in seven steps on a bare lab (`up --bare`): names, "
                                   "certificates, etcd, PostgreSQL, Patroni, HAProxy, the course's tests. `check` "
                                   "grades what you built, on the nodes and over the network, like a human grader.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    def verb(name: str, text: str) -> argparse.ArgumentParser:
        v = verbs.add_parser(name, help=text, description=text)
        v.add_argument("--json", action="store_true", help="machine-readable output")
        return v

    verb("list", "the steps, with your progress on this lab").set_defaults(func=cmd_list)
    s = verb("show", "a step's goal, background and what to do on which node")
    s.add_argument("step", help="step number or name (see `pgha-lab track list`)")
    s.set_defaults(func=cmd_show)
    c = verb("check",
             "grade the lab: each step PASS or FAIL, and for the first failing one what is wrong and where to look")
    c.add_argument("steps", nargs="*", metavar="STEP", help="only these steps (default: all, in order)")
    c.set_defaults(func=cmd_check)
    h = verb("hint", "the next hint (default: for the first step not passed yet)")
    h.add_argument("step", nargs="?", help="step number or name")
    h.set_defaults(func=cmd_hint)
    so = verb("solve", "a step's reference solution: the exported playbook's tag (steps 1-6), the course's "
                       "commands (step 7); --apply runs it on this lab, then checks the step")
    so.add_argument("step", help="step number or name")
    so.add_argument("--apply", action="store_true",
                    help="run it on the bare nodes (every step before it must pass), then check the step")
    so.set_defaults(func=cmd_solve)


def _para(text: str, indent: str = "  ") -> str:
    return textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=indent)


def render_step(step: Step) -> str:
    lines = [f"Step {step.id}: {step.title}", "", "Goal", _para(step.goal), "", "Background", _para(step.background),
             "", "What to do"]
    for n, task in enumerate(step.tasks, 1):
        lines.append(textwrap.fill(f"{n}. On {task.nodes}: {task.text}", WIDTH, initial_indent="  ",
                                   subsequent_indent="     "))
    lines += ["", f"{len(step.hints)} hints (`pgha-lab track hint {step.id}`); "
                  f"`pgha-lab track check {step.id}` grades it."]
    return "\n".join(lines)


def render_report(report: course.TrackReport) -> str:
    lines = [f"Track on lab {report.project!r}:"]
    for v in report.verdicts:
        title = catalogue.get(v.step).title.split(":")[0]
        lines.append(f"  {'PASS' if v.passed else 'FAIL'}  {v.step} {title:<13} {_clip(v.summary)}")
    first = report.first_failing
    if first is None:
        lines.append("Every step checked passes.")
        return "\n".join(lines)
    step = catalogue.get(first.step)
    count = len(first.findings)
    lines += ["", f"Step {step.id} ({step.title}): {count} thing{'s' if count != 1 else ''} to fix"
                  + (", the first:" if count > 1 else ":")]
    finding = first.findings[0]
    lines.append(textwrap.fill(f"what:  {finding.problem}", WIDTH, initial_indent="  ", subsequent_indent="         "))
    lines.append(textwrap.fill(f"where: {finding.where}", WIDTH, initial_indent="  ", subsequent_indent="         "))
    if finding.diagnosis:
        lines.append(f"  known mistake: {finding.diagnosis}")
    for more in first.findings[1:4]:
        lines.append(textwrap.fill(f"also: {more.problem}", WIDTH, initial_indent="  ", subsequent_indent="        "))
    if count > 4:
        lines.append(f"  ... and {count - 4} more (`--json` lists them all)")
    lines.append(f"`pgha-lab track hint {step.id}` reveals a hint; `pgha-lab track show {step.id}` the step again.")
    return "\n".join(lines)


def _clip(text: str, width: int = 78) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def cmd_list(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    prog = course.load(ctx)
    rows: list[dict[str, Any]] = [
        {"id": s.id, "slug": s.slug, "title": s.title, "minutes": s.minutes, "passed_at": prog.passed.get(s.id),
         "hints_shown": prog.hints_shown.get(s.id, 0)} for s in catalogue.STEPS]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'STEP':>4}  {'':<60} {'MIN':>4}  PROGRESS")
    for r in rows:
        print(f"{r['id']:>4}  {r['title']:<60} {r['minutes']:>4}  "
              f"{'passed ' + r['passed_at'] if r['passed_at'] else ''}")
    print(f"\n{sum(1 for r in rows if r['passed_at'])} of {len(rows)} passed. `pgha-lab track show 1` starts.")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    step = catalogue.get(args.step)
    print(json.dumps(step.as_dict(), indent=2) if args.json else render_step(step))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    steps = course.steps_of(args.steps)    # an unknown step and a lab that is not bare are refused first
    course.require_bare(ctx)

    def progress_line(v: StepVerdict) -> None:
        if not args.json:
            print(f"  checked step {v.step} in {v.seconds:.1f}s", file=sys.stderr)
    report = course.check(ctx, [s.id for s in steps], on_step=progress_line)
    print(json.dumps(report.as_dict(), indent=2) if args.json else render_report(report))
    return 0 if report.passed else EXIT_NOT_AS_EXPECTED


def cmd_hint(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    step, number, text = course.hint(ctx, args.step)
    if args.json:
        print(json.dumps({"step": step.id, "hint": number, "of": len(step.hints), "text": text}))
    else:
        print(f"Step {step.id}, hint {number} of {len(step.hints)}:\n{_para(text)}")
    return 0


def render_plan(plan: solve.Plan) -> str:
    step = plan.step
    how = (f"the exported playbook's `{plan.tag}` tag" if plan.tag else
           "the course's commands (the playbook's `verify` tag only looks at the cluster; it moves no leader)")
    lines = [f"Reference solution of step {step.id} ({step.title}): {how}."]
    for a in plan.actions:
        where = f"on {a.where}:" if a.where else "then:"
        lines.append(f"  {where:<14} {a.line}" + (f"   # {a.note}" if a.note else ""))
    if plan.plays:
        lines += ["", f"What `--tags {plan.tag}` runs (site.yml's plays and tasks):"]
        for name, tasks in plan.plays:
            lines.append(f"  {name}")
            lines += [f"    - {t}" for t in tasks]
    lines += ["", (f"`pgha-lab track solve {step.id} --apply` runs it on this lab's bare nodes (every step before it "
                   f"must pass), then checks step {step.id}.")]
    return "\n".join(lines)


def cmd_solve(args: argparse.Namespace) -> int:
    if not args.apply:
        paths = lab_paths(args)
        plan = solve.plan(args.step, paths.project, str(paths.state / "ansible"))
        print(json.dumps(plan.as_dict(), indent=2) if args.json else render_plan(plan))
        return 0
    ctx = lab_context(args)
    step = solve.ready(ctx, args.step)     # refusals (unknown step, not bare, an earlier step failing) first
    progress = Progress(stream=sys.stderr, quiet=args.json)
    with progress.step(f"Applying step {step.id}'s reference solution"):
        applied = solve.apply_ready(ctx, step, note=progress.detail)
    if args.json:
        print(json.dumps(applied.as_dict(), indent=2))
    else:
        print("\n".join(f"  done: {line}" for line in applied.done))
        print(render_report(course.TrackReport(ctx.project, [applied.verdict])))
    return 0 if applied.verdict.passed else EXIT_NOT_AS_EXPECTED
