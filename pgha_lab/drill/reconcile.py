"""Pure judgement of one drill: the ledger, the samples and the table's final contents in,
downtime, lost and duplicate writes, writes acknowledged by a non-leader, split brain and the
phase breakdown out. No I/O here, so every detector is unit-tested on synthetic data."""
from __future__ import annotations

import bisect
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

from pgha_lab.chaos.rules import SYNC_CANCEL_TEXT
from pgha_lab.drill.ledger import Attempt
from pgha_lab.drill.sampler import ETCD, HAPROXY, PATRONI, Sample


# -- write downtime -------------------------------------------------------------------------
@dataclass(frozen=True)
class Gap:
    """Between two consecutive acknowledgements: the last before the gap, the first after it. An
    open gap has no acknowledgement after it: it ends at the last attempt (first_id), failed."""
    start_s: float
    end_s: float
    last_id: int
    first_id: int
    open: bool = False

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


def acks(attempts: Iterable[Attempt]) -> list[Attempt]:
    return sorted((a for a in attempts if a.ok), key=lambda a: a.end_s)


def ack_gaps(attempts: Iterable[Attempt]) -> list[Gap]:
    done = acks(attempts)
    return [Gap(a.end_s, b.end_s, a.id, b.id) for a, b in pairwise(done)]


def outages(attempts: Iterable[Attempt]) -> list[Gap]:
    """The gaps between consecutive acknowledgements with a failed write in them, oldest first: each
    from the last write acknowledged before the failures to the first acknowledged after them."""
    attempts = list(attempts)
    failed = sorted(a.start_s for a in attempts if not a.ok)
    out = []
    for gap in ack_gaps(attempts):
        i = bisect.bisect_right(failed, gap.start_s)
        if i < len(failed) and failed[i] < gap.end_s:
            out.append(gap)
    return out


UNRESUMED_MIN_S = 1.0   # a failing tail shorter than this is one unlucky last attempt, not an outage


def open_gap(attempts: Iterable[Attempt]) -> Gap | None:
    """Writes that had not resumed when the drill stopped: from the last acknowledgement to the
    last attempt, when attempts after it failed for at least UNRESUMED_MIN_S. A lower bound on
    that downtime, not its length."""
    attempts = list(attempts)
    done = acks(attempts)
    later = [a for a in attempts if done and a.end_s > done[-1].end_s]
    if not later:
        return None
    last = max(later, key=lambda a: a.end_s)
    gap = Gap(done[-1].end_s, last.end_s, done[-1].id, last.id, open=True)
    return gap if gap.seconds >= UNRESUMED_MIN_S else None


INTERRUPTION_FACTOR = 4   # a gap this many times the usual one between acks is more than the writer's rhythm


def interrupted(gap: Gap, attempts: Iterable[Attempt]) -> bool:
    """Whether writes really stopped in `gap`, rather than the writer simply taking its next turn:
    it lasted over INTERRUPTION_FACTOR times the median gap between acknowledgements."""
    usual = [g.seconds for g in ack_gaps(attempts)]
    return not usual or gap.seconds > INTERRUPTION_FACTOR * statistics.median(usual)


def longest_gap(attempts: Iterable[Attempt], ending_after_s: float | None = None) -> Gap | None:
    """The write downtime: the longest stretch without an acknowledgement, the open one at the
    end included (optionally only gaps that end after a moment, e.g. the fault)."""
    attempts = list(attempts)
    gaps = [g for g in [*ack_gaps(attempts), open_gap(attempts)]
            if g is not None and (ending_after_s is None or g.end_s > ending_after_s)]
    return max(gaps, key=lambda g: g.seconds, default=None)


# -- what the table holds against what the client was told -----------------------------------
def lost_writes(attempts: Iterable[Attempt], table: dict[int, int]) -> list[int]:
    """Acknowledged to the client, absent from the table after recovery."""
    return sorted({a.id for a in attempts if a.ok and table.get(a.id, 0) == 0})


def duplicate_writes(attempts: Iterable[Attempt], table: dict[int, int]) -> list[int]:
    """Ids the table holds more than once, or that the ledger acknowledges more than once."""
    seen: dict[int, int] = {}
    for a in attempts:
        if a.ok:
            seen[a.id] = seen.get(a.id, 0) + 1
    return sorted({i for i, n in table.items() if n > 1} | {i for i, n in seen.items() if n > 1})


