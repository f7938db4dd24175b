"""`pgha-lab up` and `pgha-lab down`."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from pgha_lab import bare_lifecycle, disks, lab_settings, lifecycle
from pgha_lab.commands import summary
from pgha_lab.commands._common import lab_context
from pgha_lab.errors import LabError
from pgha_lab.imaging.pg_install import PG_INSTALL_CHOICES
from pgha_lab.profiles import PROFILES
from pgha_lab.term.progress import Progress
from pgha_lab.term.tables import members_table
from pgha_lab.topology import Published, Topology, TopologyError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help=summary("up"))
    p.add_argument("--profile", choices=list(PROFILES), default=None,
                   help="Patroni/HAProxy timings: seed = Patroni's defaults (ttl 30, loop_wait "
                        "10), fast = the smallest (default: the lab's last, else seed)")
    # Settings: not argparse choices, so a bad value gets the lab's one-sentence refusal.
    p.add_argument("--replication", metavar="sync|async|strict|quorum", default=None,
                   help="Patroni's synchronous_mode: sync = on, async = off, strict = on + synchronous_mode_strict, "
                        "quorum = quorum commit (default: the lab's last, else sync)")
    p.add_argument("--sync-count", type=int, default=None, metavar="N",
                   help="synchronous_node_count: standbys a commit waits for (at most the replicas)")
    p.add_argument("--failsafe", metavar="on|off", default=None,
                   help="Patroni's failsafe_mode: the primary stays up "
                        "through a DCS outage while it reaches every member")
    p.add_argument("--max-lag", type=int, default=None, metavar="BYTES",
                   help="maximum_lag_on_failover: a replica further behind may not be promoted (default 1048576)")
    p.add_argument("--rewind", metavar="on|off", default=None, help="use_pg_rewind for a returning old primary")
    p.add_argument("--db-nodes", type=int, default=None, help="PostgreSQL nodes, 2 to 9 (default 2)")
    p.add_argument("--haproxy-nodes", type=int, default=None, metavar="1|2",
                   help="HAProxy nodes: 2 adds haproxy2 and a virtual address keepalived moves between them "
                        "(clients connect to it; no host ports are published) (default: the lab's last, else 1)")
    p.add_argument("--disk-size", default=None, metavar="SIZE",
                   help="give each db node its own data disk of SIZE (e.g. 2G: a loop-mounted ext4 file, needs root) "
                        "so `chaos fill-disk` can fill it for real; 'off' for plain Docker volumes (a new lab only: "
                        "data cannot move in place) (default: the lab's last, else off)")
    p.add_argument("--etcd-nodes", type=int, default=None, help="etcd members: 1, 3 or 5 (default 3)")
    p.add_argument("--bare", nargs="?", const="on", default=None, metavar="on|off",
                   help="nodes that boot systemd like freshly installed Ubuntu VMs, software installed and nothing "
                        "configured: build the cluster yourself, or with `pgha-lab export ansible` (README "
                        "\"Build it yourself\"); 'off' for the ready lab (default: the lab's last, else off)")
    p.add_argument("--subnet", default=None,
                   help="lab network (default 192.168.56.0/24, like a VirtualBox host-only network)")
    p.add_argument("--publish-ports", default=None, metavar="PRIMARY,REPLICAS,STATS",
                   help="host ports on 127.0.0.1 for HAProxy (default 5432,5433,8404); 'off' publishes nothing")
    p.add_argument("--pg-install", choices=PG_INSTALL_CHOICES, default="auto",
                   help="how images that are missing get PostgreSQL (default auto)")
    p.add_argument("--timeout", type=float, default=lifecycle.UP_DEADLINE_S,
                   help="seconds to wait for health (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.set_defaults(func=cmd_up)

    d = sub.add_parser("down", help=summary("down"))
    d.add_argument("--volumes", action="store_true",
                   help="also delete etcd and PostgreSQL data (a bare lab: "
                        "its nodes too; without it they are only shut down)")
    d.set_defaults(func=cmd_down)


def _parse_published(text: str, current: Published) -> Published:
    """--publish-ports: new ports (or off), keeping the saved bind address."""
    if text == "off":
        return replace(current, enabled=False)
    try:
        primary, replicas, stats = (int(x) for x in text.split(","))
    except ValueError:
        raise LabError(f"--publish-ports takes three ports such as 5432,5433,8404 or 'off', not {text!r}.") from None
    # Their range is the model's to check (Topology.build), so a saved topology gets the same check.
    return replace(current, enabled=True, primary=primary, replicas=replicas, stats=stats)


def _disk_size(text: str | None, current: int | None) -> int | None:
    if text is None:
        return current
    return None if text.strip().lower() == "off" else disks.parse_size(text)


def _bare(text: str | None, current: bool) -> bool:
    if text is None:
        return current
    return lab_settings.on_off(text, "--bare")


def _given(value: int | None, current: int) -> int:
    """A count from the command line, or the lab's own when it was not given (0 is given, and refused)."""
    return current if value is None else value


