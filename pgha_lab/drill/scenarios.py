"""The drills: every fault of the catalogue (chaos/catalogue.py) that a drill offers, with what it
breaks, how long it watches, what recovery means and its bound.

Faults go through Chaos (the same code paths as `pgha-lab chaos` and `switchover`), so a drill
measures exactly what a DBA can do by hand.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from pgha_lab.chaos import catalogue
from pgha_lab.chaos.actions import Chaos
from pgha_lab.chaos.catalogue import LAG_TARGET_BYTES, LAG_WAIT_S, WAL_SENDER_TIMEOUT_S  # noqa: F401
from pgha_lab.chaos.fault import Fault as CatalogueFault
from pgha_lab.chaos.fault import InMatrix
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.profiles import Profile
from pgha_lab.wait import Verdict


@dataclass
class Fault:
    """What was done, to whom, and what the cluster should do about it."""
    target: str
    role_before: str
    done: str
    expected: str
    check: Callable[[], Verdict] | None = None   # the expected outcome, read from the cluster
    extra_targets: list[str] = field(default_factory=list)
    holds: bool = False   # Patroni's rules say nothing recovers before healing (e.g. no sync standby to promote)
    figures: dict[str, float] = field(default_factory=dict)   # what the fault itself measured (the report's figures)


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    inject: Callable[[LabContext], Fault]
    observe_s: Callable[[Profile], float] = lambda p: 0.0
    hold: bool = False
    bound_s: Callable[[Profile], float | None] = lambda p: None
    bound_text: str = ""
    leader_changes: bool = True
    requires: Callable[[LabContext], None] | None = None
    needs_bulk: bool = False
    cuts_leader: bool = False
    in_matrix: InMatrix = lambda failsafe, replication, p: None


def inject(lab: LabContext, fault: CatalogueFault) -> Fault:
    """The catalogue's fault on its own target, as the drill records it."""
    out = Chaos(lab).run(fault.name, None)
    figures = dict(out.figures) if fault.drill and fault.drill.reports_figures else {}
    return Fault(target=out.node, role_before=out.role_before, done=out.done, expected=out.expectation.text,
                 check=out.expectation.check, holds=out.expectation.holds, extra_targets=list(out.extra_targets),
                 figures=figures)


def scenario(fault: CatalogueFault) -> Scenario:
    d = fault.drill
    assert d is not None, f"{fault.name} is not offered as a drill"
    return Scenario(fault.name, d.summary or fault.summary, lambda lab: inject(lab, fault), observe_s=d.observe_s,
                    hold=d.hold, bound_s=d.bound_s, bound_text=d.bound_text, leader_changes=d.leader_changes,
                    requires=d.requires, needs_bulk=d.needs_bulk, cuts_leader=d.cuts_leader,
                    in_matrix=d.in_matrix)


class _Scenarios(Mapping[str, Scenario]):
    """Name -> Scenario, read from the catalogue on every use (a fault registered later is a drill too)."""

    def __init__(self) -> None:
        self._made: dict[str, tuple[CatalogueFault, Scenario]] = {}

    def _faults(self) -> dict[str, CatalogueFault]:
        return {f.name: f for f in catalogue.drills()}

    def __getitem__(self, name: str) -> Scenario:
        fault = self._faults()[name]
        made = self._made.get(name)
        if made is None or made[0] is not fault:   # one Scenario per entry, the same on every read
            made = self._made[name] = (fault, scenario(fault))
        return made[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._faults())

    def __len__(self) -> int:
        return len(self._faults())


SCENARIOS: Mapping[str, Scenario] = _Scenarios()


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise LabError(f"unknown drill {name!r}; choose one of: {', '.join(SCENARIOS)}.") from None
