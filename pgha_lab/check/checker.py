"""The checks: small pure functions from operations and final states to one named kind of violation
each, and the verdict that gathers them. No I/O here."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .history import APPEND, FAIL, PRIMARY, UNKNOWN, FinalState, HistoryError, Operation

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Kind:
    """A kind of finding; an allowed kind is counted and never makes the verdict unclean."""
    name: str
    allowed: bool
    meaning: str


LOST = Kind("lost", False, "acknowledged, absent from the final primary state")
PHANTOM = Kind("phantom", False, "the client was told it failed before sending, yet it is in the final primary state")
UNKNOWN_PRESENT = Kind("unknown-present", True,
                       "outcome unknown to the client, in the final primary state: it did commit")
SINGLE_ACKER = Kind("single-acker", False,
                    "two servers acknowledged operations whose intervals overlap: two primaries at once")
DUPLICATE = Kind("duplicate", False, "a value stored more than once under one key on the primary")
REORDERED = Kind("reordered", False, "a list element stored before one whose append was acknowledged before it started")
VANISHED_READ = Kind("vanished-read", False, "a read saw a value the final primary state does not hold")
DISCARDED_READ = Kind("discarded-read", True,
                      "a read saw a value the final primary state does not hold, written by a write whose outcome "
                      "its client never learnt: a commit the old primary made locally (PostgreSQL shows it before "
                      "the synchronous standby confirms it) and the failover discarded")
DIVERGENT_REPLICA = Kind("divergent-replica", False, "a replica's final rows for a key differ from the primary's")
KINDS = (LOST, PHANTOM, UNKNOWN_PRESENT, SINGLE_ACKER, DUPLICATE, REORDERED, VANISHED_READ, DISCARDED_READ,
         DIVERGENT_REPLICA)


@dataclass(frozen=True)
class Finding:
    """How often one kind occurred, with at most MAX_EXAMPLES of its cases in words."""
    kind: Kind
    count: int
    examples: tuple[str, ...] = ()

    @property
    def violation(self) -> bool:
        return self.count > 0 and not self.kind.allowed

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "allowed": self.kind.allowed, "meaning": self.kind.meaning,
                "examples": list(self.examples)}


def _finding(kind: Kind, cases: Sequence[str]) -> Finding:
    return Finding(kind, len(cases), tuple(cases[:MAX_EXAMPLES]))


def _describe(op: Operation) -> str:
    value = list(op.value) if isinstance(op.value, tuple) else op.value
    by = f" by {op.server}" if op.server else ""
    return f"{op.client} {op.op} {op.key}={value} ({op.result}{by}, {op.start:.3f}-{op.end:.3f}s)"


def _present(final: FinalState) -> dict[str, set[int]]:
    return {key: set(values) for key, values in final.rows.items()}


# -- what the client was told against what the primary holds ----------------------------------
def lost(operations: Iterable[Operation], primary: FinalState) -> Finding:
    present = _present(primary)
    return _finding(LOST, [f"{_describe(op)}: absent" for op in operations
                           if op.is_update and op.ok and op.value not in present.get(op.key, ())])


def _present_after(operations: Iterable[Operation], primary: FinalState, result: str) -> list[str]:
    present = _present(primary)
    return [f"{_describe(op)}: present" for op in operations
            if op.is_update and op.result == result and op.value in present.get(op.key, ())]


def phantom(operations: Iterable[Operation], primary: FinalState) -> Finding:
    return _finding(PHANTOM, _present_after(operations, primary, FAIL))


def unknown_present(operations: Iterable[Operation], primary: FinalState) -> Finding:
    return _finding(UNKNOWN_PRESENT, _present_after(operations, primary, UNKNOWN))


def duplicates(primary: FinalState) -> Finding:
    return _finding(DUPLICATE, [f"{key}={value} stored {times} times"
                                for key, values in primary.rows.items()
                                for value, times in Counter(values).items() if times > 1])


# -- one primary at a time ---------------------------------------------------------------------
def _acknowledged_by_a_primary(op: Operation) -> bool:
    # A write can only have been acknowledged by a primary; a read only when it went through the
    # primary port (replicas answer reads concurrently by design).
    return op.ok and bool(op.server) and (op.is_update or op.port == PRIMARY)


def single_acker(operations: Iterable[Operation]) -> Finding:
    """Pairs of acknowledged operations from different servers whose [start, end] intervals
    overlap (touching ends do not). Each commit happened within its interval, so both servers
    were accepting writes at once, provided a failover outlasts an answer's way back to the
    client, and start is taken when the operation was sent (a client-side retry restarts it)."""
    acks = sorted((op for op in operations if _acknowledged_by_a_primary(op)), key=lambda op: op.start)
    active: list[Operation] = []
    count = 0
    examples: list[str] = []
    for op in acks:
        active = [earlier for earlier in active if earlier.end > op.start]
        for earlier in active:
            if earlier.server != op.server:
                count += 1
                if len(examples) < MAX_EXAMPLES:
                    examples.append(f"{_describe(earlier)} overlaps {_describe(op)}")
        active.append(op)
    return Finding(SINGLE_ACKER, count, tuple(examples))


# -- list order ----------------------------------------------------------------------------------
def reordered(operations: Iterable[Operation], primary: FinalState) -> Finding:
    """Appends stored before an append acknowledged before they started. Only an acknowledged
    append surely committed by its end; any append present committed after its start. Counted
    once per misplaced element; a repeated element is judged at its first position."""
    appends: dict[str, list[Operation]] = {}
    for op in operations:
        if op.op == APPEND:
            appends.setdefault(op.key, []).append(op)
    cases: list[str] = []
    for key, ops in appends.items():
        misplaced: list[str] = []
        position: dict[int, int] = {}
        for index, value in enumerate(primary.values(key)):
            position.setdefault(value, index)
        placed = sorted((op for op in ops if op.value in position), key=lambda op: position[op.written])
        # Walking from the end of the list, the acknowledged append found so far that ended first.
        earliest_later: Operation | None = None
        for op in reversed(placed):
            if earliest_later is not None and earliest_later.end < op.start:
                misplaced.append(f"{key}: {op.value} stored before {earliest_later.value}, yet "
                             f"{_describe(earliest_later)} ended before {_describe(op)} started")
            if op.ok and (earliest_later is None or op.end < earliest_later.end):
                earliest_later = op
        cases.extend(reversed(misplaced))
    return _finding(REORDERED, cases)


# -- reads -----------------------------------------------------------------------------------------
def vanished_reads(operations: Iterable[Operation], primary: FinalState) -> tuple[Finding, Finding]:
    """Reads (either port) that saw a value the final primary state does not hold: it was visible
    once, then vanished. Counted once per read: as discarded (allowed) when every such value was
    written by a write its client got no answer to, else as vanished."""
    operations = tuple(operations)
    present = _present(primary)
    unsure = {(op.key, op.value) for op in operations if op.is_update and op.result == UNKNOWN}
    vanished: list[str] = []
    discarded: list[str] = []
    for op in operations:
        gone = [value for value in op.seen if value not in present.get(op.key, ())]
        if gone:
            port = f" via {op.port}" if op.port else ""
            case = f"{_describe(op)}{port}: {', '.join(map(str, gone))} not on the primary"
            (discarded if all((op.key, value) in unsure for value in gone) else vanished).append(case)
    return _finding(VANISHED_READ, vanished), _finding(DISCARDED_READ, discarded)


# -- replicas after the heal -------------------------------------------------------------------------
def divergent_replicas(primary: FinalState, replicas: Iterable[FinalState]) -> Finding:
    """Keys whose rows on a replica are not exactly the primary's, order included. Counted once
    per replica and key."""
    cases = []
    for replica in sorted(replicas, key=lambda final: final.source):
        for key in sorted(set(primary.rows) | set(replica.rows)):
            ours, theirs = primary.values(key), replica.values(key)
            if ours == theirs:
                continue
            missing = sorted((Counter(ours) - Counter(theirs)).elements())
            extra = sorted((Counter(theirs) - Counter(ours)).elements())
            detail = "; ".join(part for part in (f"missing {missing}" if missing else "",
                                                 f"extra {extra}" if extra else "") if part)
            cases.append(f"{replica.source} {key}: {detail or 'same values in another order'}")
    return _finding(DIVERGENT_REPLICA, cases)


# -- the verdict -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """Every kind's finding, in KINDS order; clean iff none is a violation."""
    operations: int
    findings: tuple[Finding, ...]

    @property
    def violations(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.violation)

    @property
    def clean(self) -> bool:
        return not self.violations

    def finding(self, kind: Kind | str) -> Finding:
        name = kind.name if isinstance(kind, Kind) else kind
        return next(finding for finding in self.findings if finding.kind.name == name)

    def count(self, kind: Kind | str) -> int:
        return self.finding(kind).count

    @property
    def summary(self) -> str:
        allowed = [f"{f.kind.name} {f.count}" for f in self.findings if f.count and f.kind.allowed]
        also = f" (allowed: {', '.join(allowed)})" if allowed else ""
        if self.clean:
            return f"clean: no violation in {self.operations} operations{also}"
        found = ", ".join(f"{f.kind.name} {f.count}" for f in self.violations)
        return f"VIOLATIONS in {self.operations} operations: {found}{also}"

    def as_dict(self) -> dict[str, Any]:
        return {"clean": self.clean, "summary": self.summary, "operations": self.operations,
                "findings": {finding.kind.name: finding.as_dict() for finding in self.findings}}

    def table(self) -> str:
        """Kind, count, allowed and the first example per kind, then the summary."""
        rows = [("kind", "count", "allowed", "example")]
        for finding in self.findings:
            more = f" (+{finding.count - 1} more)" if finding.count > 1 else ""
            example = f"{finding.examples[0]}{more}" if finding.examples else "-"
            rows.append((finding.kind.name, str(finding.count), "yes" if finding.kind.allowed else "no", example))
        widths = [max(len(row[column]) for row in rows) for column in range(3)]
        lines = [f"{kind:<{widths[0]}}  {count:>{widths[1]}}  {allowed:<{widths[2]}}  {example}"
                 for kind, count, allowed, example in rows]
        return "\n".join([*lines, "", self.summary])


def split_finals(finals: Iterable[FinalState]) -> tuple[FinalState, tuple[FinalState, ...]]:
    """The primary's final state and the replicas'. A missing primary is a HistoryError: without it
    'no lost write' would mean 'not looked'."""
    by_source: dict[str, FinalState] = {}
    for final in finals:
        if final.source in by_source:
            raise HistoryError(f"source {final.source!r} has more than one final state")
        by_source[final.source] = final
    if PRIMARY not in by_source:
        raise HistoryError(f"no final state for source {PRIMARY!r}, so nothing to hold the "
                           f"history against")
    primary = by_source.pop(PRIMARY)
    return primary, tuple(by_source.values())


def check(operations: Iterable[Operation], finals: Iterable[FinalState]) -> Verdict:
    """Every check over one history and its final states (one of them from source "primary")."""
    operations = tuple(operations)
    primary, replicas = split_finals(finals)
    return Verdict(len(operations), (
        lost(operations, primary),
        phantom(operations, primary),
        unknown_present(operations, primary),
        single_acker(operations),
        duplicates(primary),
        reordered(operations, primary),
        *vanished_reads(operations, primary),
        divergent_replicas(primary, replicas),
    ))