def unacknowledged_commits(attempts: Iterable[Attempt], table: dict[int, int]) -> list[int]:
    """Attempts the client saw fail that committed anyway (the answer was lost, not the write):
    not a loss, but an application retrying them would write twice."""
    return sorted({a.id for a in attempts if not a.ok and table.get(a.id, 0) > 0})


def unknown_rows(attempts: Iterable[Attempt], table: dict[int, int]) -> list[int]:
    tried = {a.id for a in attempts}
    return sorted(i for i, n in table.items() if n > 0 and i not in tried)


def with_notice(attempts: Iterable[Attempt], text: str = "") -> list[int]:
    return [a.id for a in attempts if a.ok and a.notice and text in a.notice]


# -- acknowledged by a server that was not the leader of record ------------------------------
@dataclass(frozen=True)
class NonLeaderAck:
    id: int
    at_s: float
    server: str
    leader_before: str    # the leader key's holder in the last reading before the attempt ("" = no key)
    leader_after: str     # ... and in the first reading after it
    keyless: bool = False  # no reading in the window showed any holder: nobody else led meanwhile


def _key_windows(attempts: Iterable[Attempt], samples: Iterable[Sample]) -> list[tuple[Attempt, list[Sample] | None]]:
    """Each acknowledgement with the leader-key readings from the last one at or before its start
    to the first one at or after its end; None when either end is missing or did not answer
    (etcd without quorum, or the edges of the drill): the key may have moved where nobody looked."""
    keys = sorted((s for s in samples if s.source == ETCD), key=lambda s: s.t_s)
    times = [s.t_s for s in keys]
    out: list[tuple[Attempt, list[Sample] | None]] = []
    for a in acks(attempts):
        i = bisect.bisect_right(times, a.start_s) - 1     # last reading at or before the start
        j = bisect.bisect_left(times, a.end_s)            # first reading at or after the end
        judged = i >= 0 and j < len(keys) and keys[i].answered and keys[j].answered
        out.append((a, keys[i:j + 1] if judged else None))
    return out


def unjudged_acks(attempts: Iterable[Attempt], samples: Iterable[Sample]) -> list[int]:
    """Acknowledgements non_leader_acks cannot judge. Reported so 'no non-leader ack' is not
    mistaken for 'every ack was checked'."""
    return [a.id for a, window in _key_windows(attempts, samples) if window is None]


def non_leader_acks(attempts: Iterable[Attempt], samples: Iterable[Sample]) -> list[NonLeaderAck]:
    """Acknowledgements from a server that held the leader key neither in the reading before the
    attempt started nor in any reading up to the first one after it ended."""
    return [NonLeaderAck(a.id, a.end_s, a.server, window[0].value, window[-1].value,
                         keyless=not any(s.value for s in window))
            for a, window in _key_windows(attempts, samples)
            if window is not None and not any(s.answered and s.value == a.server for s in window)]


# -- split brain -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Overlap:
    source: str           # patroni (two nodes answered as primary) or haproxy (two primary servers UP)
    start_s: float
    end_s: float
    nodes: tuple[str, ...]
    # HAProxy only: every node it had UP also answered as primary itself during the interval. An
    # unconfirmed double UP is HAProxy's check lag (a demoted node not yet failed `fall` times):
    # new sessions may go to a node that refuses writes, but no second node accepts them.
    confirmed: bool = True

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


def _runs(points: list[tuple[float, bool]]) -> list[tuple[float, float]]:
    """Maximal runs of consecutive True readings, as (first, last) reading times."""
    runs: list[tuple[float, float]] = []
    start: float | None = None
    last = 0.0   # the run's latest reading, set whenever start is
    for t, flag in points:
        if flag:
            start = t if start is None else start
            last = t
        elif start is not None:
            runs.append((start, last))
            start = None
    if start is not None:
        runs.append((start, last))
    return runs


def primary_runs(samples: Iterable[Sample]) -> dict[str, list[tuple[float, float]]]:
    """Per db node, the stretches it certainly answered as primary: a run of consecutive
    'primary' readings. A silent reading ends a run: a node nobody heard is not counted."""
    by_node: dict[str, list[tuple[float, bool]]] = {}
    for s in sorted((s for s in samples if s.source == PATRONI), key=lambda s: s.t_s):
        by_node.setdefault(s.node, []).append((s.t_s, s.says_primary))
    return {node: _runs(points) for node, points in by_node.items()}


