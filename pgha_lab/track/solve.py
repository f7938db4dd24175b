"""The track's reference solution (`track solve STEP [--apply]`). Steps 1-6 are the exported playbook's
tag of the same name (deploy.run), run on the bare nodes. Step 7 the playbook does not do (its
`verify` tag looks at the cluster and moves no leader): it is the course's commands, typed on the db
nodes as the step asks: a switchover with patronictl, then the leader's Patroni stopped (the failover)
and started again. Applying refuses a step whose earlier steps do not pass, and ends with the step's
own check."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pgha_lab import node_paths
from pgha_lab.context import LabContext
from pgha_lab.deploy import run
from pgha_lab.errors import LabError
from pgha_lab.topology import DEFAULT_PROJECT
from pgha_lab.track import catalogue, course
from pgha_lab.track.assignment import Assignment
from pgha_lab.track.model import Step, StepVerdict
from pgha_lab.wait import Verdict, wait_until

# A step's slug is the playbook's tag that builds it, but `verify` only looks at the cluster: step 7 is
# the course's commands instead.
BY_COMMANDS = ("verify",)
CTL = f"{node_paths.PATRONI_VENV}/bin/patronictl -c {node_paths.PATRONI_CONFIG}"
TYPED_CTL = f"sudo patronictl -c {node_paths.PATRONI_CONFIG}"   # how the learner types it (the venv's link on PATH)
# A REST API with a password (PATRONI_RESTAPI_PASSWORD in the unit's EnvironmentFile, as the playbook
# sets it) answers a switchover request without it "401, no auth header received": patronictl takes it
# from the same environment, so the unit's files are read into the shell first.
UNIT_ENV = ("for f in $(systemctl show patroni -p EnvironmentFiles --value | sed 's/ (ignore_errors=[a-z]*)//g'); "
            "do set -a; . \"$f\"; set +a; done; ")
ROLE_DEADLINE_S = 120    # a switchover, a failover, a member rejoining: Patroni's loop and a restart, loaded host
WRITES_DEADLINE_S = 60   # HAProxy's checks see the new leader within a few of their intervals
SYNC_ROLES = ("Sync Standby", "Quorum Standby")
WRITE_SIGNS = ("no-writes", "writes-elsewhere")   # step 7's findings while HAProxy has not seen the new leader


@dataclass(frozen=True)
class Action:
    where: str       # the node it is typed on, "the host", or "" for a wait
    line: str        # as the learner would type it (or what is waited for)
    note: str = ""


@dataclass(frozen=True)
class Plan:
    step: Step
    tag: str | None                                      # the playbook's tag (steps 1-6)
    actions: tuple[Action, ...]                          # what runs, in order
    plays: tuple[tuple[str, tuple[str, ...]], ...] = ()  # the tag's plays and their tasks, in site.yml's words

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step.id, "slug": self.step.slug, "tag": self.tag,
                "actions": [a.__dict__ for a in self.actions],
                "plays": [{"name": name, "tasks": list(tasks)} for name, tasks in self.plays],
                "apply": f"pgha-lab track solve {self.step.id} --apply"}


@dataclass
class Applied:
    plan: Plan
    verdict: StepVerdict
    seconds: float
    done: list[str] = field(default_factory=list)    # what was run, with the names the lab gave
    playbook: run.PlaybookResult | None = None

    def as_dict(self) -> dict[str, Any]:
        pb = self.playbook
        played = None if pb is None else {"ok": pb.ok, "changed": pb.changed, "seconds": round(pb.seconds, 1),
                                       "log": str(pb.log) if pb.log else None}
        return {"step": self.plan.step.id, "tag": self.plan.tag, "seconds": round(self.seconds, 1), "done": self.done,
                "playbook": played, "check": self.verdict.as_dict()}


def tag_of(step: Step) -> str | None:
    """The playbook's tag that is the step's solution, or None for a step solved by commands."""
    return None if step.slug in BY_COMMANDS else step.slug


def plan(ref: str | int, project: str = "NAME", ansible_dir: str = "labs/NAME/ansible") -> Plan:
    """What the reference solution of a step does (no lab needed to say it)."""
    step = catalogue.get(ref)
    tag = tag_of(step)
    if tag is not None:
        plays = tuple((name, tuple(tasks)) for name, tasks in run.tag_plays(tag))
        return Plan(step, tag, (
            Action("the host", "pgha-lab " + ("" if project == DEFAULT_PROJECT else f"--project {project} ")
                   + "export ansible", f"writes the lab's Ansible project to {ansible_dir}"),
            Action("the host", f"cd {ansible_dir} && ansible-playbook -i inventory/lab.yml site.yml --tags {tag}",
                   "over the docker connection, on every node the tag's plays name")), plays)
    return Plan(step, None, (
        Action("a db node", f"{TYPED_CTL} list", "who leads: LEADER; its synchronous standby: STANDBY"),
        Action("LEADER", f"{TYPED_CTL} switchover --leader LEADER --candidate STANDBY --force",
               "the switchover; with the REST API's password in patroni's EnvironmentFile, in a shell that read it "
               "first (sudo -s; set -a; . /etc/patroni/patroni.env)"),
        Action("", "STANDBY leads; LEADER streams again as its synchronous standby"),
        Action("STANDBY", "sudo systemctl stop patroni", "the failover: the leader goes, LEADER takes its key"),
        Action("", "LEADER leads"),
        Action("STANDBY", "sudo systemctl start patroni", "the old leader rejoins as a replica"),
        Action("", "STANDBY streams again"),
        Action("the host", "psql through haproxy:5432 with sslmode=verify-full",
               "until a write lands on the leader: the step's check")))


def ready(ctx: LabContext, ref: str | int) -> Step:
    """The step, once its solution may run: refused, with nothing run, for an unknown step, a lab that is
    not bare, and a step with an earlier one failing (named, with how to get past it)."""
    step = catalogue.get(ref)
    course.require_bare(ctx)
    failing = course.first_failing_before(ctx, step)
    if failing is not None:
        why = failing.findings[0].problem if failing.findings else "not graded"
        raise LabError(f"step {failing.step} does not pass yet ({why}), and step {step.id} builds on it: do step "
                       f"{failing.step} first (`pgha-lab track check {failing.step}` says what is wrong), or "
                       f"`pgha-lab track solve {failing.step} --apply`.")
    # The steps before it pass now: recorded, so step 7 counts what happens from here on as the tests.
    course.record_passed(ctx, range(1, step.id))
    return step


def apply(ctx: LabContext, ref: str | int, note: Callable[[str], None] = lambda _: None) -> Applied:
    """Run a step's reference solution on the bare lab, then its check (refusals: `ready`)."""
    return apply_ready(ctx, ready(ctx, ref), note)


