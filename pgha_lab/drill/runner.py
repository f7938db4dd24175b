"""One drill end to end: healthy check, steady writes, the fault, recovery, heal, full health,
then reconciliation of the ledger against the table."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from pgha_lab import lab_settings, vip
from pgha_lab.chaos.actions import Chaos
from pgha_lab.context import LabContext
from pgha_lab.drill import hostcpu, reconcile
from pgha_lab.drill.clock import Clock
from pgha_lab.drill.ledger import Attempt, Writer, WriterSettings, ensure_table, table_counts
from pgha_lab.drill.sampler import Sample, Sampler
from pgha_lab.drill.scenarios import Fault, Scenario
from pgha_lab.drill.workload import BulkWriter, WorkloadSettings
from pgha_lab.errors import LabError, first_line
from pgha_lab.profiles import Profile
from pgha_lab.term.progress import Progress
from pgha_lab.wait import Verdict, wait_until


@dataclass(frozen=True)
class DrillOptions:
    pre_fault_s: float = 3.0         # the fault's fixed offset: steady writes first, as a baseline
    tail_s: float = 2.0              # writes kept going after full health, so the last gap closes
    flowing_window_s: float = 1.0    # "writes flow": every attempt of the last second acknowledged
    writer: WriterSettings = WriterSettings()
    workload: WorkloadSettings = WorkloadSettings()   # background bulk writes (off unless asked for)
    sample_interval_s: float = 0.1
    sample_timeout_s: float = 0.5
    recover_margin_s: float = 60.0   # past the profile's bound before a drill stops waiting and heals
    health_deadline_s: float = 300.0  # a rewind or a fresh base backup of the old leader


@dataclass
class Event:
    t_s: float
    label: str


@dataclass
class DrillResult:
    scenario: Scenario
    project: str
    profile: Profile
    run: str
    clock: Clock
    fault: Fault
    fault_s: float
    old_leader: str
    members_before: list[dict[str, Any]]
    members_after: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    recovered: bool = False
    recovery_note: str = ""
    healed: list[str] = field(default_factory=list)
    healthy_after: bool = False
    health_note: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    table: dict[int, int] = field(default_factory=dict)
    findings: reconcile.Findings | None = None
    writer_settings: WriterSettings = field(default_factory=WriterSettings)
    settings: dict[str, Any] = field(default_factory=dict)   # lab settings Patroni ran (settings.LabSettings)
    workload: dict[str, Any] = field(default_factory=dict)   # the background load, and what it wrote
    node_logs: dict[str, str] = field(default_factory=dict)  # db node -> its log since the drill began, if unhealthy
    cpu_at_fault: hostcpu.CpuTimes | None = None       # the host's CPU counters when the fault came ...
    cpu_at_recovery: hostcpu.CpuTimes | None = None    # ... and when the wait for recovery ended

    @property
    def bound_s(self) -> float | None:
        if self.fault.holds:   # expected to stay without a leader until healed: no downtime bound applies
            return None
        return self.scenario.bound_s(self.profile)

    @property
    def host_busy(self) -> float | None:
        """The share of the host's CPU time spent busy from the fault to recovery."""
        return hostcpu.busy_share(self.cpu_at_fault, self.cpu_at_recovery)

    @property
    def _within_whatever_the_load(self) -> bool | None:
        f = self.findings
        if self.bound_s is None or f is None or f.downtime is None:
            return None
        # Writes that never resumed are not within any bound, however short the drill's tail.
        return f.unresumed is None and f.downtime.seconds <= self.bound_s

    @property
    def unjudged(self) -> bool:
        """Writes resumed, but later than the bound, on a host whose CPUs were saturated: the timing is
        the host's (see hostcpu), so the bound is not judged."""
        busy = self.host_busy
        return (self._within_whatever_the_load is False and self.findings is not None
                and self.findings.unresumed is None and busy is not None and busy >= hostcpu.SATURATED)

    @property
    def within_bound(self) -> bool | None:
        """True or False against the bound; None when there is none, or when it is not judged."""
        return None if self.unjudged else self._within_whatever_the_load

    @property
    def bound_note(self) -> str:
        """Why the bound was not judged, when it was not (empty otherwise)."""
        if not self.unjudged:
            return ""
        return (f"not judged: the host's CPUs were {100 * (self.host_busy or 0):.0f}% busy from the fault to recovery "
                f"(over {100 * hostcpu.SATURATED:.0f}%), so every service waited for a CPU and the timing is the "
                f"host's; run the drill again on a quieter machine")

    @property
    def started(self) -> str:
        return datetime.fromtimestamp(self.clock.wall0, UTC).isoformat(timespec="seconds")

    def problems(self) -> list[str]:
        """What a DBA must look at: the findings' problems, a recovery that never came, a downtime
        over the bound and a lab left unhealthy. The report and the exit code both read this."""
        f = self.findings
        out = f.problems() if f else []
        if not self.recovered:
            out.append(("did not hold as expected: " if self.fault.holds or self.scenario.hold
                        else "no recovery before healing: ") + self.recovery_note)
        if self.within_bound is False and f and f.downtime and f.unresumed is None:   # unresumed: said above
            out.append(f"write downtime {f.downtime.seconds:.2f}s over the bound of {self.bound_s:.1f}s "
                       f"({self.scenario.bound_text})")
        if not self.healthy_after:
            out.append(f"the lab did not return to health after healing: {self.health_note}")
        return out

    def figures(self) -> dict[str, Any]:
        figs = dict(self.findings.figures()) if self.findings else {}
        figs.update(self.fault.figures)
        figs["recovery_bound_s"] = None if self.bound_s is None else round(self.bound_s, 3)
        figs["host_cpu_busy_pct"] = None if self.host_busy is None else round(100 * self.host_busy, 1)
        figs["timeline_before"] = self.findings.timeline_before if self.findings else None
        figs["timeline_after"] = self.findings.timeline_after if self.findings else None
        return figs