def two_primaries(samples: Iterable[Sample]) -> list[Overlap]:
    """Intervals in which two nodes answered as primary. Nodes are read in separate threads at
    different instants, so one node's role change between two readings of the other is not an
    overlap: each node must have said 'primary' on both sides of (or at) the shared moment."""
    samples = list(samples)
    runs = primary_runs(samples)
    nodes = sorted(runs)
    out = []
    for x, a in enumerate(nodes):
        for b in nodes[x + 1:]:
            for a0, a1 in runs[a]:
                for b0, b1 in runs[b]:
                    lo, hi = max(a0, b0), min(a1, b1)
                    if lo <= hi:
                        out.append(Overlap(PATRONI, lo, hi, (a, b)))
    out.extend(o for o in haproxy_two_primaries(samples) if o.confirmed)
    return sorted(out, key=lambda o: o.start_s)


def merged(overlaps: Iterable[Overlap]) -> list[tuple[float, float]]:
    """The union of overlaps as disjoint (start, end) intervals: Patroni and HAProxy often see the
    same split brain, and one event must count once (each source's overlap stays in the detail)."""
    out: list[tuple[float, float]] = []
    for o in sorted(overlaps, key=lambda o: o.start_s):
        if out and o.start_s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], o.end_s))
        else:
            out.append((o.start_s, o.end_s))
    return out


def haproxy_two_primaries(samples: Iterable[Sample]) -> list[Overlap]:
    """Intervals in which HAProxy had two servers UP behind 5432 (one stats page is one instant),
    each marked confirmed when every one of those nodes answered as primary within the interval
    or in its last reading before it (its state on both sides of the interval's start). An unanswered
    stats reading ends a run, as a silent node does in primary_runs: nobody saw what HAProxy did then."""
    samples = list(samples)
    readings = sorted((s for s in samples if s.source == HAPROXY), key=lambda s: s.t_s)
    roles_by_node: dict[str, list[Sample]] = {}
    for s in sorted((s for s in samples if s.source == PATRONI), key=lambda s: s.t_s):
        roles_by_node.setdefault(s.node, []).append(s)

    def said_primary(node: str, start: float, end: float) -> bool:
        mine = roles_by_node.get(node, [])
        before = [s for s in mine if s.t_s <= start][-1:]
        return any(s.says_primary for s in before + [s for s in mine if start < s.t_s <= end])

    out: list[Overlap] = []
    run: list[Sample] = []
    for reading in [*readings, None]:   # None: the end closes the last run
        if reading is not None and len(reading.up_servers) >= 2:
            run.append(reading)
            continue
        if run:
            nodes = tuple(sorted({n for r in run for n in r.up_servers}))
            start, end = run[0].t_s, run[-1].t_s
            out.append(Overlap(HAPROXY, start, end, nodes, all(said_primary(n, start, end) for n in nodes)))
            run = []
    return out


# -- phases ----------------------------------------------------------------------------------
@dataclass
class Phases:
    """Seconds after the fault for each step of a failover; None when it did not happen."""
    fault_s: float                        # when the fault was injected (drill time)
    old_leader: str
    leader_key_gone: float | None = None  # the old leader no longer holds the key (readable etcd)
    new_leader: float | None = None       # another node holds the key
    new_leader_name: str = ""
    haproxy_switched: float | None = None  # 5432's only UP server is the new leader
    first_write: float | None = None      # first acknowledgement after the outage (None: writes never stopped)
    first_write_server: str = ""