def apply_ready(ctx: LabContext, step: Step, note: Callable[[str], None] = lambda _: None) -> Applied:
    """`apply` for a step `ready` has let through (the CLI asks first, before its progress line)."""
    the_plan = plan(step.id, ctx.project, str(ctx.paths.state / "ansible"))
    started = time.monotonic()
    applied = Applied(the_plan, StepVerdict(step.id, False), 0.0)
    if the_plan.tag is not None:
        applied.playbook = run.run_playbook(ctx, [the_plan.tag], echo=_task_notes(note))
        applied.done.append(f"ansible-playbook site.yml --tags {the_plan.tag}: {applied.playbook.changed} changed "
                            f"in {applied.playbook.seconds:.0f}s")
        applied.verdict = course.check(ctx, [step.id]).verdicts[0]
    else:
        applied.verdict = _the_courses_tests(ctx, applied.done, note)
    applied.seconds = time.monotonic() - started
    return applied


def _task_notes(note: Callable[[str], None]) -> Callable[[str], None]:
    def echo(line: str) -> None:
        if line.startswith("TASK ["):
            note(line[len("TASK ["):].rsplit("]", 1)[0])
    return echo


# -- step 7: the course's commands on the db nodes -----------------------------------------------
def _members(ctx: LabContext, node: str) -> list[dict] | None:
    """`patronictl list -f json` on a node, as the learner reads it; None when it does not answer."""
    proc = ctx.docker.exec(node, "bash", "-c", f"{CTL} list -f json", check=False, timeout=60)
    try:
        rows = json.loads(proc.stdout) if proc.returncode == 0 else None
    except ValueError:
        return None
    return rows if isinstance(rows, list) else None


