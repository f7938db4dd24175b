"""keepalived configuration for a two-HAProxy lab: VRRP moves the lab's virtual address (the VIP)
to the other HAProxy node when the holder dies or its haproxy process is gone.

haproxy (node 1) is MASTER with the higher priority, haproxy2 BACKUP, as production guides set
them up. Unicast adverts between the two lab addresses (no multicast to depend on), advert_int 1:
the backup takes the VIP after about 3 x advert_int without an advert, and sends gratuitous ARP
so the host and the db nodes send to its MAC from then on.
"""
from __future__ import annotations

from pgha_lab.render.common import RenderedFile, header
from pgha_lab.topology import Node, Topology

FILES = (("keepalived.conf", "/etc/keepalived/keepalived.conf"),)   # host name, container path
ADVERT_INT_S = 1
PRIORITY = {1: 150, 2: 100}   # by HAProxy node number: node 1 holds the VIP whenever it is alive
INTERFACE = "eth0"            # a two-HAProxy lab publishes no ports, so the lab network is the only one
VRID = 51


def failover_bound_s() -> float:
    """How long clients may lack the VIP after its holder dies: the backup declares the master dead
    after 3 adverts plus its skew time (256 - priority)/256 s, then a second of margin for the
    gratuitous ARP and the first connection."""
    return 3 * ADVERT_INT_S + (256 - PRIORITY[2]) / 256 + 1.0


def node_number(topology: Topology, node: Node) -> int:
    return topology.haproxies.index(node) + 1


def render_text(topology: Topology, node: Node) -> str:
    if topology.haproxy2 is None or topology.vip is None:
        raise ValueError("keepalived runs only in a lab with two HAProxy nodes")
    number = node_number(topology, node)
    peer = topology.haproxies[2 - number]
    net = topology.subnet
    return "\n".join([
        "global_defs {",
        f"    router_id {node.name}",
        "    # the check below runs as root, the only user in the node that may read every process",
        "    script_user root",
        "    enable_script_security",
        "}",
        "",
        "# A haproxy process gone (crashed, or killed with the container still up) counts as a fault:",
        "# this node gives the VIP up instead of holding an address nothing answers on. A script, not",
        "# track_process: a container cannot open the kernel's process-event connector that needs.",
        "vrrp_script haproxy_alive {",
        '    script "/usr/bin/pgrep -x haproxy"',
        f"    interval {ADVERT_INT_S}",
        "    fall 2",
        "    rise 1",
        "}",
        "",
        "vrrp_instance lab_vip {",
        f"    state {'MASTER' if number == 1 else 'BACKUP'}",
        f"    interface {INTERFACE}",
        f"    virtual_router_id {VRID}",
        f"    priority {PRIORITY[number]}",
        f"    advert_int {ADVERT_INT_S}",
        f"    unicast_src_ip {node.address}",
        "    unicast_peer {",
        f"        {peer.address}",
        "    }",
        "    virtual_ipaddress {",
        f"        {topology.vip}/{net.prefixlen} dev {INTERFACE}",
        "    }",
        "    track_script {",
        "        haproxy_alive",
        "    }",
        "    # 3 gratuitous ARPs on taking the VIP, and 3 more 2 s later for caches that missed them",
        "    garp_master_delay 2",
        "    garp_master_repeat 3",
        "}",
        "",
    ])


def render(topology: Topology, node: Node) -> list[RenderedFile]:
    text = header("keepalived configuration", topology.project) + render_text(topology, node)
    return [RenderedFile(FILES[0][0], FILES[0][1], text)]
