"""`pgha-lab lesson`: list, show, start, check, hint, solve and reset the lab's lessons."""
from __future__ import annotations

import argparse
import json
import sys
import textwrap

from pgha_lab.commands import summary
from pgha_lab.commands._common import lab_context
from pgha_lab.errors import EXIT_NOT_AS_EXPECTED
from pgha_lab.lessons import catalogue, course
from pgha_lab.lessons.model import CheckReport, Lesson
from pgha_lab.term.progress import Progress

WIDTH = 100


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lesson", help=summary("lesson"),
                       description="Lessons that follow the course project: each starts the lab in a known state, "
                                   "says what to do, checks the live lab and keeps your progress per lab.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    def verb(name: str, text: str, lesson: str | None = None, json_flag: bool = True) -> argparse.ArgumentParser:
        v = verbs.add_parser(name, help=text, description=text)
        if lesson == "required":
            v.add_argument("id", help="lesson id (see `pgha-lab lesson list`)")
        elif lesson == "optional":
            v.add_argument("id", nargs="?", help="lesson id (default: the lesson started)")
        if json_flag:
            v.add_argument("--json", action="store_true", help="machine-readable output")
        return v

    verb("list", "every lesson, with your progress on this lab").set_defaults(func=cmd_list)
    verb("show", "a lesson's goal, background and tasks", "required").set_defaults(func=cmd_show)
    verb("start", "bring the lab to the lesson's starting state and begin it", "required").set_defaults(func=cmd_start)
    verb("check", "check the live lab: each task passed or not, and why", "optional").set_defaults(func=cmd_check)
    verb("hint", "reveal the next hint", "optional").set_defaults(func=cmd_hint)
    s = verb("solve", "show the reference solution (--apply performs it, for a demonstration)", "required")
    s.add_argument("--apply", action="store_true", help="perform the solution on the lab, then check it")
    s.set_defaults(func=cmd_solve)
    verb("reset", "return the lab to the healthy baseline (no faults, default settings, first db node leading)"
         ).set_defaults(func=cmd_reset)


def _print_json(doc) -> None:
    print(json.dumps(doc, indent=2))


def _para(text: str, indent: str = "  ") -> str:
    return textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=indent)


def cmd_list(args: argparse.Namespace) -> int:
    prog = course.status(lab_context(args))
    current = prog.current.lesson if prog.current else None
    rows = []
    for lesson in catalogue.LESSONS:
        rows.append({"id": lesson.id, "slug": lesson.slug, "title": lesson.title, "minutes": lesson.minutes,
                     "started": lesson.id == current, "passed_at": prog.passed.get(lesson.id)})
    if args.json:
        _print_json(rows)
        return 0
    print(f"{'ID':>3}  {'LESSON':<44} {'MIN':>4}  PROGRESS")
    for r in rows:
        state = f"passed {r['passed_at']}" if r["passed_at"] else ""
        if r["started"]:
            state = ("started; " + state) if state else "started"
        print(f"{r['id']:>3}  {r['title']:<44} {r['minutes']:>4}  {state}")
    print(f"\n{len(prog.passed)} of {len(rows)} passed. `pgha-lab lesson show ID` tells what a lesson is about.")
    return 0


def render_lesson(lesson: Lesson, started: bool = False) -> str:
    """The lesson as `show` prints it; `start` prints it too, with a footer for a lesson under way."""
    lines = [f"Lesson {lesson.id}: {lesson.title}", "", "Goal", _para(lesson.goal), "", "Background",
             _para(lesson.background), "", "Tasks"]
    for n, task in enumerate(lesson.tasks, 1):
        lines.append(textwrap.fill(f"{n}. [{task.key}] {task.text}", WIDTH, initial_indent="  ",
                                   subsequent_indent="     "))
    begin = "the lab is at its starting state" if started else f"start with `pgha-lab lesson start {lesson.id}`"
    lines += ["", f"{len(lesson.hints)} hints (`pgha-lab lesson hint`); {begin}, check with `pgha-lab lesson check`."]
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    lesson = catalogue.get(args.id)
    if args.json:
        _print_json(lesson.as_dict())
    else:
        print(render_lesson(lesson))
    return 0


def _progress() -> Progress:
    return Progress(stream=sys.stderr)


def cmd_start(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    lesson = catalogue.get(args.id)   # an unknown id and a lab that is down are refused before anything
    course.require_running(ctx)
    progress = _progress()
    with progress.step(f"Bringing the lab to lesson {lesson.id}'s starting state"):
        started = course.start(ctx, args.id, note=progress.info)
    if args.json:
        _print_json({"lesson": lesson.id, "reset": started.reset.as_dict()})
    else:
        print(render_lesson(lesson, started=True))
    return 0


def render_report(report: CheckReport) -> str:
    lines = []
    for r in report.results:
        lines.append(f"  {'PASS' if r.passed else 'FAIL'}  {r.key:<14} {r.reason}")
    verdict = "every task passes" if report.passed else \
        f"{sum(not r.passed for r in report.results)} of {len(report.results)} tasks not done yet"
    return f"Lesson {report.lesson}: {verdict}\n" + "\n".join(lines)


def _report(args: argparse.Namespace, report: CheckReport) -> int:
    if args.json:
        _print_json(report.as_dict())
    else:
        print(render_report(report))
    return 0 if report.passed else EXIT_NOT_AS_EXPECTED


def cmd_check(args: argparse.Namespace) -> int:
    return _report(args, course.check(lab_context(args), args.id))


def cmd_hint(args: argparse.Namespace) -> int:
    h = course.hint(lab_context(args), args.id)
    of = len(h.lesson.hints)
    if args.json:
        _print_json({"lesson": h.lesson.id, "hint": h.number, "of": of, "text": h.text, "last": h.last,
                     "none_left": h.none_left})
    elif h.none_left:
        print(_para(h.text, indent=""))
    else:
        print(f"Hint {h.number} of {of}" + (" (the last)" if h.last else "") + f":\n{_para(h.text)}")
    return 0


def cmd_solve(args: argparse.Namespace) -> int:
    lesson = catalogue.get(args.id)
    if not args.apply:
        if args.json:
            _print_json({"lesson": lesson.id, "solution": lesson.solution})
        else:
            print(f"Reference solution of lesson {lesson.id}:\n" + textwrap.indent(lesson.solution, "  "))
        return 0
    ctx = lab_context(args)
    course.current(ctx, args.id)      # refusals come before the progress line
    course.require_running(ctx)
    progress = _progress()
    with progress.step(f"Performing lesson {lesson.id}'s reference solution"):
        report = course.solve(ctx, args.id)
    return _report(args, report)


def cmd_reset(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    course.require_running(ctx)
    progress = _progress()
    with progress.step("Returning the lab to its healthy baseline"):
        done = course.reset_lab(ctx, note=progress.info)
    if args.json:
        _print_json(done.as_dict())
    else:
        print(f"Baseline restored in {done.seconds:.1f}s" + (" (lab re-created)" if done.recreated else "")
              + (", nothing needed changing" if not done.steps else "") + f". Checked: {done.verdict}.")
    return 0