def phases(attempts: Iterable[Attempt], samples: Iterable[Sample], fault_s: float, old_leader: str,
           downtime: Gap | None) -> Phases:
    """`downtime` is the longest gap ending after the fault: the first write is the ack closing it."""
    attempts, samples = list(attempts), list(samples)
    ph = Phases(fault_s=fault_s, old_leader=old_leader)
    after = sorted((s for s in samples if s.t_s >= fault_s and s.answered), key=lambda s: s.t_s)
    for s in after:
        if s.source != ETCD:
            continue
        if ph.leader_key_gone is None and s.value != old_leader:
            ph.leader_key_gone = s.t_s - fault_s
        if s.value and s.value != old_leader:
            ph.new_leader, ph.new_leader_name = s.t_s - fault_s, s.value
            break
    if ph.new_leader_name:
        t_new = fault_s + (ph.new_leader or 0.0)
        switched = next((s for s in after if s.source == HAPROXY and s.t_s >= t_new
                         and s.up_servers == [ph.new_leader_name]), None)
        if switched:
            ph.haproxy_switched = switched.t_s - fault_s
    # With no real interruption (a replica or an etcd minority lost) the longest gap is just the
    # writer's rhythm, and its end says nothing about the fault.
    if downtime is not None and not downtime.open and interrupted(downtime, attempts):
        ph.first_write = downtime.end_s - fault_s
        ph.first_write_server = next(a.server for a in attempts if a.ok and a.id == downtime.first_id)
    return ph


def timelines(samples: Iterable[Sample], fault_s: float) -> tuple[int | None, int | None]:
    """The primary's timeline in the last reading before the fault and in the last reading of all."""
    primaries = sorted((s for s in samples if s.says_primary and s.timeline is not None), key=lambda s: s.t_s)
    before = [s.timeline for s in primaries if s.t_s < fault_s]
    return (before[-1] if before else None), (primaries[-1].timeline if primaries else None)


# -- the whole verdict -----------------------------------------------------------------------
@dataclass
class Findings:
    attempts: int
    acked: int
    failed: int
    downtime: Gap | None
    lost: list[int]
    duplicates: list[int]
    unacknowledged_commits: list[int]
    unknown_rows: list[int]
    non_leader_acks: list[NonLeaderAck]
    unjudged_acks: list[int]          # acks with no readable leader key on one side: not checked
    split_brain: list[Overlap]
    haproxy_lag: list[Overlap]        # two servers UP behind 5432, only one of them answering as primary
    sync_cancelled: list[int]         # acknowledged with "canceling wait for synchronous replication"
    with_notices: list[int]
    phases: Phases
    timeline_before: int | None
    timeline_after: int | None
    servers: dict[str, int] = field(default_factory=dict)   # acknowledgements per node
    unresumed: Gap | None = None      # attempts after the last ack all failed: writes had not resumed
    # failsafe_mode was on: a leader that lost its key but reaches every member runs on by design,
    # so its acks while nobody held the key are counted (keyless_acks), not reported as a problem.
    failsafe: bool = False

    @property
    def judged_non_leader_acks(self) -> list[NonLeaderAck]:
        return [n for n in self.non_leader_acks if not (self.failsafe and n.keyless)]

    def problems(self) -> list[str]:
        """What a DBA must look at; empty for a clean drill."""
        out = []
        if self.attempts and not self.acked:
            out.append("no write was acknowledged during the drill")
        if self.unresumed:
            u = self.unresumed
            out.append(f"writes had not resumed by the end of the drill: none acknowledged after write #{u.last_id} "
                       f"({u.start_s:.2f}s) up to the last attempt #{u.first_id} ({u.end_s:.2f}s)")
        if self.lost:
            out.append(f"{len(self.lost)} acknowledged write(s) missing after recovery (ids {_ids(self.lost)})")
        if self.duplicates:
            out.append(f"{len(self.duplicates)} write(s) duplicated (ids {_ids(self.duplicates)})")
        if wrong := self.judged_non_leader_acks:
            out.append(f"{len(wrong)} write(s) acknowledged by a node that was not the leader of record "
                       f"(ids {_ids([n.id for n in wrong])})")
        if self.split_brain:
            spans = ", ".join(f"{o.source} {'+'.join(o.nodes)} {o.start_s:.2f}-{o.end_s:.2f}s"
                              for o in self.split_brain)
            union = merged(self.split_brain)
            out.append(f"split brain: two primaries at once, {len(union)} interval(s), "
                       f"{sum(b - a for a, b in union):.2f}s in all (seen as {spans})")
        if self.unknown_rows:
            out.append(f"{len(self.unknown_rows)} row(s) in the table that the writer never attempted")
        return out

    def figures(self) -> dict[str, Any]:
        """The numbers a drill is compared on (flat, so --repeat can take min/median/max)."""
        ph = self.phases
        split_brain = merged(self.split_brain)
        return {
            "write_downtime_s": round(self.downtime.seconds, 3) if self.downtime else None,
            "attempts": self.attempts, "acknowledged": self.acked, "failed": self.failed,
            "lost_writes": len(self.lost), "duplicate_writes": len(self.duplicates),
            "non_leader_acks": len(self.non_leader_acks),
            "keyless_acks": sum(n.keyless for n in self.non_leader_acks),
            "wrong_acks": len(self.judged_non_leader_acks),
            "unjudged_acks": len(self.unjudged_acks),
            "split_brain_intervals": len(split_brain),
            "split_brain_s": round(sum(end - start for start, end in split_brain), 3),
            "haproxy_stale_primary_s": round(sum(o.seconds for o in self.haproxy_lag), 3),
            "unacknowledged_commits": len(self.unacknowledged_commits),
            "sync_wait_cancelled": len(self.sync_cancelled),
            "leader_key_gone_s": _r(ph.leader_key_gone), "new_leader_s": _r(ph.new_leader),
            "haproxy_switched_s": _r(ph.haproxy_switched), "first_write_s": _r(ph.first_write),
        }

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["downtime"] = (None if self.downtime is None
                           else {**asdict(self.downtime), "seconds": round(self.downtime.seconds, 3)})
        doc["problems"] = self.problems()
        doc["figures"] = self.figures()
        return doc


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _ids(ids: list[int], most: int = 10) -> str:
    shown = ", ".join(map(str, ids[:most]))
    return shown + (f" and {len(ids) - most} more" if len(ids) > most else "")


