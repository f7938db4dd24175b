"""Docker-level control of one lab node: its container state, and commands run inside it."""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from pgha_lab.errors import LabError
from pgha_lab.topology import Node, Topology


@dataclass(frozen=True)
class ContainerState:
    status: str            # running, paused, exited, created, restarting, or "missing"
    on_lab_network: bool

    @property
    def running(self) -> bool:
        return self.status == "running"


class NodeControl:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo

    def container(self, node: Node) -> str:
        return self.topo.container_name(node)

    def state(self, node: Node) -> ContainerState:
        proc = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}} {{json .NetworkSettings.Networks}}",
                               self.container(node)], capture_output=True, text=True)
        if proc.returncode != 0:
            return ContainerState("missing", False)
        status, _, nets = proc.stdout.strip().partition(" ")
        return ContainerState(status, self.topo.network_name in (json.loads(nets or "{}") or {}))

    def docker(self, *args: str, timeout: float = 120) -> str:
        proc = _run(["docker", *args], timeout, f"docker {args[0]}")
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise LabError(f"docker {args[0]} failed: {last[0]}")
        return proc.stdout

    def exec(self, node: Node, *cmd: str, check: bool = True, user: str | None = None) -> subprocess.CompletedProcess:
        args = ["docker", "exec", *(["-u", user] if user else []), self.container(node), *cmd]
        proc = _run(args, 60, f"`{' '.join(cmd)}` on {node.name}")
        if check and proc.returncode != 0:
            raise LabError(f"`{' '.join(cmd)}` failed on {node.name}: {(proc.stderr or proc.stdout).strip()[:300]}")
        return proc


def _run(args: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"{what} did not finish within {timeout:.0f}s; the engine or the node is stuck.") from None
