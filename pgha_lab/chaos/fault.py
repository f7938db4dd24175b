"""What one fault of the catalogue is (chaos/catalogue.py holds them all): its one name, the targets
it takes, how it is injected (refusals first, inside `inject`) and healed, its expected outcome, and
which front ends offer it. `Act` is the one context an injection and its expectation run over: the
target as resolved, its role and container state read in one view, the state that decides Patroni's
next move as read before the fault, the options, and the hands (node reader, network)."""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pgha_lab.chaos import cluster_state
from pgha_lab.chaos.expectations import Expectation
from pgha_lab.chaos.network import Network
from pgha_lab.chaos.nodes import NodeReader
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.gateway import ContainerState
from pgha_lab.probes import Cluster
from pgha_lab.profiles import Profile
from pgha_lab.topology import Node
from pgha_lab.wait import wait_until

# Which nodes a fault's TARGET may name.
ANY_NODE = "any"            # a node name, or leader / replica
DB_NODE = "db"              # a db node (PostgreSQL and Patroni run there)
HAPROXY_NODE = "haproxy"    # an HAProxy node, or none: the lab's one, or the pair's natural choice
NO_NODE = "none"            # the fault picks its own nodes (a composite, a role change)

NOTHING = "Nothing in particular: watch `pgha-lab status`."


@dataclass(frozen=True)
class Options:
    """The knobs a fault may take (the chaos CLI's flags); a fault reads the ones it knows."""
    peers: str | None = None
    clear: bool = False
    loss: str | None = None
    delay: str | None = None
    rate: str | None = None
    every: float | None = None
    duration: float | None = None
    leave: str | None = None


@dataclass(frozen=True)
class MatrixOutcome:
    """What `drill matrix` must see of the fault in a cell whose settings change its course, besides
    what every such cell asks (0 lost, no split brain). `writes` names the check of the runs' writes:
    "flow" (downtime at most 3 s), "stop" (down at least retry_timeout), "hang" (commits wait)."""
    text: str
    writes: str


# failsafe on/off, replication mode, profile -> the cell's outcome, or None: the matrix's general rule.
InMatrix = Callable[[bool, str, Profile], "MatrixOutcome | None"]


@dataclass(frozen=True)
class Drill:
    """How `pgha-lab drill` (and the dashboard's drill button) offers the fault."""
    summary: str = ""                      # default: the fault's own
    # Minimum seconds to watch after the fault before healing: long enough for the effect the
    # scenario is about to show (e.g. a sync standby's member key expiring), whatever recovers first.
    observe_s: Callable[[Profile], float] = lambda p: 0.0
    # Heal after observe_s without waiting for recovery: for faults the cluster cannot recover
    # from by itself (no etcd quorum).
    hold: bool = False
    # Upper bound on write downtime implied by the profile; None where no downtime bound applies.
    bound_s: Callable[[Profile], float | None] = lambda p: None
    bound_text: str = ""
    leader_changes: bool = True
    # A refusal (LabError) for a lab whose shape cannot take the scenario, run before anything starts.
    requires: Callable[[LabContext], None] | None = None
    needs_bulk: bool = False   # only a bulk writer makes WAL faster than a slow link can carry
    # The leader is cut off from its standbys (power, freeze, network): in async mode what it had
    # not streamed may be lost (the settings matrix judges it so).
    cuts_leader: bool = False
    # The fault's own figures join the drill report's (the lag at the cut); others stay the chaos
    # outcome's (an experiment's "acknowledged" is not the writer's).
    reports_figures: bool = False
    # Where the settings matrix expects this fault to go its own way (failsafe keeps writes, strict hangs).
    in_matrix: InMatrix = lambda failsafe, replication, p: None


@dataclass(frozen=True)
class Campaign:
    """How `drill campaign` draws the fault."""
    # Its place in the draw: a seed picks faults by position, so a recorded seed keeps its schedule
    # only while positions stay; a new fault takes the next free number.
    draw: int
    duration: tuple[float, float]     # seconds the fault stays before its heal; (0, 0): instant
    summary: str = ""                 # default: the fault's own
    overlaps: bool = False            # realistic while another fault heals (the next may start at once)
    min_db: int = 2                   # db nodes the fault needs
    min_etcd: int = 1                 # etcd members it needs (losing one keeps a quorum only from 3)
    needs_disks: bool = False         # a lab whose db nodes have their own disks (`up --disk-size`)
    by_default: bool = True           # drawn when --faults is not given (new faults join only when named,
                                      # so every seed's default schedule stays what it was)
    picks_etcd: bool = False          # the seed picks which etcd member it strikes
    timed: bool = False               # told its own length (a flap lasts until its heal is due)
    aliases: tuple[str, ...] = ()     # earlier spellings `--faults` still takes


