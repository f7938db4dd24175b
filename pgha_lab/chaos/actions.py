"""VM failures simulated with Docker and iptables, each paired with what the cluster should do next.

kill = power cut, pause = frozen VM, stop/start = clean shutdown and boot, isolate/heal = the
cable pulled and plugged back, kill-postgres = the postmaster dies while Patroni lives, partition =
a partial cut with iptables inside the node, degrade = packet loss (iptables' statistic match), a
slow link (--rate: tc tbf on the node's own traffic, an htb class for it on its db and etcd peers)
or delay (tc netem, where the kernel has it). freeze-patroni/thaw-patroni = SIGSTOP/SIGCONT to Patroni
alone, hang-postgres/release-postgres = SIGSTOP/SIGCONT to the postmaster and every backend,
kill-haproxy/start-haproxy = the single entry point down and back (with two HAProxy nodes, either
one, and the VIP moves to the other: vip/), flap = a partition toggled every
N seconds for M seconds, fill-disk/free-disk = a db node's own data disk filled by a file and
freed (disks.py; a lab made with `up --disk-size`), cancel-sync-wait and block-switchover = the
two experiments of chaos/experiments.py. Every request is checked first; an impossible one is refused with a reason
and changes nothing.
"""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pgha_lab import disks
from pgha_lab.chaos import expectations, experiments
from pgha_lab.chaos import state as cluster_state
from pgha_lab.chaos.sql import PROCS
from pgha_lab.chaos.expectations import Expectation
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.node_paths import PG_DATA
from pgha_lab.probes import Cluster
from pgha_lab.topology import Node, Role, TopologyError
from pgha_lab import vip
from pgha_lab.wait import wait_until

ACTIONS = ("kill", "pause", "resume", "stop", "start", "isolate", "heal", "kill-postgres", "partition", "degrade",
           "freeze-patroni", "thaw-patroni", "hang-postgres", "release-postgres", "kill-haproxy", "start-haproxy",
           "cancel-sync-wait", "block-switchover", "flap", "fill-disk", "free-disk")
# With one HAProxy the target goes without saying; with two, it is haproxy or haproxy2 (default: the
# VIP's holder for a kill, the stopped one for a start).
NO_TARGET = ("kill-haproxy", "start-haproxy")
DB_ONLY = ("kill-postgres", "freeze-patroni", "thaw-patroni", "hang-postgres", "release-postgres",
           "cancel-sync-wait", "block-switchover", "fill-disk", "free-disk")
DISK_ACTIONS = ("fill-disk", "free-disk")
NO_OWN_DISK = ("this lab's db nodes keep their data in Docker volumes on the host's disk, so filling one would fill "
               "the host's; give each db node its own disk: `pgha-lab down --volumes`, then "
               "`pgha-lab up --disk-size 2G`")
# Cut inside the node with iptables/tc, which the HAProxy image (Ubuntu's haproxy package alone) lacks.
IN_NODE_NETWORK = ("partition", "degrade", "flap")
CHAIN_IN, CHAIN_OUT = "PGHA_CHAOS_IN", "PGHA_CHAOS_OUT"      # partitions
LOSS_IN, LOSS_OUT = "PGHA_LOSS_IN", "PGHA_LOSS_OUT"          # random loss
ALL_CHAINS = ((CHAIN_IN, "INPUT"), (CHAIN_OUT, "OUTPUT"), (LOSS_IN, "INPUT"), (LOSS_OUT, "OUTPUT"))


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