def reconcile(attempts: Iterable[Attempt], samples: Iterable[Sample], table: dict[int, int],
              fault_s: float, old_leader: str, failsafe: bool = False) -> Findings:
    attempts, samples = list(attempts), list(samples)
    ok = [a for a in attempts if a.ok]
    servers: dict[str, int] = {}
    for a in ok:
        servers[a.server] = servers.get(a.server, 0) + 1
    before, after = timelines(samples, fault_s)
    downtime = longest_gap(attempts, ending_after_s=fault_s)
    return Findings(
        attempts=len(attempts), acked=len(ok), failed=len(attempts) - len(ok),
        downtime=downtime, lost=lost_writes(attempts, table),
        duplicates=duplicate_writes(attempts, table),
        unacknowledged_commits=unacknowledged_commits(attempts, table),
        unknown_rows=unknown_rows(attempts, table),
        non_leader_acks=non_leader_acks(attempts, samples), unjudged_acks=unjudged_acks(attempts, samples),
        split_brain=two_primaries(samples),
        haproxy_lag=[o for o in haproxy_two_primaries(samples) if not o.confirmed],
        sync_cancelled=with_notice(attempts, SYNC_CANCEL_TEXT), with_notices=with_notice(attempts),
        phases=phases(attempts, samples, fault_s, old_leader, downtime),
        timeline_before=before, timeline_after=after, servers=servers, unresumed=open_gap(attempts),
        failsafe=failsafe)


# -- repeats ----------------------------------------------------------------------------------
def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """min / median / max of every figure over repeated runs (a figure missing in a run is skipped)."""
    names = list(dict.fromkeys(k for r in runs for k in r))
    out: dict[str, dict[str, float | None]] = {}
    for name in names:
        values = [r[name] for r in runs if isinstance(r.get(name), (int, float))]
        out[name] = ({"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}
                     if values else {"min": None, "median": None, "max": None, "n": 0})
    return out


FLOWING_STRETCH_SHARE = 0.5   # no stretch of the window longer than this share of it without an acknowledgement


def writes_flowing(attempts: Iterable[Attempt], now_s: float, window_s: float) -> bool:
    """Writes flow at the writer's rhythm: every attempt that finished in the last `window_s` seconds
    was acknowledged, and acknowledgements came all through the window, none of its stretches (its
    start to the first, one to the next, the last to now) longer than FLOWING_STRETCH_SHARE of it.
    One or two acknowledgements between hung attempts are not writes flowing: they would call a
    recovery that has not happened, and the drill would heal before the outage ended."""
    start = now_s - window_s
    recent = [a for a in attempts if a.end_s >= start]
    if not recent or not all(a.ok for a in recent):
        return False
    moments = [start, *sorted(a.end_s for a in recent), now_s]
    return max(b - a for a, b in pairwise(moments)) <= FLOWING_STRETCH_SHARE * window_s
