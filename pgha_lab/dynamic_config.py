"""Patroni's dynamic configuration (the /service/<scope>/config key `patronictl show-config` and
`edit-config` show), owned here: reading it (GET /config from a member, or the key in etcd, which
stays readable with every db node down), the two diffs a change is made of, and the PATCH that
applies one (what `patronictl edit-config` sends). `up`, lesson reset, the lessons, rolling changes,
the lab settings and the chaos state all go through this module.

It takes the probe and topology (or anything with LabContext's probe, topology and restapi_auth)
rather than a LabContext, whose settings import this module.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from pgha_lab.errors import LabError
from pgha_lab.probes import LabProbe
from pgha_lab.topology import Node, Topology
from pgha_lab.wait import wait_until

DEFAULT_MAX_LAG = 1048576   # Patroni's default maximum_lag_on_failover, 1 MiB
# What Patroni assumes for a key its configuration does not hold.
PATRONI_DEFAULTS: dict[str, Any] = {"synchronous_mode": False, "synchronous_mode_strict": False,
                                    "synchronous_node_count": 1, "failsafe_mode": False,
                                    "maximum_lag_on_failover": DEFAULT_MAX_LAG}
PATCH_TIMEOUT_S = 10.0
WAKE_TIMEOUT_S = 5.0

Config = dict[str, Any]


class Lab(Protocol):
    """What a change needs of the lab (LabContext has it)."""
    @property
    def probe(self) -> LabProbe: ...

    @property
    def topology(self) -> Topology: ...

    @property
    def restapi_auth(self) -> tuple[str, str]: ...


# -- reading ---------------------------------------------------------------------------------------
def key(scope: str) -> str:
    """The etcd key every Patroni of the cluster reads."""
    return f"/service/{scope}/config"


def read_member(probe: LabProbe, node: Node, timeout: float | None = None) -> Config | None:
    """GET /config from one member; None when it does not answer 200 with a document."""
    code, doc = probe.rest(node, "/config") if timeout is None else probe.rest(node, "/config", timeout=timeout)
    return doc if code == 200 and isinstance(doc, dict) else None


def read_first(probe: LabProbe, nodes: Iterable[Node]) -> Config | None:
    """The configuration from the first of `nodes` whose REST API answers; None if none does."""
    for node in nodes:
        doc = read_member(probe, node)
        if doc is not None:
            return doc
    return None


def read_from(probe: LabProbe, node: Node, deadline_s: float = 0.0) -> Config:
    """The configuration `node` answers, asked again for up to `deadline_s` (one slow answer on a
    loaded machine is not a broken lab); LabError naming the node when it never does."""
    answer: list[tuple[int, Any]] = []

    def answered() -> bool:
        answer.append(probe.rest(node, "/config", timeout=5))
        return answer[-1][0] == 200 and isinstance(answer[-1][1], dict)

    if not wait_until(answered, deadline_s, interval_s=1.0).ok:
        raise LabError(f"could not read Patroni's configuration from {node.name} (HTTP {answer[-1][0]}).")
    return answer[-1][1]


def read_stored(probe: LabProbe, scope: str) -> tuple[bool, Config]:
    """(some etcd member answered, the key's document, {} when absent or not JSON)."""
    answered, text = probe.etcd_read(key(scope))
    try:
        doc = json.loads(text) if text else {}
    except ValueError:
        doc = {}
    return answered, doc if isinstance(doc, dict) else {}


def read_any(probe: LabProbe, topology: Topology) -> Config:
    """The key in etcd, else the first db node's answer, else {}: for readers that must see the
    configuration with the db nodes down, or etcd cut off."""
    return read_stored(probe, topology.scope)[1] or read_first(probe, topology.db) or {}


# -- diffs (pure) ----------------------------------------------------------------------------------
def patch_replacing(live: Config, wanted: Config) -> Config:
    """The PATCH body that turns `live` into `wanted`: changed keys set, extra keys nulled (Patroni
    removes a key patched to null, as `patronictl edit-config` does when a line is deleted)."""
    patch: Config = {}
    for name, value in wanted.items():
        have = live.get(name)
        if isinstance(value, dict) and isinstance(have, dict):
            sub = patch_replacing(have, value)
            if sub:
                patch[name] = sub
        elif have != value:
            patch[name] = value
    for name in live:
        if name not in wanted:
            patch[name] = None
    return patch


def patch_merging(live: Config, wanted: Config, defaults: Config | None = None) -> Config:
    """The part of `wanted` that `live` does not hold yet (a key it lacks counts as Patroni's
    default); keys `wanted` does not name are left as they are."""
    defaults = PATRONI_DEFAULTS if defaults is None else defaults
    patch: Config = {}
    for name, value in wanted.items():
        have = live.get(name, defaults.get(name))
        if isinstance(value, dict):
            sub = patch_merging(have if isinstance(have, dict) else {}, value, {})
            if sub:
                patch[name] = sub
        elif have != value:
            patch[name] = value
    return patch


# -- changing --------------------------------------------------------------------------------------
def leader_node(lab: Lab) -> Node | None:
    name = lab.probe.cluster().leader_name
    return lab.topology.node(name) if name else None


def send(lab: Lab, node: Node, patch: Config, refused: str, timeout: float = PATCH_TIMEOUT_S) -> None:
    """PATCH /config through `node`; LabError `refused` (with {why}: Patroni's answer) when refused."""
    r = lab.probe.rest_change(node, "PATCH", "/config", patch, lab.restapi_auth, timeout=timeout)
    if r.status_code != 200:
        raise LabError(refused.format(why=r.text.strip() or r.status_code))


def change(lab: Lab, diff: Callable[[Config], Config], refused: str, *, no_leader: str | None = None,
           wake_all: bool = False, read_deadline_s: float = 0.0) -> tuple[Config, Config]:
    """Read the configuration through the leader (with none, through the first db node, or
    LabError `no_leader` when given), PATCH what `diff` of it says, and with `wake_all` send the same PATCH to every
    other member: Patroni runs a member's HA loop at once on any PATCH /config it receives, so each
    reads the change now rather than after its current loop_wait. (The patch sent, the configuration
    it was computed from.)"""
    node = leader_node(lab)
    if node is None:
        if no_leader is not None:
            raise LabError(no_leader)
        node = lab.topology.db[0]
    live = read_from(lab.probe, node, read_deadline_s)
    patch = diff(live)
    if not patch:
        return {}, live
    send(lab, node, patch, refused)
    if wake_all:
        for other in lab.topology.db:
            if other.name != node.name:
                try:
                    lab.probe.rest_change(other, "PATCH", "/config", patch, lab.restapi_auth, timeout=WAKE_TIMEOUT_S)
                except LabError:
                    pass   # a member that does not answer reads the change on its own next loop
    return patch, live
