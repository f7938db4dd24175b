"""Step 7, the course's tests: a switchover and a failover done by the learner, seen where the cluster
records them (the timelines in Patroni's /history key, the leader key) and told apart by what each
member logged when it took over; writes land again through HAProxy. A replica stopped or killed in
place of the leader is named for what it is: nothing fails over when a replica goes."""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from functools import partial

from pgha_lab.track import configs, s3_etcd, s5_patroni, s6_haproxy
from pgha_lab.track.assignment import Assignment
from pgha_lab.track.model import Finding, Reading, Readings, Source, Step, StepVerdict, Task
from pgha_lab.track.readers import Reader

# The lines that tell who led when, who took over how, and when a member went away.
EVENTS = (r"promoted self to leader|Cleaning up failover key|switchover: demoting|manual failover: demoting|"
          r"initialized a new cluster|Lock owner: |Stopping patroni|Stopped patroni|Started patroni|"
          r"patroni.service: (Main process exited|Killed|Failed)")
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
    reader.many({n.name: partial(visit, n.name) for n in a.db})
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
    out["since"] = Reading(Source("record", None, "the track's record of when step 6 first passed"),
                           bool(reader.since), reader.since)
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
    planned: bool    # a switchover (or patronictl failover) request: the old leader demoted itself on request


# A requested hand-over: the old leader logs "switchover: demoting myself" this long before the new
# leader's timeline at most (a graceful stop, a checkpoint and the standby's promotion on a busy host).
PLANNED_WITHIN_S = 30
CLOCK_SLACK_S = 5   # the journal's whole seconds against the history's timestamp


def takeovers(evs: list[Event], history: list | None = None, since: str = "") -> list[Takeover]:
    """Each timeline change in Patroni's /history (new leader, when) since `since`, told planned when the
    leader it replaced demoted itself on request just before; without a history, each promotion a member
    logged. The new leader's "Cleaning up failover key after acquiring leader lock" says nothing: Patroni
    4.1 leaves `{}` in /failover after every switchover, so a later unplanned failover logs it too. A
    leader that comes back to its own key (its Patroni restarted with no replica able to take over: it
    starts as a secondary and promotes itself, a new timeline) took nothing over from anyone."""
    changes: list[tuple[str, str, str | None]] = []   # (new leader, when, the leader it replaced)
    previous = next((e.node for e in evs if e.kind == "bootstrap"), None)
    for entry in history or []:
        if isinstance(entry, list) and len(entry) >= 5:
            node = str(entry[4])
            if node != previous:
                changes.append((node, str(entry[3]), previous))
            previous = node
    if history is None:
        changes = []
        for e in evs:
            if e.kind == "promoted":
                changes.append((e.node, e.at, previous))
                previous = e.node
    start = _seconds(since) if since else None

    def demoted_on_request(e: Event, node: str, old: str | None, t: float | None) -> bool:
        when = _seconds(e.at)
        return (e.kind == "demote" and e.node != node and (old is None or e.node == old)
                and t is not None and when is not None and -CLOCK_SLACK_S <= t - when <= PLANNED_WITHIN_S)
    out = []
    for node, at, old in changes:
        t = _seconds(at)
        if start is not None and t is not None and t < start:
            continue   # during the build, before step 6 passed: not one of the course's tests
        out.append(Takeover(node, at, any(demoted_on_request(e, node, old, t) for e in evs)))
    return out


LAB_WIDE_S = 90   # the leader stopping or booting this close to a replica did too: the whole lab went down


@dataclass(frozen=True)
class Gone:
    node: str
    at: str          # when it stopped, or when it was back (a power cut leaves no line when it happens)
    how: str         # "stopped" | "power cut"
    leader: str      # whom it followed


def replicas_gone(evs: list[Event], since: str = "") -> list[Gone]:
    """Members that went away while they followed a leader that stayed (not a whole-lab shutdown), since
    `since` and after the last takeover: what stopping or killing a replica looks like in the logs."""
    following: dict[str, str] = {}
    away: dict[str, bool] = {}
    out = []
    for e in evs:
        if e.kind == "follows":
            following[e.node] = e.detail
        elif e.kind == "leads":
            following.pop(e.node, None)
        elif e.kind == "stopped" and e.node in following and not away.get(e.node):
            out.append(Gone(e.node, e.at, "stopped", following[e.node]))
            away[e.node] = True
        elif e.kind == "started":
            if e.node in following and not away.get(e.node):
                out.append(Gone(e.node, e.at, "power cut", following[e.node]))
            away[e.node] = False
    last_takeover = max((e.at for e in evs if e.kind == "promoted"), default="")   # ISO times compare as text

    def leader_stayed(g: Gone) -> bool:
        # Like for like: a replica stopped as its leader stopped too, or back from a power cut as its
        # leader booted too (a start a minute before the stop is the learner starting Patroni, not a boot).
        t, same = _seconds(g.at), "stopped" if g.how == "stopped" else "started"
        return not any(e.node == g.leader and e.kind == same and t is not None
                       and (when := _seconds(e.at)) is not None and abs(when - t) <= LAB_WIDE_S for e in evs)
    return [g for g in out if g.at >= max(last_takeover, since) and leader_stayed(g)]


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
    since = r["since"].value if r.get("since") and r["since"].ok else ""
    taken = takeovers(evs, history if isinstance(history, list) else [], since or "")
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
        gone = replicas_gone(evs, since or "")
        if gone:
            g = gone[-1]
            when = f"was stopped at {g.at[11:19]}" if g.how == "stopped" else f"lost power (back at {g.at[11:19]})"
            f.append(Finding(f"no failover yet: {g.node}, which {when}, was a replica: the leader "
                             f"{leader} kept its key and the timeline stayed {timeline}; a failover happens when the "
                             f"leader goes",
                             f"patronictl -c {s5_patroni.CONFIG} list (who leads) before stopping a node; "
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
