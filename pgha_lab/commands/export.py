"""`pgha-lab export ansible`: the lab's cluster as an Ansible project (deploy/)."""
from __future__ import annotations

import argparse
from pathlib import Path

from pgha_lab.commands import summary
from pgha_lab.commands._common import lab_context
from pgha_lab.deploy import export


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help=summary("export"))
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    a = kinds.add_parser("ansible", help="inventory, variables and site.yml (tags hosts, tls, etcd, postgres, "
                                         "patroni, haproxy, verify) with every file pgha-lab renders")
    a.add_argument("--out", type=Path, default=None,
                   help="folder to write (default labs/<project>/ansible, rewritten each time); must be empty")
    a.add_argument("--host", action="append", default=[], metavar="NAME=ADDRESS",
                   help="a real host's address for a node (repeat; default the course's 192.168.56.x); "
                        "its certificates are made for it")
    a.add_argument("--ssh-user", default=export.DEFAULT_SSH_USER,
                   help="the real hosts' login, with sudo (default %(default)s)")
    a.add_argument("--force", action="store_true", help="replace the project in a folder that holds one")
    a.set_defaults(func=cmd_export_ansible)


def cmd_export_ansible(args: argparse.Namespace) -> int:
    ctx = lab_context(args)
    result = export.export(ctx, out=args.out, hosts=args.host, ssh_user=args.ssh_user, force=args.force)
    print(f"Wrote the Ansible project of lab {ctx.project!r} to {result.out}")
    for inventory in result.inventories():
        print(f"  cd {result.out} && ansible-playbook -i {inventory} site.yml")
    if export.ansible_playbook() is None:
        print(export.INSTALL_HINT)
    return 0