def _leader(rows: list[dict]) -> str | None:
    lead = [r["Member"] for r in rows if r.get("Role") == "Leader" and r.get("State") == "running"]
    return lead[0] if len(lead) == 1 else None


def _settled(rows: list[dict], leader: str, sync: bool) -> bool:
    """`leader` leads, every other member streams, and (in synchronous mode) one is its sync standby."""
    others = [r for r in rows if r["Member"] != leader]
    return (_leader(rows) == leader and all(r.get("State") == "streaming" for r in others)
            and (not sync or any(r.get("Role") in SYNC_ROLES for r in others)))


def _wait(ctx: LabContext, node: str, want: Callable[[list[dict]], bool], what: str,
          note: Callable[[str], None], deadline_s: float = ROLE_DEADLINE_S, said: str = "") -> None:
    note(f"waiting: {what}")

    def asked() -> Verdict:
        rows = _members(ctx, node)
        return Verdict(rows is not None and want(rows), json.dumps(rows) if rows is not None else
                       f"patronictl on {node} does not answer")
    got = wait_until(asked, deadline_s, interval_s=1.0)
    if not got.ok:
        told = f" (patronictl said: {said[-300:]})" if said else ""
        raise LabError(f"{what} did not happen within {deadline_s:.0f}s{told}; patronictl list on {node} says: "
                       f"{got.reason}")


def _run(ctx: LabContext, node: str, script: str, typed: str, done: list[str], note: Callable[[str], None]) -> str:
    note(f"on {node}: {typed}")
    proc = ctx.docker.exec(node, "bash", "-c", script, check=False, timeout=180)
    said = " ".join((proc.stdout + proc.stderr).split())
    # patronictl exits 0 when Patroni refuses ("Switchover failed, details: 412, ..."): its words decide.
    if proc.returncode != 0 or "failed, details:" in said:
        raise LabError(f"`{typed}` failed on {node}: {said[-400:]}")
    done.append(f"on {node}: {typed}")
    return said


def _the_courses_tests(ctx: LabContext, done: list[str], note: Callable[[str], None]) -> StepVerdict:
    a = Assignment.of(ctx.topology)
    db = [n.name for n in a.db]
    rows = _members(ctx, db[0]) or []
    leader = _leader(rows)
    standby = next((r["Member"] for r in rows if r.get("Role") in SYNC_ROLES and r.get("State") == "streaming"),
                   next((r["Member"] for r in rows if r["Member"] != leader and r.get("State") == "streaming"), None))
    if leader is None or standby is None:
        raise LabError(f"patronictl list on {db[0]} shows no running leader with a streaming standby to test with: "
                       f"{json.dumps(rows)}")
    sync = any(r.get("Role") in SYNC_ROLES for r in rows)
    done.append(f"on {db[0]}: {TYPED_CTL} list: {leader} leads, {standby} is its standby")

    said = _run(ctx, leader, f"{UNIT_ENV}{CTL} switchover --leader {leader} --candidate {standby} --force",
                f"{TYPED_CTL} switchover --leader {leader} --candidate {standby} --force", done, note)
    _wait(ctx, standby, lambda r: _settled(r, standby, sync), f"{standby} leading with {leader} streaming", note,
          said=said)
    _run(ctx, standby, "systemctl stop patroni", "sudo systemctl stop patroni", done, note)
    _wait(ctx, leader, lambda r: _leader(r) == leader, f"{leader} taking over from {standby}", note)
    _run(ctx, standby, "systemctl start patroni", "sudo systemctl start patroni", done, note)
    _wait(ctx, leader, lambda r: _settled(r, leader, sync), f"{standby} streaming from {leader} again", note)

    # The last of the course's tests is a write through HAProxy: its checks take a few intervals to see
    # the new leader, so the step's check (which writes) runs again while only the write is missing.
    note("waiting: a write through HAProxy lands on the leader (the step's check)")
    last: list[StepVerdict] = []

    def graded() -> Verdict:
        last[:] = course.check(ctx, [7]).verdicts
        waiting = last[0].findings and all(f.diagnosis in WRITE_SIGNS for f in last[0].findings)
        return Verdict(not waiting, last[0].summary)
    wait_until(graded, WRITES_DEADLINE_S, interval_s=2.0)
    return last[0]
