"""`drill campaign`: a randomized, seed-reproducible schedule of the catalogue's campaign faults,
overlapping where that is realistic (a fault while another heals), against a continuous workload
of several clients (one register per writer, one list appender, a reader), each operation recorded
in a JSONL history. At the end every fault is healed, the lab waits for health, the final rows are
read from the primary and from every replica directly, and the independent checker (pgha_lab.check)
gives its verdict beside the per-fault timeline."""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from pgha_lab.chaos import catalogue
from pgha_lab.chaos.actions import Chaos
from pgha_lab.chaos.fault import Fault, Outcome
from pgha_lab.chaos.sql import connect as node_connect
from pgha_lab.check import checker
from pgha_lab.check.history import (
    APPEND,
    FAIL,
    OK,
    READ,
    UNKNOWN,
    WRITE,
    FinalState,
    HistoryWriter,
    Operation,
)
from pgha_lab.context import LabContext
from pgha_lab.drill import sampler
from pgha_lab.drill.clock import Clock
from pgha_lab.drill.ledger import WriterSettings, open_session
from pgha_lab.drill.runner import require_healthy
from pgha_lab.errors import LabError, first_line
from pgha_lab.rows import one_row
from pgha_lab.term.progress import Progress
from pgha_lab.topology import Topology
from pgha_lab.wait import Verdict, wait_until

TABLE = "pgha_campaign"
# Append-only: one row per write, so a write stored twice or lost stays visible to the checker.
DDL = (f"create table if not exists {TABLE} (id bigserial primary key, run text not null, key text not null, "
       f"value bigint not null, server inet default inet_server_addr())",
       f"create index if not exists {TABLE}_run on {TABLE} (run, key)")
WARMUP_S = 8.0      # steady writes before the first fault
TAIL_S = 15.0       # no fault starts in the last seconds: the last heal must fit in the campaign
INSTANT_S = 3.0     # the room an instant fault (switchover, kill-postgres...) takes in the schedule
# The drill writer's session policy; a 2 s connect deadline, as the campaign's clients always had.
SESSION = WriterSettings(connect_timeout_s=2.0)
# Roles, the leader key and HAProxy's server read twice a second: a campaign's faults are seconds apart.
SAMPLE_INTERVAL_S = 0.5


@dataclass(frozen=True)
class FaultKind:
    """A campaign fault as the schedule sees it (its definition: chaos/catalogue.py)."""
    name: str
    summary: str
    duration: tuple[float, float]     # seconds the fault stays before its heal; (0, 0): instant
    overlaps: bool = False            # realistic while another fault heals (the next may start at once)
    min_db: int = 2                   # db nodes the fault needs
    min_etcd: int = 1                 # etcd members it needs (losing one keeps a quorum only from 3)
    needs_disks: bool = False         # a lab whose db nodes have their own disks (`up --disk-size`)
    by_default: bool = True           # drawn when --faults is not given
    picks_etcd: bool = False          # the seed picks which etcd member it strikes
    timed: bool = False               # told its own length


def _kind(fault: Fault) -> FaultKind:
    c = fault.campaign
    assert c is not None
    return FaultKind(fault.name, c.summary or fault.summary, c.duration, c.overlaps, c.min_db, c.min_etcd,
                     c.needs_disks, c.by_default, c.picks_etcd, c.timed)