@dataclass(frozen=True)
class Button:
    """One of the dashboard's chaos buttons for a fault, on the node selected on the map."""
    label: str
    row: int                          # a row's buttons sit together; rows in number order
    danger: bool = False              # it breaks something (drawn red)
    kinds: tuple[str, ...] = ()       # node kinds it is offered on (empty: every kind)
    option: str | None = None         # an option sent with the value of the input beside it
    value: str = ""                   # that input's first value; "" with option peers: a list of nodes
    input_id: str = ""
    input_label: str = ""
    clear: bool = False               # sends --clear
    tag: str = ""                     # its data-action (default: the fault's name, -clear for a clear)


@dataclass
class Done:
    """What an injection did (and, for a composite or a fault read before it acts, what follows)."""
    text: str
    figures: dict[str, Any] = field(default_factory=dict)
    expectation: Expectation | None = None
    node: str | None = None           # whom it struck, when not the target (a composite)
    role: str | None = None
    extra_targets: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    action: str
    node: str
    role_before: str
    done: str
    expectation: Expectation
    happened: bool | None = None      # set by wait(): None when not waited for
    waited_s: float = 0.0
    verdict: str = ""
    figures: dict[str, Any] = field(default_factory=dict)   # what an experiment measured
    extra_targets: list[str] = field(default_factory=list)  # other nodes a composite struck

    @property
    def verdict_line(self) -> str:
        """The waited-for verdict as every front end prints it (the CLI's --wait, the dashboard)."""
        if self.happened is None:
            return "Nothing to wait for: watch `pgha-lab status`."
        status = "happened" if self.happened else "did NOT happen"
        return f"Outcome {status} after {self.waited_s:.1f}s: {self.verdict}."


def wait(outcome: Outcome) -> Outcome:
    """Wait for the expected outcome (up to its deadline) and record whether it happened."""
    exp = outcome.expectation
    if exp.check is None:
        return outcome
    started = time.monotonic()
    verdict = wait_until(exp.check, exp.deadline_s)
    outcome.verdict = verdict.reason
    outcome.happened = verdict.ok
    outcome.waited_s = time.monotonic() - started
    return outcome


@dataclass
class Act:
    """One fault being injected on one lab."""
    ctx: LabContext
    fault: Fault
    opts: Options
    read: NodeReader
    net: Network
    # Another fault of the catalogue on this lab (Chaos.run), for a composite; --from's nodes.
    run: Callable[..., Outcome]
    peers_of: Callable[[Node, str | None], list[Node]]
    target: str | None = None                   # as asked: a node name, leader / replica, or None
    node: Node | None = None                    # None for a fault that picks its own nodes
    role: str = ""
    state: ContainerState | None = None
    cluster: Cluster | None = None
    before: cluster_state.ClusterState | None = None

    @property
    def n(self) -> Node:
        assert self.node is not None, f"{self.fault.name} takes a node"
        return self.node

    @property
    def st(self) -> ContainerState:
        assert self.state is not None
        return self.state

    @staticmethod
    def need(condition: bool, reason: str) -> None:
        if not condition:
            raise LabError(reason + ".")

    def now(self) -> cluster_state.ClusterState:
        """The state that decides what follows: who is down or impaired read now (the fault may just
        have taken a node), everything else as read before the fault (the settings may no longer be
        readable)."""
        assert self.cluster is not None
        now = cluster_state.read(self.ctx, self.cluster, config=None if self.before is None else self.before.config)
        return now if self.before is None else replace(self.before, down=now.down, impaired=now.impaired)

    def expectation(self) -> Expectation:
        """The fault's expected outcome from the state now: called by the injection itself when it
        must be read before the fault acts (a frozen Patroni cannot be asked afterwards)."""
        if self.fault.expect is None:
            return Expectation(NOTHING)
        return self.fault.expect(self)


@dataclass(frozen=True)
class Fault:
    """One fault, defined once. `inject` refuses (LabError) before it changes anything."""
    name: str
    summary: str
    inject: Callable[[Act], Done]
    expect: Callable[[Act], Expectation] | None = None
    takes: str = ANY_NODE
    target: str | None = None           # the target when a front end offers it without one
    options: Mapping[str, Any] = field(default_factory=dict)   # fixed options (a drill's --from etcd)
    in_node_network: bool = False       # made with iptables/tc inside the node (HAProxy's image has none)
    needs_disks: bool = False           # a lab whose db nodes have their own disks
    boots: bool = False                 # boots a node: on a bare lab, systemd's boot comes first
    heal: str | None = None             # the fault that undoes it, on the same target
    heal_options: Mapping[str, Any] = field(default_factory=dict)
    base: str | None = None             # a fault offered on a chosen target: the one it runs
    chaos: bool = False                 # `pgha-lab chaos NAME`, and the dashboard's /api/chaos
    buttons: tuple[Button, ...] = ()    # the dashboard's buttons for it (a chaos fault without any is API only)
    drill: Drill | None = None
    campaign: Campaign | None = None