HOLD_GRACE_S = 15.0
TABLE_DEADLINE_S = 15.0


def _poll(predicate: Callable[[], bool], deadline_s: float) -> bool:
    return wait_until(predicate, deadline_s).ok


def _read_table(dsn: str, password: str, run: str, deadline_s: float) -> dict[int, int]:
    """The table's rows of this run, read from the primary through HAProxy once the lab is healthy."""
    counts: dict[int, int] = {}

    def read() -> Verdict:
        try:
            with psycopg.connect(dsn, password=password, connect_timeout=3, autocommit=True) as conn:
                counts.update(table_counts(conn, run))
            return Verdict(True, "read")
        except psycopg.Error as exc:
            return Verdict(False, first_line(exc))

    verdict = wait_until(read, deadline_s)
    if not verdict.ok:
        raise LabError(f"could not read the drill's table through HAProxy to reconcile it: {verdict.reason}.")
    return counts


def require_healthy(lab: LabContext, what: str = "drill") -> None:
    """Refuse to measure a lab that is already broken: its figures would describe the old fault."""
    verdict = lab.health()
    if not verdict.ok:
        raise LabError(f"the lab is not healthy ({verdict.reason}); bring it back with `pgha-lab chaos heal-all` "
                       f"and `pgha-lab up`, then run the {what} again.")


def refuse_unfit(scenario: Scenario, opts: DrillOptions) -> None:
    """What the options alone rule out, refused before the lab is touched."""
    if scenario.needs_bulk and not opts.workload.enabled:
        raise LabError(f"{scenario.name} needs a bulk writer to build lag: add e.g. --bulk-rate 200 (rows a second).")


