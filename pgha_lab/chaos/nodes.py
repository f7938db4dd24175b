"""What a node carries, read inside it: its processes (Patroni, the postmaster and its children, which
ones are stopped), its chaos rules (iptables chains, tc queues) and slow links. Reading only: the
dashboard asks it every few seconds without building a Chaos, and the faults read through it before
they change anything."""
from __future__ import annotations

import re
from dataclasses import dataclass

from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.node_paths import PG_DATA
from pgha_lab.topology import Node, Role

# One line per process of the node: pid, parent pid, state letter, name (from /proc: the images
# carry no procps). One cat and one awk in all, not an awk a process: the reading runs often. cat
# goes on past a process that ends while it reads (mawk would stop there); each status file starts
# with its Name line, which closes the record before it.
PROCS = r"""cat /proc/[0-9]*/status 2>/dev/null | awk '
  /^Name:/ {if (p != "") print p, pp, s, n; n=$2; p=""}
  /^State:/ {s=$2} /^Pid:/ {p=$2} /^PPid:/ {pp=$2}
  END {if (p != "") print p, pp, s, n}'"""
# What heal-all and the cluster state read of a node, in one exec: its processes, every iptables
# rule, its tc queues.
RULES_MARK, QDISCS_MARK = "@@pgha-rules@@", "@@pgha-qdiscs@@"
INSIDE = f"{PROCS}; echo {RULES_MARK}; iptables -w -S 2>/dev/null; echo {QDISCS_MARK}; tc qdisc show 2>/dev/null"

CHAIN_IN, CHAIN_OUT = "PGHA_CHAOS_IN", "PGHA_CHAOS_OUT"      # partitions
LOSS_IN, LOSS_OUT = "PGHA_LOSS_IN", "PGHA_LOSS_OUT"          # random loss
ALL_CHAINS = ((CHAIN_IN, "INPUT"), (CHAIN_OUT, "OUTPUT"), (LOSS_IN, "INPUT"), (LOSS_OUT, "OUTPUT"))