def parse_loss(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*%?\s*", text)
    if not m or not 0 < float(m.group(1)) < 100:
        raise LabError(f"--loss takes a percentage between 0 and 100 such as 10%, not {text!r}.")
    return float(m.group(1)) / 100


RATE_UNITS = {"kbit": 1_000, "mbit": 1_000_000, "gbit": 1_000_000_000}
MIN_RATE, MAX_RATE = 64_000, 1_000_000_000


def parse_rate(text: str) -> int:
    """tc's own spelling (512kbit, 2mbit): bits a second."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(kbit|mbit|gbit)\s*", text.lower())
    bits = int(float(m.group(1)) * RATE_UNITS[m.group(2)]) if m else 0
    if not MIN_RATE <= bits <= MAX_RATE:
        raise LabError(f"--rate takes a link speed from 64kbit to 1gbit such as 2mbit, not {text!r}.")
    return bits


def human_rate(bits: int) -> str:
    return f"{bits / 1e6:.3g} Mbit/s" if bits >= 1_000_000 else f"{bits / 1e3:.3g} kbit/s"


def slow_rate(qdiscs: str) -> int | None:
    """The rate of a --rate slow link in `tc qdisc show` output (the node's own tbf), or None."""
    m = re.search(r"^qdisc tbf .* rate (\S+)", qdiscs, re.MULTILINE)
    return parse_rate(m.group(1)) if m else None


def _burst_bytes(bits: int) -> int:
    # tbf needs at least a timer tick's worth of bytes; 20 ms of the rate, and never under 16 KiB.
    return max(16 * 1024, bits // 8 // 50)


def parse_delay(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9]+)\s*ms\s*", text)
    if not m or not 0 < int(m.group(1)) <= 10000:
        raise LabError(f"--delay takes milliseconds such as 200ms (at most 10000ms), not {text!r}.")
    return int(m.group(1))


class Chaos:
    """The fault catalogue acting on one lab."""

    def __init__(self, ctx: LabContext) -> None:
        self.ctx = ctx
        self.topo = ctx.topology
        self.ctl = ctx.docker

    # -- targets and roles -----------------------------------------------------------------
    def role_of(self, node: Node, cluster: Cluster | None = None) -> str:
        if node.role is Role.HAPROXY and self.topo.haproxy2 is not None:
            return "VIP holder" if node.name in vip.holders(self.ctx) else "VIP backup"
        if node.role is not Role.DB:
            return node.role.value
        cluster = self.ctx.cluster() if cluster is None else cluster
        return cluster.role_of(node.name)

    def resolve(self, target: str, cluster: Cluster | None = None) -> Node:
        """A node name, or `leader` / `replica` resolved now from Patroni's view (`cluster`, when
        the caller has just read it)."""
        if target in ("leader", "replica"):
            cluster = self.ctx.cluster() if cluster is None else cluster
            if target == "leader":
                if cluster.leader is None:
                    raise LabError("there is no leader right now to target; `pgha-lab status` shows the cluster.")
                return self.topo.node(cluster.leader.name)
            replicas = [m for m in cluster.replicas if m.role.is_replica]
            if not replicas:
                raise LabError("there is no replica right now to target; `pgha-lab status` shows the cluster.")
            return self.topo.node(replicas[0].name)
        try:
            return self.topo.node(target)
        except TopologyError as exc:
            raise LabError(f"{exc} (or `leader` / `replica`)") from None

    def _haproxy_target(self, action: str, target: str | None) -> str:
        topo = self.topo
        names = [n.name for n in topo.haproxies]
        if topo.haproxy2 is None:
            if target in (None, "", topo.haproxy.name):
                return topo.haproxy.name
            if target == f"{topo.prefix}haproxy2":
                raise LabError(vip.ONE_HAPROXY)
            raise LabError(f"{action} takes no target (or {topo.haproxy.name}): the lab has one HAProxy.")
        if target in names:
            return target
        if target:
            raise LabError(f"{action} takes {' or '.join(names)} (or no target), not {target!r}.")
        if action == "kill-haproxy":   # the fault worth drilling: the VIP's holder
            return next(iter(vip.holders(self.ctx)), topo.haproxy.name)
        return next((n for n in names if not self.ctl.state(topo.node(n)).running), topo.haproxy.name)

    # -- the faults ------------------------------------------------------------------------
    def run(self, action: str, target: str, *, peers: str | None = None, clear: bool = False,
            loss: str | None = None, delay: str | None = None, rate: str | None = None, every: float | None = None,
            duration: float | None = None, leave: str | None = None) -> Outcome:
        if action not in ACTIONS:
            raise LabError(f"unknown chaos action {action!r}; choose one of: {', '.join(ACTIONS)}, heal-all.")
        if action in NO_TARGET:   # refused before anything is read or changed
            target = self._haproxy_target(action, target)
        if action in DISK_ACTIONS:
            self._need(self.topo.db_disk_size is not None, NO_OWN_DISK)
        cluster = self.ctx.cluster()   # one reading: the target and its role come from the same view
        node = self.resolve(target or "", cluster)
        role = self.role_of(node, cluster)
        state = self.ctl.state(node)
        if state.status == "missing":
            raise LabError(f"{node.name} has no container; start the lab with `pgha-lab up`.")
        if action in DB_ONLY:
            self._need(node.role is Role.DB, f"{node.name} runs no PostgreSQL or Patroni; {action} takes a db node")
        if action in IN_NODE_NETWORK:
            self._need(node.role is not Role.HAPROXY,
                       f"{node.name} has no iptables or tc inside to {action} it with; cut it whole with `chaos "
                       f"isolate {node.name}`, or cut a db node off from it with `chaos partition DBNODE --from "
                       f"{node.name}`")
        figures: dict[str, Any] = {}
        expectation: Expectation | None = None
        # The state that decides what follows, read before the fault changes it (the settings and
        # the /sync key may not be readable afterwards, e.g. with every db node down).
        before = cluster_state.read(self.ctx, cluster) if node.role is not Role.HAPROXY else None
        if action == "kill":
            self._need(state.status in ("running", "paused"), f"{node.name} is {state.status}; there is nothing to power off")
            self.ctl.kill(node)
            done = f"{node.name} powered off (SIGKILL to every process, no clean shutdown)"
        elif action == "pause":
            self._need(state.running, f"{node.name} is {state.status}, not running; only a running node can freeze")
            self.ctl.pause(node)
            done = f"{node.name} frozen (every process stopped, connections left hanging)"
        elif action == "resume":
            self._need(state.status == "paused", f"{node.name} is not paused (it is {state.status}); nothing to resume")
            self.ctl.unpause(node)
            done = f"{node.name} thawed"
        elif action == "stop":
            self._need(state.running, f"{node.name} is {state.status}, not running; nothing to shut down")
            self.ctl.stop(node)
            done = (f"{node.name} shut down cleanly: systemd stopped every unit in order" if self.topo.bare
                    else f"{node.name} shut down cleanly (SIGTERM, then the grace period)")
        elif action == "start":
            self._need(state.status in ("exited", "created"), f"{node.name} is {state.status}; only a stopped or killed node can boot")
            self.ctl.start(node)
            done = f"{node.name} booted"
        elif action == "isolate":
            self._need(state.running, f"{node.name} is {state.status}; isolate needs a running node")
            self._need(state.on_lab_network, f"{node.name} is already isolated; `heal` plugs it back")
            self.ctl.disconnect(node)
            done = f"{node.name}'s cable pulled: it is off the lab network"
        elif action == "heal":
            self._need(state.status in ("running", "paused"), f"{node.name} is {state.status}; start it instead")
            self._need(not state.on_lab_network, f"{node.name} is not isolated; nothing to heal")
            self.ctl.connect(node, str(node.address))
            done = f"{node.name}'s cable plugged back at {node.address}"
        elif action == "kill-postgres":
            self._need(state.running, f"{node.name} is {state.status}, not running")
            pid = self._postmaster_pid(node)
            self.ctl.exec(node, "kill", "-KILL", str(pid))
            done = f"{node.name}'s postmaster (pid {pid}) killed; Patroni keeps running"
        elif action == "partition":
            self._need(state.running, f"{node.name} is {state.status}; a partition needs a running node")
            if clear:
                self._flush(node, (CHAIN_IN, CHAIN_OUT))
                done = f"{node.name}'s partition cleared"
            else:
                cut = self.peers(node, peers)
                self._cut(node, cut)
                done = f"{node.name} cut off from {', '.join(n.name for n in cut)} (iptables DROP both ways)"
        elif action in ("freeze-patroni", "thaw-patroni"):
            self._need(state.running, f"{node.name} is {state.status}, not running")
            pid = self._patroni_pid(node)
            frozen = self._stopped(node, [pid])
            if action == "freeze-patroni":
                self._need(not frozen, f"Patroni on {node.name} is already frozen; `thaw-patroni {node.name}` thaws it")
                expectation = expectations.expectation_for(self.ctx, action, node, role, cluster, before=before)
                self.ctl.exec(node, "kill", "-STOP", str(pid))
                done = f"Patroni on {node.name} (pid {pid}) frozen with SIGSTOP; PostgreSQL keeps running"
            else:
                self._need(frozen, f"Patroni on {node.name} is not frozen; nothing to thaw")
                self.ctl.exec(node, "kill", "-CONT", str(pid))
                done = f"Patroni on {node.name} (pid {pid}) thawed with SIGCONT"
        elif action in ("hang-postgres", "release-postgres"):
            self._need(state.running, f"{node.name} is {state.status}, not running")
            pids = self._postgres_pids(node)
            hung = self._stopped(node, pids[:1])
            if action == "hang-postgres":
                self._need(not hung, f"PostgreSQL on {node.name} already hangs; `release-postgres {node.name}` releases it")
                expectation = expectations.expectation_for(self.ctx, action, node, role, cluster, before=before)
                self.ctl.exec(node, "kill", "-STOP", *map(str, pids))
                done = (f"PostgreSQL on {node.name} hung: SIGSTOP to the postmaster (pid {pids[0]}) and its "
                        f"{len(pids) - 1} children; Patroni keeps running")
            else:
                self._need(hung, f"PostgreSQL on {node.name} does not hang; nothing to release")
                self.ctl.exec(node, "kill", "-CONT", *map(str, pids))
                done = f"PostgreSQL on {node.name} released: SIGCONT to the postmaster and its {len(pids) - 1} children"
        elif action == "kill-haproxy":
            self._need(state.running, f"{node.name} is {state.status}; there is no HAProxy to kill")
            self.ctl.kill(node)
            done = (f"{node.name} killed: 5432 and 5433 have no listener (the lab's single entry point)"
                    if self.topo.haproxy2 is None else f"{node.name} ({role}) killed, keepalived with it")
        elif action == "start-haproxy":
            self._need(state.status in ("exited", "created"), f"{node.name} is {state.status}; only a killed HAProxy can start")
            self.ctl.start(node)
            done = f"{node.name} started"
        elif action == "cancel-sync-wait":
            self._need(state.running, f"{node.name} is {state.status}, not running")
            self._need(role == "leader", f"{node.name} is {role}; cancel-sync-wait takes the leader (try `leader`)")
            result = experiments.cancel_sync_wait(self.ctx, node)
            done, figures = result.done, result.figures
            expectation = result.expectation
        elif action == "block-switchover":
            self._need(role == "leader", f"{node.name} is {role}; block-switchover takes the leader (try `leader`)")
            result = experiments.block_switchover(self.ctx, node)
            done, figures = result.done, result.figures
            expectation = result.expectation
        elif action == "flap":
            self._need(state.running, f"{node.name} is {state.status}; a flap needs a running node")
            every_s, for_s = experiments.flap_timing(every, duration)
            cut = self.peers(node, peers or "etcd")
            expectation = expectations.expectation_for(self.ctx, action, node, role, cluster, peers=peers, before=before)
            toggles = experiments.flap(lambda: self._cut(node, cut), lambda: self._flush(node, (CHAIN_IN, CHAIN_OUT)),
                                       every_s, for_s)
            figures = {"every_s": every_s, "for_s": for_s, "cuts": toggles}
            done = (f"{node.name} cut off from {', '.join(n.name for n in cut)} and reconnected every {every_s:g}s "
                    f"for {for_s:g}s ({toggles} cuts); its links are restored")
        elif action == "fill-disk":
            d = self._disk(node)
            leave_bytes = disks.parse_size(leave, "--leave") if leave else 0
            self._need(d.filler_size() == 0, f"{node.name}'s disk already carries a filler; `free-disk {node.name}` "
                                             f"removes it")
            taken = disks.fill(d, leave_bytes)
            left, size = d.usage()
            figures = {"filled_bytes": taken, "free_bytes": left, "disk_bytes": size}
            done = (f"{node.name}'s disk filled: {disks.FILLER} took {disks.human(taken)}, {disks.human(left)} of "
                    f"{disks.human(size)} left for PostgreSQL")
        elif action == "free-disk":
            d = self._disk(node)
            self._need(d.filler_size() > 0, f"{node.name}'s disk carries no filler; nothing to free")
            freed = disks.free(d)
            figures = {"freed_bytes": freed}
            done = f"{node.name}'s disk freed: the {disks.human(freed)} filler removed"
        else:  # degrade
            self._need(state.running, f"{node.name} is {state.status}; degrade needs a running node")
            done = self._degrade(node, loss, delay, rate, clear)
        if expectation is None:
            expectation = expectations.expectation_for(self.ctx, action, node, role, cluster, peers=peers, clear=clear,
                                                             before=before)
        if self.topo.bare and action in ("start", "start-haproxy"):   # a VM's boot comes first
            expectation = expectations.boots_through_systemd(self.ctx, node, expectation)
        return Outcome(action=action, node=node.name, role_before=role, done=done, expectation=expectation,
                       figures=figures)

    def heal_all(self) -> list[str]:
        """Put every node back: free its disk, thaw, boot, reconnect, and drop every chaos rule. Disks
        and containers first for every node (what clients wait on), then the slower checks inside each
        node; nodes heal independently, so each phase runs on every node at once."""
        nodes = list(self.topo.nodes)
        freed = [f"freed {d.node}'s disk ({disks.human(disks.free(d))} filler removed)"
                 for d in disks.all_disks(self.ctx.paths) if d.filler_size()]
        states = {node.name: self.ctl.state(node) for node in nodes}
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            outside = list(pool.map(lambda n: self._heal_container(n, states[n.name]), nodes))
            inside = list(pool.map(lambda n: self._heal_inside(n) if states[n.name].status != "missing" else [],
                                   nodes))
        return freed + [line for lines in outside + inside for line in lines]

    def _heal_container(self, node: Node, state) -> list[str]:
        actions: list[str] = []
        if state.status == "missing":
            return actions
        if state.status == "paused":
            self.ctl.unpause(node)
            actions.append(f"resumed {node.name}")
        if state.status in ("exited", "created"):
            self.ctl.start(node)
            actions.append(f"started {node.name}")
        if not state.on_lab_network:
            self.ctl.connect(node, str(node.address))
            actions.append(f"reconnected {node.name}")
        return actions

    def _heal_inside(self, node: Node) -> list[str]:
        actions: list[str] = []
        if not self.ctl.state(node).running:
            return actions
        if node.role is Role.DB:
            stopped = self._stopped_pids(node)
            if stopped:   # a frozen Patroni or a hung PostgreSQL
                self.ctl.exec(node, "kill", "-CONT", *map(str, stopped))
                actions.append(f"thawed {len(stopped)} stopped process(es) on {node.name}")
        if self._has_rules(node) or self._has_qdisc(node):
            self._flush(node, [c for c, _ in ALL_CHAINS])
            self._tc(node, "tc qdisc del dev $dev root", check=False)
            actions.append(f"cleared {node.name}'s network faults")
        return actions

    # -- helpers -----------------------------------------------------------------------------
    def _disk(self, node: Node) -> disks.Disk:
        d = disks.disk(self.ctx.paths, node.name)
        self._need(d.mounted, f"{node.name}'s disk is not mounted; `pgha-lab up` mounts it")
        return d

    @staticmethod
    def _need(condition: bool, reason: str) -> None:
        if not condition:
            raise LabError(reason + ".")

    def _postmaster_pid(self, node: Node) -> int:
        proc = self.ctl.exec(node, "head", "-n1", f"{PG_DATA}/postmaster.pid", check=False)
        pid = proc.stdout.strip()
        if proc.returncode != 0 or not pid.isdigit():
            raise LabError(f"PostgreSQL is not running on {node.name}; nothing to kill.")
        return int(pid)

    def _procs(self, node: Node) -> list[tuple[int, int, str, str]]:
        """(pid, parent pid, state letter, name) of every process in the node, read from /proc."""
        out = []
        # Not checked: a process that ends while the scan reads it fails that one awk (the loop's
        # exit status) and leaves every other line as good as before.
        for line in self.ctl.exec(node, "sh", "-c", PROCS, check=False).stdout.splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0].isdigit() and parts[1].isdigit():
                out.append((int(parts[0]), int(parts[1]), parts[2], parts[3]))
        return out

    def _patroni_pid(self, node: Node) -> int:
        # Patroni runs as a Python script: its process name is python3 (or patroni), a child of PID 1.
        procs = self._procs(node)
        for pid, ppid, _, name in procs:
            if ppid == 1 and name in ("patroni", "python3"):
                return pid
        raise LabError(f"Patroni is not running on {node.name}; `pgha-lab status` shows the lab.")

    def _postgres_pids(self, node: Node) -> list[int]:
        """The postmaster first, then its children (backends, walsender, checkpointer...)."""
        postmaster = self._postmaster_pid(node)
        return [postmaster, *(pid for pid, ppid, _, _ in self._procs(node) if ppid == postmaster)]

    def _stopped_pids(self, node: Node) -> list[int]:
        return [pid for pid, _, st, _ in self._procs(node) if st == "T"]

    def _stopped(self, node: Node, pids: list[int]) -> bool:
        return bool(set(pids) & set(self._stopped_pids(node)))

    def peers(self, node: Node, spec: str | None) -> list[Node]:
        """--from etcd | NODE[,NODE...]: the nodes to cut `node` off from."""
        if not spec:
            raise LabError("partition needs --from etcd or --from NODE[,NODE] (or --clear).")
        out: list[Node] = []
        for part in spec.split(","):
            part = part.strip()
            if part == "etcd":
                out.extend(self.topo.etcd)
            else:
                out.append(self.resolve(part))
        out = [n for n in dict.fromkeys(out) if n != node]
        if not out:
            raise LabError(f"--from {spec} leaves no node to cut {node.name} off from.")
        return out

    def _ensure_chains(self, node: Node) -> None:
        script = "; ".join(
            f"iptables -w -N {chain} 2>/dev/null; iptables -w -C {hook} -j {chain} 2>/dev/null || iptables -w -I {hook} -j {chain}"
            for chain, hook in ALL_CHAINS)
        self.ctl.exec(node, "sh", "-c", script)

    def _rules(self, node: Node, chain: str) -> list[str]:
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

    def _has_rules(self, node: Node) -> bool:
        # One `iptables -S` for every chain: a docker exec costs more than the listing.
        proc = self.ctl.exec(node, "iptables", "-w", "-S", check=False)
        chains = tuple(f"-A {c} " for c, _ in ALL_CHAINS)
        return proc.returncode == 0 and any(line.startswith(chains) for line in proc.stdout.splitlines())

    def _has_qdisc(self, node: Node) -> bool:
        """A --rate or --delay left on the node's lab interface (tbf/htb, or netem where the kernel has it)."""
        return any(f"qdisc {q} " in self._qdiscs(node) for q in ("tbf", "htb", "netem"))

    def _flush(self, node: Node, chains) -> None:
        for chain in chains:
            self.ctl.exec(node, "iptables", "-w", "-F", chain, check=False)

    def _cut(self, node: Node, peers: list[Node]) -> None:
        self._ensure_chains(node)
        existing = set(self._rules(node, CHAIN_IN))
        for peer in peers:
            if f"-A {CHAIN_IN} -s {peer.address}/32 -j DROP" in existing:
                raise LabError(f"{node.name} is already cut off from {peer.name}; `--clear` restores its links.")
        for peer in peers:
            self.ctl.exec(node, "iptables", "-w", "-A", CHAIN_IN, "-s", str(peer.address), "-j", "DROP")
            self.ctl.exec(node, "iptables", "-w", "-A", CHAIN_OUT, "-d", str(peer.address), "-j", "DROP")

    def netem_available(self, node: Node) -> bool:
        probe = self.ctl.exec(node, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "0ms", check=False)
        if probe.returncode == 0:
            self.ctl.exec(node, "tc", "qdisc", "del", "dev", "lo", "root", check=False)
            return True
        return False

    def _degrade(self, node: Node, loss: str | None, delay: str | None, rate: str | None, clear: bool) -> str:
        if clear:
            self._flush(node, (LOSS_IN, LOSS_OUT))
            self._tc(node, "tc qdisc del dev $dev root", check=False)
            self._shape_peers()
            return f"{node.name}'s packet loss, slow link and delay cleared"
        if not loss and not delay and not rate:
            raise LabError("degrade needs --loss PERCENT, --rate SPEED, --delay MS, or --clear.")
        probability = parse_loss(loss) if loss else None
        delay_ms = parse_delay(delay) if delay else None
        bits = parse_rate(rate) if rate else None
        if bits is not None and delay_ms is not None:
            raise LabError("--rate and --delay both take the node's tc queue; give one, then the other after --clear.")
        if delay_ms is not None and not self.netem_available(node):
            raise LabError("this kernel has no netem (tc qdisc netem), so --delay cannot work here; nothing was changed.")
        if bits is not None and slow_rate(self._qdiscs(node)) is not None:
            raise LabError(f"{node.name} is already on a slow link; `degrade {node.name} --clear` first.")
        if probability is not None and self._rules(node, LOSS_IN):
            raise LabError(f"{node.name} already loses packets; `degrade {node.name} --clear` first.")
        done = []
        if probability is not None:
            self._ensure_chains(node)
            for chain in (LOSS_IN, LOSS_OUT):
                self.ctl.exec(node, "iptables", "-w", "-A", chain, "-m", "statistic", "--mode", "random",
                              "--probability", f"{probability:.4f}", "-j", "DROP")
            done.append(f"{probability:.0%} of packets dropped each way")
        if bits is not None:
            # A sender-side queue: a tbf for what the node sends, and (from _shape_peers) an htb class
            # on every db and etcd node for what they send it, so WAL streamed to it crawls too.
            self._tc(node, f"tc qdisc replace dev $dev root tbf rate {bits}bit burst {_burst_bytes(bits)} latency 100ms")
            self._shape_peers()
            done.append(f"its link to the db and etcd nodes slowed to {human_rate(bits)} each way")
        if delay_ms is not None:
            self._tc(node, f"tc qdisc replace dev $dev root netem delay {delay_ms}ms")
            done.append(f"{delay_ms} ms added to every packet it sends")
        return f"{node.name} degraded: " + ", ".join(done)

    def _queues(self) -> dict[str, str]:
        """`tc qdisc show` of every running db and etcd node, read once for a whole change. HAProxy's
        image has no tc: its checks of a slow node are not slowed."""
        nodes = [n for n in self.topo.nodes if n.role is not Role.HAPROXY and self.ctl.state(n).running]
        return {n.name: self._qdiscs(n) for n in nodes}

    def slow_links(self, queues: dict[str, str] | None = None) -> dict[str, int]:
        """Node -> the rate of its slow link (the tbf --rate put on its own traffic)."""
        rates = {name: slow_rate(q) for name, q in (self._queues() if queues is None else queues).items()}
        return {name: bits for name, bits in rates.items() if bits is not None}

    def _qdiscs(self, node: Node) -> str:
        return self.ctl.exec(node, "tc", "qdisc", "show", check=False).stdout

    def _tc(self, node: Node, *commands: str, check: bool = True):
        """tc commands on the node's lab interface, $dev: eth0 at first, another name after an isolate
        and heal (Docker plugs in a new interface)."""
        find = f"dev=$(ip -o -4 addr show to {node.address}/32 | awk '{{print $2; exit}}'); [ -n \"$dev\" ]"
        return self.ctl.exec(node, "sh", "-c", " && ".join([find, *commands]), check=check)

    def _shape_peers(self) -> None:
        """Rebuild, on every db and etcd node not itself slowed, one htb class per slow node holding
        what it sends there to that node's rate (read back from the slow nodes' own tbf)."""
        queues = self._queues()
        slow = self.slow_links(queues)
        for name, qdiscs in queues.items():
            if name in slow:
                continue
            node = self.topo.node(name)
            if "qdisc htb 1:" in qdiscs:
                self._tc(node, "tc qdisc del dev $dev root", check=False)
            elif "netem" in qdiscs:
                continue   # a --delay owns this node's queue; --rate and --delay are one or the other
            if not slow:
                continue
            script = ["tc qdisc replace dev $dev root handle 1: htb"]
            for i, (slowed, bits) in enumerate(sorted(slow.items()), start=10):
                script += [f"tc class add dev $dev parent 1: classid 1:{i} htb rate {bits}bit ceil {bits}bit",
                           f"tc filter add dev $dev parent 1: protocol ip prio 1 u32 match ip dst "
                           f"{self.topo.node(slowed).address}/32 flowid 1:{i}"]
            self._tc(node, *script)