def run_drill(lab: LabContext, scenario: Scenario, run: str, opts: DrillOptions = DrillOptions(),
              progress: Progress | None = None) -> DrillResult:
    progress = progress or Progress(quiet=True)
    refuse_unfit(scenario, opts)
    if scenario.requires is not None:
        scenario.requires(lab)
    require_healthy(lab)   # again for each repeat: the run before may have left the lab unhealthy
    cluster = lab.cluster()
    members = list(cluster.members)
    old_leader = cluster.leader_name or ""
    password = lab.secrets.superuser_password
    dsn = lab.dsn()
    def table_ready() -> Verdict:
        try:
            with psycopg.connect(dsn, password=password, connect_timeout=5, autocommit=True) as conn:
                ensure_table(conn)
            return Verdict(True, "the drill's table is there")
        except psycopg.Error as exc:
            return Verdict(False, str(exc).strip()[:200])
    # A few seconds, not one attempt: HAProxy restarted by the `up` just before (a new profile)
    # answers its stats already healthy while its first TLS sessions may still be cut ("unexpected eof").
    ready = wait_until(table_ready, TABLE_DEADLINE_S)
    if not ready.ok:
        raise LabError(f"cannot write through HAProxy's 5432 before the drill: {ready.reason}.")

    clock = Clock()
    addresses = {str(n.address): n.name for n in lab.topology.db}
    writer = Writer(dsn, password, run, addresses, clock, opts.writer)
    sampler = Sampler(lab.probe, clock, opts.sample_interval_s, opts.sample_timeout_s)
    result = DrillResult(scenario=scenario, project=lab.project, profile=lab.profile, run=run, clock=clock,
                         fault=Fault("", "", "", ""), fault_s=0.0, old_leader=old_leader,
                         members_before=[asdict(m) for m in members], writer_settings=opts.writer)
    live = lab_settings.read_live(lab.probe, lab.topology) or lab.settings
    result.settings = live.as_dict()
    bulk = BulkWriter(dsn, password, run, opts.workload)

    def flowing() -> bool:
        return reconcile.writes_flowing(writer.snapshot(), clock.now(), opts.flowing_window_s)

    def mark(label: str) -> None:
        result.events.append(Event(round(clock.now(), 3), label))

    sampler.start()
    bulk.start()
    writer.start()
    injected = False
    try:
        with progress.step(f"Writing through HAProxy for {opts.pre_fault_s:.0f}s before the fault"):
            ok = _poll(lambda: clock.now() >= opts.pre_fault_s and flowing(), opts.pre_fault_s + 30)
            if not ok:
                latest = writer.snapshot()[-1:]
                raise LabError("writes through HAProxy's 5432 do not succeed steadily before the fault"
                               + (f" ({latest[0].error})" if latest and latest[0].error else "")
                               + "; nothing was broken.")

        result.cpu_at_fault = hostcpu.read(lab.docker, lab.topology.nodes)
        with progress.step(f"Fault: {scenario.summary}"):
            result.fault_s = clock.now()
            mark("fault")
            injected = True
            result.fault = scenario.inject(lab)
            mark("fault injected")
            progress.detail(result.fault.done)
        progress.info(result.fault.done)

        bound = scenario.bound_s(lab.profile) or lab.profile.failover_bound_s()
        observe = scenario.observe_s(lab.profile)
        deadline = observe + bound + opts.recover_margin_s
        title = (f"Watching the fault for {observe:.0f}s" if scenario.hold
                 else "Watching the expected outcome hold" if result.fault.holds
                 else f"Waiting for recovery (writes flowing{' on a new leader' if scenario.leader_changes else ''})")
        with progress.step(title):
            check = result.fault.check
            last: list[Verdict] = []   # the check's latest reading, for the note

            def recovered() -> bool:
                since = clock.now() - result.fault_s
                if since < observe:
                    return False
                v = check() if check else None
                if v is not None:
                    progress.detail(v.reason)
                    last[:] = [v]
                if scenario.hold:   # the fault's own outcome (e.g. the primary demoted), seen before healing
                    return v is None or v.ok
                if result.fault.holds:   # held as expected is the outcome: no writes to wait for
                    return v is not None and v.ok
                return (v is None or v.ok) and flowing()
            # A hold scenario's outcome comes within its watch (the primary demotes within ttl), so it
            # gets a short grace after it, not a failover's bound.
            watched = observe + HOLD_GRACE_S if scenario.hold else deadline
            result.recovered = _poll(recovered, watched)
            result.cpu_at_recovery = hostcpu.read(lab.docker, lab.topology.nodes)
            late = ""
            busy = result.host_busy or 0.0
            if scenario.hold and not result.recovered and busy >= hostcpu.SATURATED:
                # On saturated CPUs every step of the outcome (Patroni's DCS retries, a PostgreSQL stop and
                # start) waits for a CPU: watch as long again before calling it missing, and say so.
                late = f" (watched twice as long as usual: the host's CPUs were {100 * busy:.0f}% busy)"
                result.recovered = _poll(recovered, watched)
                result.cpu_at_recovery = hostcpu.read(lab.docker, lab.topology.nodes)
                watched *= 2
            seen = f": {last[0].reason}" if last else ""
            if scenario.hold and not result.recovered:
                result.recovery_note = (f"{watched:.0f}s after the fault was in place, {result.fault.expected!r} "
                                        f"had not happened{seen}{late}")
            elif scenario.hold:
                result.recovery_note = (f"held the fault for {observe:.0f}s (no recovery expected before healing)"
                                        f"{seen}{late}")
            elif result.recovered and result.fault.holds:
                result.recovery_note = f"held as expected ({result.fault.expected})"
            elif result.recovered:
                result.recovery_note = "recovered before healing"
            else:
                v = check() if check else None
                result.recovery_note = (f"did not recover within {deadline:.0f}s"
                                        + (f": {v.reason}" if v else "") + "; healed anyway")
            mark("recovered" if result.recovered and not scenario.hold else "heal due")

        _heal_and_settle(lab, result, opts, progress, flowing, mark)
    except BaseException:
        if injected:   # never leave a half-broken lab behind, whatever stopped the drill
            try:
                Chaos(lab).heal_all()
            except Exception:
                pass
        writer.stop()
        bulk.stop()
        sampler.stop()
        raise
    writer.stop()
    bulk.stop()
    sampler.stop()

    result.attempts = writer.snapshot()
    result.samples = sampler.snapshot()
    with progress.step("Reconciling the ledger against the table"):
        result.table = _read_table(dsn, password, run, 60)
        result.findings = reconcile.reconcile(result.attempts, result.samples, result.table, result.fault_s, old_leader,
                                       failsafe=bool(result.settings.get("failsafe")))
        bulk.count_lost()
        result.workload = bulk.summary()
        result.members_after = [asdict(m) for m in lab.probe.members()]
    return result


