"""The network faults made inside a node: partitions (iptables DROP both ways), random loss
(iptables' statistic match), a slow link (tc tbf on the node's own traffic and an htb class for it
on its db and etcd peers) and delay (tc netem, where the kernel has it)."""
from __future__ import annotations

from pgha_lab.chaos.nodes import (
    ALL_CHAINS,
    CHAIN_IN,
    CHAIN_OUT,
    LOSS_IN,
    LOSS_OUT,
    NodeReader,
    dropped_sources,
    human_rate,
    parse_delay,
    parse_loss,
    parse_rate,
    slow_rate,
)
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.topology import Node


def _burst_bytes(bits: int) -> int:
    # tbf needs at least a timer tick's worth of bytes; 20 ms of the rate, and never under 16 KiB.
    return max(16 * 1024, bits // 8 // 50)


class Network:
    """Cuts and shapes one lab's links from inside its nodes."""

    def __init__(self, ctx: LabContext, reader: NodeReader | None = None) -> None:
        self.ctx = ctx
        self.topo = ctx.topology
        self.ctl = ctx.docker
        self.read = reader or NodeReader(ctx)

    def ensure_chains(self, node: Node) -> None:
        script = "; ".join(
            f"iptables -w -N {chain} 2>/dev/null; "
            f"iptables -w -C {hook} -j {chain} 2>/dev/null || iptables -w -I {hook} -j {chain}"
            for chain, hook in ALL_CHAINS)
        self.ctl.exec(node, "sh", "-c", script)

    def flush(self, node: Node, chains) -> None:
        for chain in chains:
            self.ctl.exec(node, "iptables", "-w", "-F", chain, check=False)

    def cut(self, node: Node, peers: list[Node]) -> None:
        self.ensure_chains(node)
        existing = dropped_sources(self.read.rules(node, CHAIN_IN))
        for peer in peers:
            if str(peer.address) in existing:
                raise LabError(f"{node.name} is already cut off from {peer.name}; `--clear` restores its links.")
        for peer in peers:
            self.ctl.exec(node, "iptables", "-w", "-A", CHAIN_IN, "-s", str(peer.address), "-j", "DROP")
            self.ctl.exec(node, "iptables", "-w", "-A", CHAIN_OUT, "-d", str(peer.address), "-j", "DROP")

    def uncut(self, node: Node) -> None:
        self.flush(node, (CHAIN_IN, CHAIN_OUT))

    def clear_all(self, node: Node) -> None:
        """Every chaos rule and queue of the node gone (heal-all)."""
        self.flush(node, [c for c, _ in ALL_CHAINS])
        self.tc(node, "tc qdisc del dev $dev root", check=False)

    def degrade(self, node: Node, loss: str | None, delay: str | None, rate: str | None, clear: bool) -> str:
        if clear:
            self.flush(node, (LOSS_IN, LOSS_OUT))
            self.tc(node, "tc qdisc del dev $dev root", check=False)
            self.shape_peers()
            return f"{node.name}'s packet loss, slow link and delay cleared"
        if not loss and not delay and not rate:
            raise LabError("degrade needs --loss PERCENT, --rate SPEED, --delay MS, or --clear.")
        probability = parse_loss(loss) if loss else None
        delay_ms = parse_delay(delay) if delay else None
        bits = parse_rate(rate) if rate else None
        if bits is not None and delay_ms is not None:
            raise LabError("--rate and --delay both take the node's tc queue; give one, then the other after --clear.")
        if delay_ms is not None and not self.read.netem_available(node):
            raise LabError("this kernel has no netem (tc qdisc netem), so --delay cannot work here; nothing was "
                           "changed.")
        if bits is not None and slow_rate(self.read.qdiscs(node)) is not None:
            raise LabError(f"{node.name} is already on a slow link; `degrade {node.name} --clear` first.")
        if probability is not None and self.read.rules(node, LOSS_IN):
            raise LabError(f"{node.name} already loses packets; `degrade {node.name} --clear` first.")
        done = []
        if probability is not None:
            self.ensure_chains(node)
            for chain in (LOSS_IN, LOSS_OUT):
                self.ctl.exec(node, "iptables", "-w", "-A", chain, "-m", "statistic", "--mode", "random",
                              "--probability", f"{probability:.4f}", "-j", "DROP")
            done.append(f"{probability:.0%} of packets dropped each way")
        if bits is not None:
            # A sender-side queue: a tbf for what the node sends, and (from shape_peers) an htb class
            # on every db and etcd node for what they send it, so WAL streamed to it crawls too.
            self.tc(node, f"tc qdisc replace dev $dev root tbf rate {bits}bit burst {_burst_bytes(bits)} latency 100ms")
            self.shape_peers()
            done.append(f"its link to the db and etcd nodes slowed to {human_rate(bits)} each way")
        if delay_ms is not None:
            self.tc(node, f"tc qdisc replace dev $dev root netem delay {delay_ms}ms")
            done.append(f"{delay_ms} ms added to every packet it sends")
        return f"{node.name} degraded: " + ", ".join(done)

    def tc(self, node: Node, *commands: str, check: bool = True):
        """tc commands on the node's lab interface, $dev: eth0 at first, another name after an isolate
        and heal (Docker plugs in a new interface)."""
        find = f"dev=$(ip -o -4 addr show to {node.address}/32 | awk '{{print $2; exit}}'); [ -n \"$dev\" ]"
        return self.ctl.exec(node, "sh", "-c", " && ".join([find, *commands]), check=check)

    def shape_peers(self) -> None:
        """Rebuild, on every db and etcd node not itself slowed, one htb class per slow node holding
        what it sends there to that node's rate (read back from the slow nodes' own tbf)."""
        queues = self.read.queues()
        slow = self.read.slow_links(queues)
        for name, qdiscs in queues.items():
            if name in slow:
                continue
            node = self.topo.node(name)
            if "qdisc htb 1:" in qdiscs:
                self.tc(node, "tc qdisc del dev $dev root", check=False)
            elif "netem" in qdiscs:
                continue   # a --delay owns this node's queue; --rate and --delay are one or the other
            if not slow:
                continue
            script = ["tc qdisc replace dev $dev root handle 1: htb"]
            for i, (slowed, bits) in enumerate(sorted(slow.items()), start=10):
                script += [f"tc class add dev $dev parent 1: classid 1:{i} htb rate {bits}bit ceil {bits}bit",
                           f"tc filter add dev $dev parent 1: protocol ip prio 1 u32 match ip dst "
                           f"{self.topo.node(slowed).address}/32 flowid 1:{i}"]
            self.tc(node, *script)
