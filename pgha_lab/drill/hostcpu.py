"""How busy the host's CPUs were while a drill waited for recovery.

A downtime bound is a claim about Patroni, etcd and HAProxy timings. When every CPU of the host is
busy (a laptop compiling, several labs at once), each of them waits for a CPU too, and the measured
downtime says more about the host than about the cluster. The drill therefore reads the kernel's CPU
counters at the fault and at recovery, and judges the bound only when the host had CPU to spare.
Lost writes and split brain do not depend on timing and are judged whatever the load.

The counters are read inside a lab node: containers share the kernel's /proc/stat, and on Docker
Desktop that is the VM the lab runs in, not the machine running pgha-lab.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pgha_lab.errors import LabError

# Above this share of all CPUs' time busy, runnable tasks queue for a CPU and a timing bound is not judged.
SATURATED = 0.9


@dataclass(frozen=True)
class CpuTimes:
    busy: int    # clock ticks spent on anything but idle and iowait, summed over every CPU
    total: int


def parse(stat: str) -> CpuTimes:
    """The aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal ...
    (guest time is already inside user and nice, so it is left out)."""
    for line in stat.splitlines():
        words = line.split()
        if words and words[0] == "cpu":
            ticks = [int(w) for w in words[1:9]]
            idle = ticks[3] + ticks[4]
            return CpuTimes(busy=sum(ticks) - idle, total=sum(ticks))
    raise ValueError("no aggregate cpu line in /proc/stat")


def busy_share(before: CpuTimes | None, after: CpuTimes | None) -> float | None:
    """The share (0-1) of all CPUs' time spent busy between two readings; None when either is missing
    or no tick passed."""
    if before is None or after is None or after.total <= before.total:
        return None
    return max(0.0, min(1.0, (after.busy - before.busy) / (after.total - before.total)))


def read(docker: Any, nodes: Iterable[Any]) -> CpuTimes | None:
    """The counters as seen from the first node that answers (a fault may have stopped or paused some);
    None when none does."""
    for node in nodes:
        try:
            proc = docker.exec(node, "cat", "/proc/stat", check=False, timeout=10)
        except LabError:
            continue
        if proc.returncode == 0:
            try:
                return parse(proc.stdout)
            except ValueError:
                return None
    return None
