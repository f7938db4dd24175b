#!/usr/bin/env python3
"""`lesson reset` time from the states lessons leave behind (median of N), against the 30 s target.

States: a killed leader, a paused leader and an isolated leader (each after the standby took over:
`chaos ... --wait`), changed Patroni settings (ttl, loop_wait, a parameter needing a restart), a
lab lesson 11 grew by a db node (`lesson start 11` + `up --db-nodes 3`), and the changes a learner
makes beside the lessons' steps: ALTER SYSTEM SET shared_buffers and a restart (lesson 8's case),
a tag set in dbnode2's patroni.yml on the host and the node rebooted, bootstrap.dcs edited in
dbnode1's patroni.yml, maintenance mode (`patronictl pause`), a key of one's own in etcd.
Runs on an existing lab (default: the default lab); it must be up. Prints a table.
usage: python bench/lessons.py [--project NAME] [--repeat 3] [--states killed,paused,isolated,setting,grown]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 30.0
BREAK = {   # state -> the commands that leave the lab in it
    "killed": (("chaos", "kill", "leader", "--wait"),),
    "paused": (("chaos", "pause", "leader", "--wait"),),
    "isolated": (("chaos", "isolate", "leader", "--wait"),),
    "setting": (("exec", "dbnode1", "--", "patronictl", "-c", "/etc/patroni/config.yml", "edit-config", "--force",
                 "-s", "ttl=45", "-s", "loop_wait=4", "-p", "shared_buffers=160MB", "-p", "work_mem=8MB"),),
    "grown": (("lesson", "start", "11"), ("up", "--db-nodes", "3")),
    "alter-system": (("psql", "--", "-c", "alter system set shared_buffers = '192MB'"),
                     ("exec", "dbnode1", "--", "patronictl", "-c", "/etc/patroni/config.yml", "restart", "18/main",
                      "dbnode1", "--force")),
    "tag": (("edit", "dbnode2", "  clonefrom: true\n", "  clonefrom: true\n  nofailover: true\n"),
            ("chaos", "stop", "dbnode2"), ("chaos", "start", "dbnode2", "--wait")),
    "edited-file": (("edit", "dbnode1", "    ttl: 20\n", "    ttl: 60\n"),),
    "maintenance": (("exec", "dbnode1", "--", "patronictl", "-c", "/etc/patroni/config.yml", "pause", "--wait"),),
    "etcd-key": (("exec", "etcd1", "--", "ectl", "put", "/lesson/note", "hello"),),
}


def edit(project: str | None, node: str, old: str, new: str) -> None:
    """What a learner does in an editor on the host: one change to a node's rendered file."""
    f = REPO / "labs" / (project or "pgha-lab") / "nodes" / node / "patroni.yml"
    text = f.read_text()
    f.write_text(text.replace(old, new, 1) if old in text else text + new)


def cli(project: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proj = ["--project", project] if project else []
    proc = subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(REPO), *proj, *args],
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"pgha-lab {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--states", default=",".join(BREAK))
    args = ap.parse_args()
    states = [s.strip() for s in args.states.split(",")]
    unknown = [s for s in states if s not in BREAK]
    if unknown:
        raise SystemExit(f"unknown state(s) {', '.join(unknown)}; choose from {', '.join(BREAK)}.")
    cli(args.project, "lesson", "reset")
    rows = []
    for state in states:
        times, internal = [], []
        for _ in range(args.repeat):
            for command in BREAK[state]:
                if command[0] == "edit":
                    edit(args.project, *command[1:])
                else:
                    cli(args.project, *command, check=False)
            started = time.monotonic()
            report = json.loads(cli(args.project, "lesson", "reset", "--json").stdout)
            times.append(time.monotonic() - started)
            internal.append(report["seconds"])
            if report["recreated"]:
                print(f"note: the lab was re-created after {state}", file=sys.stderr)
        rows.append((state, statistics.median(times), statistics.median(internal), min(times), max(times)))
    print(f"{'state':<13} {'median s':>9} {'(reset only)':>13} {'min s':>7} {'max s':>7}  target {TARGET_S:.0f} s"
          f" (load average {os.getloadavg()[0]:.1f} at the end)")
    for state, med, inner, lo, hi in rows:
        mark = "ok" if med <= TARGET_S else "OVER"
        print(f"{state:<13} {med:>9.1f} {inner:>13.1f} {lo:>7.1f} {hi:>7.1f}  {mark}")
    print(f"(median of {args.repeat}; 'reset only' excludes the CLI's start-up; each run starts from the state "
          f"`{' '.join(BREAK['killed'][0])}` etc. leave)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
