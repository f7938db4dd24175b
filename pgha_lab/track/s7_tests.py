"""Step 7, the course's tests: a switchover and a failover done by the learner, seen where the cluster
records them (the timelines in Patroni's /history key, the leader key) and told apart by what each
member logged when it took over; writes land again through HAProxy. A replica stopped or killed in
place of the leader is named for what it is: nothing fails over when a replica goes."""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass

from pgha_lab.track import configs, s3_etcd, s5_patroni, s6_haproxy
from pgha_lab.track.assignment import Assignment
from pgha_lab.track.model import Finding, Reading, Readings, Step, StepVerdict, Task
from pgha_lab.track.readers import Reader

# The lines that tell who led when, who took over how, and when a member went away.
EVENTS = (r"promoted self to leader|Cleaning up failover key|switchover: demoting|manual failover: demoting|"
          r"initialized a new cluster|Lock owner: |Stopping patroni|Stopped patroni|Started patroni|"
          r"patroni.service: (Main process exited|Killed|Failed)|^-- Boot")
# Consecutive "Lock owner: X; I am Y" lines that say the same are one line: the role, when it changed.
JOURNAL = (f"journalctl -u patroni --no-pager -o short-iso | grep -E '{EVENTS}' | "
           "awk '{line=$0; sub(/^[^ ]+ [^ ]+ [^ ]+ /, \"\", line); sub(/^[^ ]+ [^ ]+ /, \"\", line); "
           "if (line ~ /Lock owner/ && line == last) next; last=line; print}' | tail -400")


def read(reader: Reader, a: Assignment) -> Readings:
    out = Readings()
    db = a.db[0].name
    first = reader.files(db, texts=[s5_patroni.CONFIG], certs=[a.ca_path(db)],
                         commands={"password": (s6_haproxy.CREDENTIALS, "the superuser's password")})
    conf_text = first[f"text:{s5_patroni.CONFIG}"]
    conf = configs.parse_yaml(conf_text.value["text"] if conf_text.ok else "")

    def visit(node: str) -> None:
        got = reader.files(node, commands={"events": (JOURNAL, "journalctl -u patroni")})
        out[f"{node}:events"] = got["cmd:events"]
    reader.many({n.name: (lambda n=n.name: visit(n)) for n in a.db})
    out.update(s3_etcd.dcs_read(reader, a, s5_patroni.namespace(conf, a)))
    su = ((conf.get("postgresql", "authentication", default={}) or {}).get("superuser") or {})
    password = su.get("password")
    if not password and first["cmd:password"].ok:
        password = next((line.split("=", 1)[1] for line in first["cmd:password"].value["out"].splitlines()
                         if line.startswith(f"{s6_haproxy.PASSWORD_VAR}=")), None)
    ca = first[f"cert:{a.ca_path(db)}"]
    out["write"] = s6_haproxy.sql_through(a.haproxy.address, a.haproxy_primary_port, su.get("username", "postgres"),
                                          password, ca.value["text"] if ca.ok else None,
                                          "select host(inet_server_addr()), txid_current()")
    out["namespace"] = Reading(conf_text.source, True, s5_patroni.namespace(conf, a))
    return out


@dataclass(frozen=True)
class Event:
    at: str          # ISO time as the journal printed it
    node: str
    kind: str        # promoted, failover-key, demote, bootstrap, leads, follows, stopped, started, boot
    detail: str = ""


def events(a: Assignment, r: Readings) -> list[Event]:
    out: list[Event] = []
    for n in a.db:
        reading = r.get(f"{n.name}:events")
        if not reading or not reading.ok:
            continue
        for line in reading.value["out"].splitlines():
            if line.startswith("-- Boot"):
                out.append(Event("", n.name, "boot"))
                continue
            at = line.split(" ", 1)[0]
            kind, detail = _kind(line, n.name)
            if kind:
                out.append(Event(at, n.name, kind, detail))
    return sorted(out, key=lambda e: e.at)


def _kind(line: str, node: str) -> tuple[str, str]:
    if "promoted self to leader" in line:
        return "promoted", ""
    if "Cleaning up failover key" in line:
        return "failover-key", ""
    if "switchover: demoting" in line or "manual failover: demoting" in line:
        return "demote", ""
    if "initialized a new cluster" in line:
        return "bootstrap", ""
    m = re.search(r"Lock owner: ([^;]+); I am (\S+)", line)
    if m:
        owner = m.group(1).strip()
        return ("leads", "") if owner == node else ("follows", owner)
    if re.search(r"Stopping patroni|Stopped patroni|patroni.service: (Main process exited|Killed|Failed)", line):
        return "stopped", ""
    if "Started patroni" in line:
        return "started", ""
    return "", ""


