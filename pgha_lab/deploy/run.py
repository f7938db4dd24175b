"""Running the exported playbook against a bare lab: `run_playbook(ctx, tags=[...])` writes the lab's
project again (labs/<project>/ansible) and runs ansible-playbook over the docker connection, one
step or all of them; the result holds Ansible's own recap per host. The hand-build track's
`solve STEP --apply` is this call with the step's tag."""
from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from pgha_lab.context import LabContext
from pgha_lab.deploy import export
from pgha_lab.errors import LabError

TAGS = ("hosts", "tls", "etcd", "postgres", "patroni", "haproxy", "verify")   # site.yml's steps, in order
RUN_TIMEOUT_S = 1800.0
_RECAP = re.compile(r"^(?P<host>\S+)\s*:\s*(?P<counts>(?:\w+=\d+\s*)+)$")
_FATAL = re.compile(r"^(?:fatal|failed): \[(?P<host>[^\]]+)\]")


@dataclass(frozen=True)
class HostStats:
    ok: int = 0
    changed: int = 0
    unreachable: int = 0
    failed: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass
class PlaybookResult:
    returncode: int
    tags: list[str]
    hosts: dict[str, HostStats] = field(default_factory=dict)
    seconds: float = 0.0
    log: Path | None = None
    failure: str = ""             # the first failed task and what Ansible said, when one failed

    @property
    def changed(self) -> int:
        """Tasks that changed something, over every host (0: the run found everything in place)."""
        return sum(h.changed for h in self.hosts.values())

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not any(h.failed or h.unreachable for h in self.hosts.values())


def parse_recap(output: str) -> dict[str, HostStats]:
    """PLAY RECAP's lines (`etcd1 : ok=12 changed=3 unreachable=0 failed=0 ...`) -> host -> counts."""
    hosts: dict[str, HostStats] = {}
    text = output.rpartition("PLAY RECAP")[2]
    for line in text.splitlines():
        m = _RECAP.match(line.strip())
        if m:
            counts = dict(pair.split("=") for pair in m["counts"].split())
            known = HostStats.__dataclass_fields__
            hosts[m["host"]] = HostStats(**{k: int(v) for k, v in counts.items() if k in known})
    return hosts


def first_failure(output: str) -> str:
    """`task NAME on HOST: message` for the first task Ansible reported failed, or ""."""
    task = ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK ["):].rsplit("]", 1)[0]
        m = _FATAL.match(line)
        if m:
            msg = re.search(r'"msg": "((?:[^"\\]|\\.)*)"', line)
            return f"task {task!r} on {m['host']}" + (f": {msg.group(1)[:300]}" if msg else "")
    return ""


def tag_plays(tag: str) -> list[tuple[str, list[str]]]:
    """What one step of site.yml does, in its own words: (play name, its task names) for each play the
    tag selects (the plays tagged `always` run with every tag but belong to no step)."""
    if tag not in TAGS:
        raise LabError(f"unknown playbook step {tag!r}; the steps are {', '.join(TAGS)}.")
    site = yaml.safe_load(resources.files("pgha_lab.deploy").joinpath("ansible", "site.yml").read_text())
    out = []
    for play in site:
        tags = play.get("tags", [])
        if tag in ([tags] if isinstance(tags, str) else tags):
            out.append((str(play.get("name", "")), [str(t.get("name", "")) for t in play.get("tasks", [])]))
    return out


def run_playbook(ctx: LabContext, tags: list[str] | None = None, *, check: bool = True,
                 echo: Callable[[str], None] | None = None, timeout_s: float = RUN_TIMEOUT_S) -> PlaybookResult:
    """Export the lab's project and run its site.yml on the bare nodes (`tags`: some steps of TAGS,
    default all). `echo` gets Ansible's output line by line; the whole of it is kept in
    labs/<project>/ansible/last-run.log. With `check`, a failed run raises LabError naming the task."""
    tags = list(tags or [])
    unknown = [t for t in tags if t not in TAGS]
    if unknown:
        raise LabError(f"unknown playbook step {unknown[0]!r}; the steps are {', '.join(TAGS)}.")
    if not ctx.topology.bare:
        raise LabError(f"lab {ctx.project!r} is not bare: its nodes come configured; the playbook builds "
                       f"a bare lab (`pgha-lab up --bare`).")
    binary = export.ansible_playbook()
    if binary is None:
        raise LabError(export.INSTALL_HINT)
    result = export.export(ctx)
    log = result.out / "last-run.log"
    cmd = [binary, "-i", "inventory/lab.yml", "site.yml", *(["--tags", ",".join(tags)] if tags else [])]
    env = {**os.environ, "ANSIBLE_CONFIG": str(result.out / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_NOCOLOR": "1", "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    lines: list[str] = []
    with log.open("w", buffering=1) as fh, subprocess.Popen(cmd, cwd=result.out, env=env, stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT, text=True) as proc:
        # A run that hangs prints nothing: the deadline is kept by a timer, not by reading.
        deadline = threading.Timer(timeout_s, proc.kill)
        deadline.start()
        assert proc.stdout is not None   # stdout=PIPE above
        try:
            for line in proc.stdout:
                fh.write(line)
                lines.append(line)
                if echo:
                    echo(line.rstrip("\n"))
            returncode = proc.wait()
        finally:
            deadline.cancel()
    if time.monotonic() - started >= timeout_s:
        raise LabError(f"the playbook did not finish within {timeout_s:.0f}s; its output is in {log}.")
    output = "".join(lines)
    outcome = PlaybookResult(returncode, tags, parse_recap(output), time.monotonic() - started, log,
                             first_failure(output))
    if check and not outcome.ok:
        where = outcome.failure or f"ansible-playbook exited {returncode}"
        raise LabError(f"the playbook failed: {where}; the whole run is in {log}.")
    return outcome