def _heal_and_settle(lab: LabContext, result: DrillResult, opts: DrillOptions, progress: Progress,
                     flowing: Callable[[], bool], mark: Callable[[str], None]) -> None:
    with progress.step("Healing every fault"):
        result.healed = Chaos(lab).heal_all()
        mark("healed")
    with progress.step("Waiting for full health (old leader back as a replica, HAProxy routing)"):
        def settled() -> bool:
            v = lab.health()
            if v.ok and lab.topology.vip is not None and vip.holders(lab) != [lab.topology.haproxy.name]:
                # A healed haproxy takes the VIP back (the higher VRRP priority): settled once it has.
                v = Verdict(False, f"the VIP {lab.topology.vip} is not back on {lab.topology.haproxy.name} yet")
            moving = flowing()
            if v.ok and not moving:   # the lab looks healthy, yet the workload's writes do not get through
                v = Verdict(False, f"{v.reason}, but the workload's writes are not flowing (not "
                                   f"every attempt of the last {opts.flowing_window_s:g}s was acknowledged)")
            result.health_note = v.reason
            progress.detail(v.reason)
            return v.ok
        result.healthy_after = _poll(settled, opts.health_deadline_s)
        mark("healthy" if result.healthy_after else "health deadline")
    if not result.healthy_after:
        # What a DBA reads next, kept before anyone resets the lab: Patroni's and PostgreSQL's lines.
        result.node_logs = {n.name: lab.docker.logs_since(n, result.started) for n in lab.topology.db}
    end = result.clock.now() + opts.tail_s
    # Pacing, not a readiness wait: a few more writes on the healed cluster close the last gap.
    _poll(lambda: result.clock.now() >= end, opts.tail_s + 1)
