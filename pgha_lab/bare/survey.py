"""What a bare node holds and runs, read inside it the way one would look at a fresh VM: systemd's
state, the role's service unit (enabled? active?) and whether its configuration exists yet. One
`docker exec` per node; the judgement over the readings (`booted`, `services_started`) is pure."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pgha_lab import node_paths
from pgha_lab.context import LabContext
from pgha_lab.topology import Node, Role
from pgha_lab.wait import Verdict

# The service each role runs once configured, as the playbook (and the course) names its unit, and
# what says it is configured: a file only the builder writes (Ubuntu's own haproxy.cfg has no listener).
UNITS = {Role.ETCD: "etcd.service", Role.DB: "patroni.service", Role.HAPROXY: "haproxy.service"}
CONFIGURED = {
    Role.ETCD: (f"test -s {node_paths.ETCD_CONFIG}", f"no {node_paths.ETCD_CONFIG}"),
    Role.DB: (f"test -x {node_paths.PATRONI_VENV}/bin/patroni && test -s {node_paths.PATRONI_CONFIG}",
              f"no Patroni in {node_paths.PATRONI_VENV} or no {node_paths.PATRONI_CONFIG}"),
    Role.HAPROXY: (f"grep -Eq '^(listen|frontend) ' {node_paths.HAPROXY_CONFIG}",
                   f"no listener in {node_paths.HAPROXY_CONFIG}"),
}
NOT_CONFIGURED = "not configured yet"


@dataclass(frozen=True)
class NodeReading:
    node: str
    container: str                 # running, exited, paused, missing ...
    system: str = ""               # systemctl is-system-running: running, starting, degraded, offline ...
    unit: str = ""
    enabled: str = ""              # enabled, disabled, not installed
    active: str = ""               # active, inactive, failed, activating ...
    configured: bool = False
    missing: str = ""              # what says it is not configured
    failed_units: tuple[str, ...] = field(default_factory=tuple)

    def text(self) -> str:
        if self.container != "running":
            return f"{self.node}: {self.container}"
        where = f"{self.node}: systemd {self.system or 'not answering'}"
        if self.failed_units:
            where += f" (failed: {', '.join(self.failed_units)})"
        conf = "configured" if self.configured else f"{NOT_CONFIGURED} ({self.missing})"
        return f"{where}; {self.unit} {self.enabled}, {self.active}; {conf}"


def _script(node: Node) -> str:
    unit = UNITS[node.role]
    test, _ = CONFIGURED[node.role]
    # Each line is key=value; a unit file systemd does not know has no enabled state at all.
    return "; ".join([
        "echo system=$(systemctl is-system-running 2>/dev/null)",
        f"echo enabled=$(systemctl is-enabled {unit} 2>/dev/null)",
        f"echo active=$(systemctl is-active {unit} 2>/dev/null)",
        "echo failed=$(systemctl list-units --failed --plain --no-legend 2>/dev/null | awk '{print $1}' | paste -sd,)",
        f"if {test}; then echo configured=yes; else echo configured=no; fi",
    ])


def _enabled(answer: str) -> str:
    # systemctl is-enabled says not-found (or nothing) for a unit file nobody has written yet.
    return "no unit file" if answer in ("", "not-found") else answer


def parse(node: Node, container: str, output: str) -> NodeReading:
    """A node's reading from the script's key=value lines."""
    values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    return NodeReading(node=node.name, container=container, system=values.get("system", ""), unit=UNITS[node.role],
                       enabled=_enabled(values.get("enabled", "")), active=values.get("active") or "unknown",
                       configured=values.get("configured") == "yes", missing=CONFIGURED[node.role][1],
                       failed_units=tuple(u for u in values.get("failed", "").split(",") if u))


def read_node(ctx: LabContext, node: Node, container: str | None = None) -> NodeReading:
    container = container or ctx.docker.state(node).status
    if container != "running":
        return NodeReading(node.name, container, unit=UNITS[node.role], missing=CONFIGURED[node.role][1])
    proc = ctx.docker.exec(node, "sh", "-c", _script(node), check=False, timeout=30)
    return parse(node, container, proc.stdout)


def read(ctx: LabContext) -> list[NodeReading]:
    """Every node of the lab, in topology order, read side by side."""
    nodes = list(ctx.topology.nodes)
    states = ctx.docker.states(nodes)
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        return list(pool.map(lambda n: read_node(ctx, n, states[n.name].status), nodes))


# -- judgements -------------------------------------------------------------------------------------
def booted(readings: list[NodeReading]) -> Verdict:
    """Every node's systemd has finished booting with nothing failed (`running`)."""
    for r in readings:
        if r.container != "running":
            return Verdict(False, f"{r.node} is {r.container}", r.node)
        if r.system != "running":
            failed = f": {', '.join(r.failed_units)} failed" if r.failed_units else ""
            return Verdict(False, f"systemd on {r.node} is {r.system or 'not answering yet'}{failed}", r.node)
    return Verdict(True, f"systemd running on {len(readings)} nodes")


def services_started(readings: list[NodeReading]) -> Verdict:
    """Every node's service that is enabled at boot is active (what a booted, configured node shows)."""
    for r in readings:
        if r.enabled == "enabled" and r.active != "active":
            return Verdict(False, f"{r.unit} is enabled on {r.node} but {r.active}", r.node)
    return Verdict(True, "every enabled service is active")


def configured(readings: list[NodeReading]) -> bool:
    """The cluster was built: every node's service is configured and enabled at boot."""
    return all(r.configured and r.enabled == "enabled" for r in readings)