def parse_procs(text: str) -> list[tuple[int, int, str, str]]:
    """(pid, parent pid, state letter, name) from PROCS' lines."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0].isdigit() and parts[1].isdigit():
            out.append((int(parts[0]), int(parts[1]), parts[2], parts[3]))
    return out


@dataclass(frozen=True)
class Inside:
    """One reading of a node from inside (INSIDE's output)."""
    procs: list[tuple[int, int, str, str]]
    rules: list[str]   # every `-A CHAIN ...` rule of `iptables -S`
    qdiscs: str        # `tc qdisc show`

    @classmethod
    def parse(cls, text: str) -> Inside:
        procs, _, rest = text.partition(RULES_MARK)
        rules, _, qdiscs = rest.partition(QDISCS_MARK)
        return cls(parse_procs(procs), [r for r in rules.splitlines() if r.startswith("-A ")], qdiscs.strip("\n"))

    def chain(self, name: str) -> list[str]:
        return [r for r in self.rules if r.startswith(f"-A {name} ")]

    @property
    def stopped_pids(self) -> list[int]:
        return [pid for pid, _, st, _ in self.procs if st == "T"]

    @property
    def has_chaos_rules(self) -> bool:
        return any(self.chain(c) for c, _ in ALL_CHAINS)

    @property
    def has_qdisc(self) -> bool:
        """A --rate or --delay left on the node's lab interface (tbf/htb, or netem where the kernel has it)."""
        return any(f"qdisc {q} " in self.qdiscs for q in ("tbf", "htb", "netem"))


def is_patroni(ppid: int, name: str) -> bool:
    # Patroni runs as a Python script: its process name is python3 (or patroni), a child of PID 1.
    return ppid == 1 and name in ("patroni", "python3")


def dropped_sources(rules: list[str]) -> set[str]:
    """The addresses a partition chain's rules drop (`-A CHAIN -s ADDR/32 -j DROP`, as chaos writes them)."""
    out = set()
    for rule in rules:
        parts = rule.split()
        if len(parts) > 3 and parts[2] == "-s":
            out.add(parts[3].removesuffix("/32"))
    return out


RATE_UNITS = {"kbit": 1_000, "mbit": 1_000_000, "gbit": 1_000_000_000}
MIN_RATE, MAX_RATE = 64_000, 1_000_000_000


def parse_loss(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*%?\s*", text)
    if not m or not 0 < float(m.group(1)) < 100:
        raise LabError(f"--loss takes a percentage between 0 and 100 such as 10%, not {text!r}.")
    return float(m.group(1)) / 100


def parse_rate(text: str) -> int:
    """tc's own spelling (512kbit, 2mbit): bits a second."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(kbit|mbit|gbit)\s*", text.lower())
    bits = int(float(m.group(1)) * RATE_UNITS[m.group(2)]) if m else 0
    if not MIN_RATE <= bits <= MAX_RATE:
        raise LabError(f"--rate takes a link speed from 64kbit to 1gbit such as 2mbit, not {text!r}.")
    return bits


def parse_delay(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9]+)\s*ms\s*", text)
    if not m or not 0 < int(m.group(1)) <= 10000:
        raise LabError(f"--delay takes milliseconds such as 200ms (at most 10000ms), not {text!r}.")
    return int(m.group(1))


def human_rate(bits: int) -> str:
    return f"{bits / 1e6:.3g} Mbit/s" if bits >= 1_000_000 else f"{bits / 1e3:.3g} kbit/s"


def slow_rate(qdiscs: str) -> int | None:
    """The rate of a --rate slow link in `tc qdisc show` output (the node's own tbf), or None."""
    m = re.search(r"^qdisc tbf .* rate (\S+)", qdiscs, re.MULTILINE)
    return parse_rate(m.group(1)) if m else None


class NodeReader:
    """Reads one lab's nodes from inside (docker exec); changes nothing."""

    def __init__(self, ctx: LabContext) -> None:
        self.ctx = ctx
        self.topo = ctx.topology
        self.ctl = ctx.docker

    # -- processes ---------------------------------------------------------------------------
    def postmaster_pid(self, node: Node) -> int:
        proc = self.ctl.exec(node, "head", "-n1", f"{PG_DATA}/postmaster.pid", check=False)
        pid = proc.stdout.strip()
        if proc.returncode != 0 or not pid.isdigit():
            raise LabError(f"PostgreSQL is not running on {node.name}; nothing to kill.")
        return int(pid)

    def procs(self, node: Node) -> list[tuple[int, int, str, str]]:
        """(pid, parent pid, state letter, name) of every process in the node, read from /proc. Not
        checked: a pipeline's status is awk's, and a process gone mid-scan leaves the others' lines."""
        return parse_procs(self.ctl.exec(node, "sh", "-c", PROCS, check=False).stdout)

    def inside(self, node: Node) -> Inside:
        """Processes, chaos rules and queues in one exec (a docker exec costs more than the three listings)."""
        return Inside.parse(self.ctl.exec(node, "sh", "-c", INSIDE, check=False, timeout=10).stdout)

    def patroni_pid(self, node: Node) -> int:
        for pid, ppid, _, name in self.procs(node):
            if is_patroni(ppid, name):
                return pid
        raise LabError(f"Patroni is not running on {node.name}; `pgha-lab status` shows the lab.")

    def postgres_pids(self, node: Node) -> list[int]:
        """The postmaster first, then its children (backends, walsender, checkpointer...)."""
        postmaster = self.postmaster_pid(node)
        return [postmaster, *(pid for pid, ppid, _, _ in self.procs(node) if ppid == postmaster)]

    def stopped(self, node: Node, pids: list[int]) -> bool:
        return any(st == "T" and pid in pids for pid, _, st, _ in self.procs(node))

    # -- network faults ----------------------------------------------------------------------
    def rules(self, node: Node, chain: str) -> list[str]:
        proc = self.ctl.exec(node, "iptables", "-w", "-S", chain, check=False)
        return [line for line in proc.stdout.splitlines() if line.startswith("-A ")] if proc.returncode == 0 else []

    def network_faults(self, node: Node) -> set[str]:
        """The chaos rules a running node carries, read in one exec: "partitioned" (a cut from peers),
        "degraded" (random loss) and/or "slow link" (--rate); empty when there are none or the node
        cannot be asked."""
        proc = self.ctl.exec(node, "sh", "-c", "iptables -w -S; tc qdisc show", check=False, timeout=10)
        faults = set()
        for line in proc.stdout.splitlines():
            if line.startswith((f"-A {CHAIN_IN} ", f"-A {CHAIN_OUT} ")):
                faults.add("partitioned")
            elif line.startswith((f"-A {LOSS_IN} ", f"-A {LOSS_OUT} ")):
                faults.add("degraded")
        if slow_rate(proc.stdout) is not None:
            faults.add("slow link")
        return faults

    def qdiscs(self, node: Node) -> str:
        return self.ctl.exec(node, "tc", "qdisc", "show", check=False).stdout

    def queues(self) -> dict[str, str]:
        """`tc qdisc show` of every running db and etcd node, read once for a whole change. HAProxy
        nodes are left out: no network fault goes inside one (its image has tc but no iptables)."""
        nodes = [n for n in self.topo.nodes if n.role is not Role.HAPROXY and self.ctl.state(n).running]
        return {n.name: self.qdiscs(n) for n in nodes}

    def slow_links(self, queues: dict[str, str] | None = None) -> dict[str, int]:
        """Node -> the rate of its slow link (the tbf --rate put on its own traffic)."""
        rates = {name: slow_rate(q) for name, q in (self.queues() if queues is None else queues).items()}
        return {name: bits for name, bits in rates.items() if bits is not None}

    def netem_available(self, node: Node) -> bool:
        # A probe on lo, removed at once: the only way to ask the kernel whether netem loads.
        probe = self.ctl.exec(node, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "0ms", check=False)
        if probe.returncode == 0:
            self.ctl.exec(node, "tc", "qdisc", "del", "dev", "lo", "root", check=False)
            return True
        return False