def requested_topology(args: argparse.Namespace, current: Topology) -> Topology:
    """The saved topology with whatever the user changed on the command line."""
    published = _parse_published(args.publish_ports, current.published) if args.publish_ports else current.published
    try:
        return Topology.build(
            db_nodes=_given(args.db_nodes, len(current.db)), etcd_nodes=_given(args.etcd_nodes, len(current.etcd)),
            subnet=args.subnet or str(current.subnet), prefix=current.prefix, project=current.project,
            published=published, scope=current.scope,
            haproxy_nodes=_given(getattr(args, "haproxy_nodes", None), len(current.haproxies)),
            db_disk_size=_disk_size(getattr(args, "disk_size", None), current.db_disk_size),
            bare=_bare(getattr(args, "bare", None), current.bare))
    except TopologyError as exc:
        raise LabError(str(exc)) from None


def settings_request(args: argparse.Namespace) -> dict:
    """The lab settings the command line names (checked against the topology by `up` before any change)."""
    if args.replication is not None and args.replication not in lab_settings.REPLICATION_MODES:
        raise LabError(f"unknown replication mode {args.replication!r}; choose one of: "
                       f"{', '.join(lab_settings.REPLICATION_MODES)}.")
    return {"replication": args.replication, "sync_count": args.sync_count,
            "failsafe": None if args.failsafe is None else lab_settings.on_off(args.failsafe, "--failsafe"),
            "max_lag": args.max_lag,
            "rewind": None if args.rewind is None else lab_settings.on_off(args.rewind, "--rewind")}


def cmd_up(args: argparse.Namespace) -> int:
    request = settings_request(args)   # refused before anything else is looked at
    current = lab_context(args)
    ctx = current.with_topology(requested_topology(args, current.topology))
    if ctx.topology.etcd != current.topology.etcd and ctx.paths.topology_file.exists() and ctx.docker.volumes():
        raise LabError("the etcd membership of an existing lab cannot change in place; "
                       "run `pgha-lab down --volumes` first, then `up` with the new size.")
    if (ctx.topology.db_disk_size != current.topology.db_disk_size and ctx.paths.topology_file.exists()
            and ctx.docker.volumes()):
        raise LabError("the db nodes' data cannot move to disks of another size in place; run `pgha-lab down "
                       "--volumes` first, then `up` with the new --disk-size.")
    if ctx.topology.bare != current.topology.bare and ctx.paths.topology_file.exists() and ctx.docker.containers():
        raise LabError("a lab cannot switch between bare and ready nodes in place; run `pgha-lab down --volumes` "
                       "first, then `up` with --bare" + (" off." if current.topology.bare else "."))
    lab_settings.requested(ctx.settings, **request).validate(len(ctx.topology.db))
    progress = Progress(stream=sys.stderr)
    if ctx.topology.bare:
        bare = bare_lifecycle.bring_up(ctx, profile=args.profile, pg_install=args.pg_install, progress=progress,
                                       deadline_s=args.timeout, settings=request)
        print(json.dumps(bare.as_dict(), indent=2) if args.json else bare.text())
        return 0
    outcome = lifecycle.bring_up(ctx, profile=args.profile, pg_install=args.pg_install,
                                 progress=progress, deadline_s=args.timeout, settings=request)
    topo = ctx.topology
    if args.json:
        print(json.dumps(outcome.as_dict(), indent=2))
    else:
        print(members_table(outcome.members, topo.scope))
        print(outcome.connect_text())
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    lifecycle.take_down(lab_context(args), volumes=args.volumes, progress=Progress(stream=sys.stderr))
    return 0