class _Kinds(Mapping[str, FaultKind]):
    """Name -> FaultKind in draw order, read from the catalogue on every use."""

    def _faults(self) -> dict[str, Fault]:
        return {f.name: f for f in catalogue.campaign_faults()}

    def __getitem__(self, name: str) -> FaultKind:
        return _kind(self._faults()[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._faults())

    def __len__(self) -> int:
        return len(self._faults())


CATALOGUE: Mapping[str, FaultKind] = _Kinds()


@dataclass(frozen=True)
class Step:
    at_s: float
    fault: str
    heal_s: float | None = None      # when its heal is due; None for an instant fault
    etcd: int = 0                    # kill-etcd: which member (index), drawn from the seed


def parse_faults(text: str | None, topology: Topology | None = None) -> tuple[str, ...]:
    """The catalogue names chosen (all when none), each checked against what the topology can take."""
    asked = (tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip())) if text
             else tuple(k.name for k in CATALOGUE.values() if k.by_default))
    if not asked:
        raise LabError("--faults takes a comma-separated list of faults such as kill-leader,kill-haproxy.")
    names = []
    for given in asked:
        fault = catalogue.campaign_fault(given)   # an earlier spelling (partition-leader) names the same fault
        if fault is None:
            raise LabError(f"unknown fault {given!r}; choose from: {', '.join(CATALOGUE)}.")
        name = fault.name
        names.append(name)
        kind = CATALOGUE[name]
        if topology is not None and (len(topology.db) < kind.min_db or len(topology.etcd) < kind.min_etcd):
            raise LabError(f"{name} needs {kind.min_db} db node(s) and {kind.min_etcd} etcd member(s); this lab has "
                           f"{len(topology.db)} and {len(topology.etcd)}; leave it out of --faults.")
        if topology is not None and kind.needs_disks and topology.db_disk_size is None:
            raise LabError(f"{name} needs db nodes with their own disks (`pgha-lab down --volumes`, then `up "
                           f"--disk-size 2G`): filling this lab's would fill the host's; leave it out of --faults.")
    return tuple(dict.fromkeys(names))


def check_minutes(minutes: float) -> float:
    if not 1 <= minutes <= 24 * 60:
        raise LabError(f"--minutes takes a length from 1 to 1440 minutes, not {minutes:g}.")
    return minutes


def schedule(seed: int, minutes: float, faults: tuple[str, ...], settle_s: tuple[float, float] = (20, 35),
             overlap_chance: float = 0.35) -> list[Step]:
    """The campaign's faults, a pure function of its arguments: the same seed, the same schedule."""
    rng = random.Random(seed)
    total = minutes * 60
    steps: list[Step] = []
    t = WARMUP_S
    while True:
        kind = CATALOGUE[rng.choice(faults)]
        length = round(rng.uniform(*kind.duration), 1) if kind.duration[1] else 0.0
        end = t + (length or INSTANT_S)
        if end > total - TAIL_S:
            break
        steps.append(Step(round(t, 1), kind.name, round(t + length, 1) if length else None,
                          etcd=rng.randrange(3) if kind.picks_etcd else 0))
        # Overlap where it is realistic: the next fault strikes while this one heals.
        if kind.overlaps or rng.random() < overlap_chance:
            t = end + rng.uniform(1, 5)
        else:
            t = end + rng.uniform(*settle_s)
    return steps


def format_schedule(steps: list[Step]) -> str:
    lines = [f"{'at':>7}  {'heal':>7}  fault"]
    for s in steps:
        heal = f"{s.heal_s:7.1f}" if s.heal_s is not None else f"{'-':>7}"
        extra = f" (etcd{s.etcd + 1})" if CATALOGUE[s.fault].picks_etcd else ""
        lines.append(f"{s.at_s:7.1f}  {heal}  {s.fault}{extra}: {CATALOGUE[s.fault].summary}")
    return "\n".join(lines)


