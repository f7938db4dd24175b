"""One module per command group; each exposes register(subparsers) and sets `func` on its parsers.

COMMANDS is the index: every command, the module that registers it and its line of help. The CLI
lists the commands from it without importing a single command module (together they pull in the
drills, the campaign, matplotlib's users and the build, most of a second), and imports only the
module of the command that runs."""
from __future__ import annotations

from pgha_lab.node_paths import PATRONI_CONFIG

COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("doctor", "check Docker, Compose, disk, registry and the lab images"),
    "build": ("build", "build the Ubuntu 24.04 node images (etcd, dbnode, haproxy)"),
    "up": ("lifecycle", "build missing or out-of-date images, then start the lab and wait until it is healthy"),
    "down": ("lifecycle", "stop the lab; its data stays unless --volumes"),
    "status": ("status", "every member (Docker's state where Patroni cannot answer), etcd endpoints, HAProxy"),
    "psql": ("nodes", "psql through HAProxy with TLS verified (runs inside the lab: no psql needed here)"),
    "exec": ("nodes", f"run a command in a node, e.g. `pgha-lab exec dbnode1 -- patronictl -c {PATRONI_CONFIG} list`"),
    "logs": ("nodes", "a node's log"),
    "certs": ("certs", "make the lab's CA and certificates when needed (--rotate: always)"),
    "config": ("config", "show the configuration files a node runs"),
    "switchover": ("chaos", "planned: the leader hands over to a replica (patronictl switchover)"),
    "failover": ("chaos", "unplanned: promote a replica even without a healthy leader (patronictl failover)"),
    "chaos": ("chaos", "simulate a VM failure and say what should happen next"),
    "drill": ("drill", "break the cluster under a steady write load and measure what happens"),
    "roll": ("roll", "restart nodes one at a time in the safe order (etcd, replicas, switchover, old leader, "
                     "HAProxy), each back before the next"),
    "dashboard": ("dashboard", "a live web page of the lab: map, write probe, event log, chaos, drills"),
    "lesson": ("lesson", "guided lessons on the live lab: list, show, start, check, hint, solve, reset"),
    "snapshot": ("snapshot", "save and restore the whole lab, as VirtualBox snapshots do"),
    "track": ("track", "build the cluster by hand on a bare lab, step by step, graded on your nodes"),
    "export": ("export", "the lab's cluster as an Ansible project, for its bare nodes or real hosts"),
}


def summary(command: str) -> str:
    """The command's line of help, as `pgha-lab --help` lists it."""
    return COMMANDS[command][1]