def _seconds(at: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(at).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Takeover:
    node: str
    at: str
    planned: bool    # after a switchover (or patronictl failover) request: Patroni cleaned the failover key up


def takeovers(evs: list[Event]) -> list[Takeover]:
    out = []
    for i, e in enumerate(evs):
        if e.kind != "promoted":
            continue
        t = _seconds(e.at)
        planned = any(p.kind == "failover-key" and p.node == e.node and t is not None and _seconds(p.at) is not None
                      and 0 <= t - _seconds(p.at) <= 5 for p in evs[max(0, i - 20):i + 1])
        out.append(Takeover(e.node, e.at, planned))
    return out


def replicas_gone(evs: list[Event]) -> list[Event]:
    """A member that went away (stopped, or a new boot) while it followed a leader, with no takeover after."""
    role: dict[str, str] = {}
    out = []
    for e in evs:
        if e.kind in ("leads", "follows"):
            role[e.node] = e.kind
        elif e.kind in ("stopped", "boot") and role.get(e.node) == "follows":
            out.append(e)
            role[e.node] = "gone"
    last_takeover = max((e.at for e in evs if e.kind == "promoted"), default="")
    return [e for e in out if e.at >= last_takeover or not e.at]


def grade(a: Assignment, r: Readings) -> StepVerdict:
    v = StepVerdict(7, False)
    f = v.findings
    ns = r["namespace"].value if r.get("namespace") else f"/service/{a.scope}/"
    keys = s3_etcd.dcs_keys(r.get("dcs"))
    if keys is None:
        f.append(Finding("etcd could not be read to see the cluster's history", "step 3's check", "etcd-unreadable"))
        return v
    try:
        history = json.loads(keys.get(f"{ns}history", "[]"))
    except ValueError:
        history = []
    leader = keys.get(f"{ns}leader")
    evs = events(a, r)
    taken = takeovers(evs)
    switchovers = [t for t in taken if t.planned]
    failovers = [t for t in taken if not t.planned]
    timeline = len(history) + 1
    if not leader:
        f.append(Finding("no member holds the leader key now: the cluster has no primary",
                         f"patronictl -c {s5_patroni.CONFIG} list; journalctl -u patroni on the db nodes", "no-leader"))
        return v
    if not switchovers:
        f.append(Finding(f"no switchover yet: the cluster's history holds {len(history)} timeline change"
                         f"{'s' if len(history) != 1 else ''}, none of them a planned hand-over",
                         f"patronictl -c {s5_patroni.CONFIG} history; patronictl switchover", "no-switchover"))
    if not failovers:
        gone = replicas_gone(evs)
        if gone:
            g = gone[-1]
            when = f" at {g.at[11:19]}" if g.at else ""
            f.append(Finding(f"no failover yet: {g.node}, which went away{when}, was a replica: the leader "
                             f"{leader} kept its key and the timeline stayed {timeline}; a failover happens when the "
                             f"leader goes", f"patronictl -c {s5_patroni.CONFIG} list (who leads) before stopping a node; "
                             f"journalctl -u patroni on {g.node} ('Lock owner: ...; I am {g.node}')", "replica-killed"))
        else:
            f.append(Finding(f"no failover yet: every change of leader in the history (timeline {timeline} now) was a "
                             f"planned hand-over; stop or power off the leader to see the replica take over",
                             f"patronictl -c {s5_patroni.CONFIG} list; patronictl -c {s5_patroni.CONFIG} history",
                             "no-failover"))
    write = r.get("write")
    if not write or not write.ok:
        f.append(Finding(f"writes do not land through HAProxy now ({write.error if write else 'not tried'})",
                         write.source.look() if write else "step 6's check", "no-writes"))
    elif a.name_of(write.value[0]) != leader:
        f.append(Finding(f"a write through HAProxy landed on {a.name_of(write.value[0])}, not the leader {leader}",
                         "HAProxy's stats page", "writes-elsewhere"))
    if not f:
        v.passed = True
        v.confirmed = [f"{len(switchovers)} switchover{'s' if len(switchovers) != 1 else ''} and {len(failovers)} "
                       f"failover{'s' if len(failovers) != 1 else ''} in the history (timeline {timeline})",
                       f"writes land on the leader {leader} through HAProxy"]
    return v


STEP = Step(
    id=7, slug="verify", title="The course's tests: a switchover and a failover",
    goal="Move the leader on purpose, then lose it, and see clients follow through HAProxy both times.",
    background=(
        "A switchover is planned: the leader hands over to a healthy standby (`patronictl switchover`), "
        "nothing is lost. A failover is what happens when the leader goes: its key expires in etcd, the "
        "synchronous standby takes it and promotes. Each promotion starts a new timeline, and Patroni keeps "
        "them in its /history key (`patronictl history`). HAProxy's checks notice within a few seconds, and "
        "clients reconnect to the same address. Stopping a replica is a test too, but of something else: the "
        "leader stays, and the synchronous standby is simply gone."),
    tasks=(
        Task("any db node", "`patronictl -c /etc/patroni/config.yml switchover`: hand the leader role to the "
                            "standby, and check writes through haproxy:5432 land on the new leader."),
        Task("the leader", "Make the leader fail: `sudo systemctl stop patroni`, or power it off "
                           "(`pgha-lab chaos kill leader`). Watch the standby take over, then bring the old leader "
                           "back: it rejoins as a replica."),
        Task("the host", "Write through haproxy:5432 again (the course's `select inet_server_addr(), "
                         "pg_is_in_recovery()` and an insert)."),
    ),
    hints=(
        "`patronictl -c /etc/patroni/config.yml list` first: the Role column says which node leads; that is the "
        "one to stop for a failover.",
        "`patronictl -c /etc/patroni/config.yml history` shows every timeline change; a switchover and a "
        "failover each add one.",
    ),
    read=read, grade=grade, minutes=20)