# -- the workload --------------------------------------------------------------------------------
class Client:
    """One client thread: writes to its own register, appends to the shared list, or reads; every
    operation recorded in the history as the client saw it."""

    def __init__(self, name: str, op: str, key: str, dsn: str, password: str, run: str, clock: Clock,
                 history: HistoryWriter, port: str = "primary", interval_s: float = 0.1) -> None:
        self.name, self.op, self.key, self.dsn, self.password, self.run = name, op, key, dsn, password, run
        self.clock, self.history, self.port, self.interval_s = clock, history, port, interval_s
        self.conn: psycopg.Connection | None = None
        self.counts = {OK: 0, FAIL: 0, UNKNOWN: 0}
        self.ops: list[Operation] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"campaign-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _open(self) -> psycopg.Connection:
        return open_session(self.dsn, self.password, f"pgha-campaign-{self.name}", SESSION)

    def _one(self, value: int) -> Operation:
        start = self.clock.now()
        if self.conn is None or self.conn.closed:
            try:
                self.conn = self._open()
            except psycopg.Error as exc:
                return self._op(value if self.op != READ else None, start, FAIL, "", "connect: " + first_line(exc))
            start = self.clock.now()   # the operation starts on the connection that answers it
        try:
            if self.op == READ:
                row = one_row(self.conn.execute(f"select (select value from {TABLE} where "
                                                "run = %s and key = %s order by id desc "
                                                f"limit 1), host(inet_server_addr())", (self.run, self.key)))
                return self._op(row[0], start, OK, row[1] or "")
            row = one_row(self.conn.execute(f"insert into {TABLE} (run, key, value) values (%s, %s, %s) "
                                            f"returning host(inet_server_addr())", (self.run, self.key, value)))
            return self._op(value, start, OK, row[0] or "")
        except psycopg.Error as exc:
            try:
                self.conn.close()
            except Exception:   # the server may be gone already
                pass
            self.conn = None
            # A read-only server refuses before anything is written; any other error came after the
            # statement was sent, so it may have committed. A failed read changes nothing.
            definite = isinstance(exc, psycopg.errors.ReadOnlySqlTransaction)
            result = FAIL if definite or self.op == READ else UNKNOWN
            return self._op(value if self.op != READ else None, start, result, "", first_line(exc))

    def _op(self, value: Any, start: float, result: str, server: str, error: str = "") -> Operation:
        end = max(start, self.clock.now())
        return Operation(op=self.op, client=self.name, key=self.key, value=value, start=round(start, 4),
                         end=round(end, 4), result=result, server=server, port=self.port, error=error[:200])

    def _loop(self) -> None:
        value = 0
        while not self._stop.is_set():
            value += 1   # strictly increasing per client, failed or not
            op = self._one(value)
            self.counts[op.result] += 1
            self.ops.append(op)
            self.history.record(op)
            self._stop.wait(self.interval_s)
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass


# -- running it ------------------------------------------------------------------------------------
@dataclass
class FaultRecord:
    step: Step
    injected_s: float | None = None
    healed_s: float | None = None
    target: str = ""
    done: str = ""
    expected: str = ""
    outcome: str = ""          # what the expectation's check said last
    happened: bool | None = None
    happened_s: float | None = None
    skipped: str = ""
    heal_note: str = ""


@dataclass
class CampaignResult:
    seed: int
    minutes: float
    faults: tuple[str, ...]
    run: str
    profile: str
    steps: list[Step]
    records: list[FaultRecord] = field(default_factory=list)
    healthy_after: bool = False
    health_note: str = ""
    finals: list[FinalState] = field(default_factory=list)
    verdict: checker.Verdict | None = None
    operations: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    events: list[tuple[float, str]] = field(default_factory=list)
    samples: list[sampler.Sample] = field(default_factory=list)   # the drill's readings of roles, key, HAProxy
    clock: Clock | None = None

    def problems(self) -> list[str]:
        out = []
        if self.verdict is not None and not self.verdict.clean:
            out.append(f"checker: {self.verdict.summary}")
        if not self.healthy_after:
            out.append(f"the lab did not return to health: {self.health_note}")
        return out

    def surprises(self) -> list[str]:
        """Faults whose expected outcome, derived from the state at injection, did not happen."""
        return [f"{r.step.fault} at {r.injected_s:.1f}s on {r.target}: expected outcome not seen ({r.outcome})"
                for r in self.records if r.happened is False]

    def as_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "minutes": self.minutes, "faults": list(self.faults), "run": self.run,
                "profile": self.profile, "schedule": [asdict(s) for s in self.steps],
                "timeline": [{**asdict(r), "step": asdict(r.step)} for r in self.records],
                "healthy_after": self.healthy_after, "health_note": self.health_note,
                "operations": self.operations, "counts": self.counts, "duration_s": round(self.duration_s, 1),
                "verdict": self.verdict.as_dict() if self.verdict else None,
                "lost": self.verdict.count(checker.LOST) if self.verdict else None,
                "single_acker": self.verdict.count(checker.SINGLE_ACKER) if self.verdict else None,
                "problems": self.problems(), "surprises": self.surprises()}


def _inject(lab: LabContext, step: Step) -> tuple[str, Outcome | None, str]:
    """(target, the chaos outcome, done text)."""
    kind = CATALOGUE[step.fault]
    etcd = lab.topology.etcd
    target = etcd[step.etcd % len(etcd)].name if kind.picks_etcd else None
    options = {"duration": max(3.0, (step.heal_s or step.at_s) - step.at_s)} if kind.timed else {}
    out = Chaos(lab).run(step.fault, target, **options)
    return out.node, out, out.done


def _heal(lab: LabContext, rec: FaultRecord) -> str:
    fault = catalogue.get(rec.step.fault)
    heal = catalogue.heal_of(fault) if fault is not None else None
    if heal is None:
        return ""
    name, options = heal
    return Chaos(lab).run(name, rec.target, **options).done


def _final_rows(lab: LabContext, run: str, deadline_s: float) -> list[FinalState]:
    """The campaign's rows on the primary ("primary") and on every replica (by name), once every
    replica has replayed what the primary had when the clients stopped."""
    cluster = lab.cluster()
    leader = cluster.leader_name
    if leader is None:
        raise LabError("no leader after healing; cannot read the final state.")
    query = f"select key, value from {TABLE} where run = %s order by id"

    def rows_of(name: str) -> dict[str, tuple[int, ...]]:
        with node_connect(lab, lab.topology.node(name)) as conn:
            out: dict[str, list[int]] = {}
            for key, value in conn.execute(query, (run,)).fetchall():
                out.setdefault(key, []).append(int(value))
            return {key: tuple(values) for key, values in out.items()}

    with node_connect(lab, lab.topology.node(leader)) as conn:
        target_lsn = one_row(conn.execute("select pg_current_wal_lsn()::text"))[0]
    finals = [FinalState("primary", rows_of(leader))]
    for node in lab.topology.db:
        if node.name == leader:
            continue

        def caught_up(n=node) -> Verdict:
            try:
                with node_connect(lab, n) as conn:
                    ok = one_row(conn.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", (target_lsn,)))[0]
            except psycopg.Error as exc:
                return Verdict(False, first_line(exc))
            return Verdict(bool(ok), "replayed" if ok else "replaying")
        if wait_until(caught_up, deadline_s).ok:
            finals.append(FinalState(node.name, rows_of(node.name)))
    return finals


def run_campaign(lab: LabContext, seed: int, minutes: float, faults: tuple[str, ...], run: str, folder: Path,
                 progress: Progress | None = None, health_deadline_s: float = 300.0) -> CampaignResult:
    progress = progress or Progress(quiet=True)
    require_healthy(lab, "campaign")
    steps = schedule(seed, minutes, faults)
    result = CampaignResult(seed, minutes, faults, run, lab.profile.name, steps)
    password = lab.secrets.superuser_password
    try:
        with psycopg.connect(lab.dsn(), password=password, connect_timeout=5, autocommit=True) as conn:
            for stmt in DDL:
                conn.execute(stmt)
    except psycopg.Error as exc:
        raise LabError(f"cannot write through HAProxy's 5432 before the campaign: {first_line(exc)}.") from None

    folder.mkdir(parents=True, exist_ok=True)
    clock = Clock()
    result.clock = clock
    readings = sampler.Sampler(lab.probe, clock, SAMPLE_INTERVAL_S)
    history = HistoryWriter(folder / "history.jsonl")
    primary, replicas = lab.dsn(), lab.dsn(replica=True)
    clients = [Client(f"w{i}", WRITE, f"w{i}", primary, password, run, clock, history) for i in (1, 2, 3)]
    clients.append(Client("a1", APPEND, "list", primary, password, run, clock, history))
    clients.append(Client("r1", READ, "w1", primary, password, run, clock, history, interval_s=0.25))
    clients.append(Client("r2", READ, "w2", replicas, password, run, clock, history, port="replica", interval_s=0.5))

    def mark(label: str) -> None:
        result.events.append((round(clock.now(), 2), label))

    total = minutes * 60
    records = [FaultRecord(s) for s in steps]
    result.records = records
    readings.start()
    for c in clients:
        c.start()
    try:
        with progress.step(f"Campaign: {len(steps)} faults over {minutes:g} min (seed {seed})"):
            pending = list(records)
            active: list[FaultRecord] = []
            watching: list[tuple[FaultRecord, Callable[[], Verdict], float]] = []
            while clock.now() < total or active:
                now = clock.now()
                for rec in [r for r in pending if r.step.at_s <= now]:
                    pending.remove(rec)
                    rec.injected_s = round(clock.now(), 2)
                    try:
                        rec.target, out, rec.done = _inject(lab, rec.step)
                    except LabError as exc:
                        rec.skipped = str(exc)
                        progress.detail(f"{rec.step.fault} skipped: {exc}")
                        continue
                    mark(f"{rec.step.fault} {rec.target}")
                    progress.detail(f"{rec.injected_s:.0f}s {rec.done}")
                    if out is not None:
                        rec.expected = out.expectation.text
                        if out.expectation.check is not None:
                            watching.append((rec, out.expectation.check, rec.injected_s + out.expectation.deadline_s))
                    if rec.step.heal_s is not None:
                        active.append(rec)
                for rec in [r for r in active if r.step.heal_s is not None and r.step.heal_s <= clock.now()]:
                    active.remove(rec)
                    rec.healed_s = round(clock.now(), 2)
                    try:
                        rec.heal_note = _heal(lab, rec)
                    except LabError as exc:
                        rec.heal_note = f"heal refused: {exc}"
                    mark(f"heal {rec.step.fault}")
                for item in list(watching):
                    rec, check, due = item
                    try:
                        v = check()
                    except Exception as exc:   # a probe failing mid-fault is an answer too
                        v = Verdict(False, first_line(exc))
                    rec.outcome = v.reason
                    if v.ok:
                        rec.happened, rec.happened_s = True, round(clock.now() - (rec.injected_s or 0), 2)
                        watching.remove(item)
                    elif clock.now() >= due:
                        rec.happened = False
                        watching.remove(item)
                time.sleep(0.25)   # the schedule's pace: faults are due at set times, not on readiness
            for rec, _check, _ in watching:   # still waiting at the end: judged by their last reading
                rec.happened = False
        with progress.step("Healing every fault"):
            healed = Chaos(lab).heal_all()
            mark("heal-all")
            progress.detail(", ".join(healed) or "nothing left to heal")
        with progress.step("Waiting for full health"):
            def settled() -> Verdict:
                v = lab.health()
                result.health_note = v.reason
                return v
            result.healthy_after = wait_until(settled, health_deadline_s).ok
            mark("healthy" if result.healthy_after else "health deadline")
        # A few writes on the healed cluster (pacing, not a readiness wait).
        end = clock.now() + 3
        wait_until(lambda: clock.now() >= end, 4)
    except BaseException:
        try:
            Chaos(lab).heal_all()
        except Exception:
            pass
        raise
    finally:
        for c in clients:
            c.stop()
        readings.stop()
        history.close()
    result.samples = readings.snapshot()
    result.duration_s = clock.now()
    operations = [op for c in clients for op in c.ops]
    result.operations = len(operations)
    result.counts = {k: sum(c.counts[k] for c in clients) for k in (OK, FAIL, UNKNOWN)}
    with progress.step("Reading the final state of the primary and of every replica"):
        result.finals = _final_rows(lab, run, 120)
    result.verdict = checker.check(operations, result.finals)
    return result
