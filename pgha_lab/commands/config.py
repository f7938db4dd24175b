"""`pgha-lab config show NODE`: print the files a node runs, exactly as they are mounted."""
from __future__ import annotations

import argparse
import json

from pgha_lab import tls
from pgha_lab.commands import summary
from pgha_lab.commands._common import lab_context
from pgha_lab.errors import LabError
from pgha_lab.node_paths import TLS_MOUNT
from pgha_lab.topology import UnknownNode


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help=summary("config"))
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    show = csub.add_parser("show", help="print a node's rendered files with a header per file")
    show.add_argument("node", metavar="NODE", help="node name, e.g. dbnode1")
    show.add_argument("--json", action="store_true", help="print the files as JSON")
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    from pgha_lab.render import node_mounts  # the container paths come from the renderer, the text from disk
    ctx = lab_context(args)
    paths, topology = ctx.paths, ctx.topology
    try:
        node = topology.node(args.node)
    except UnknownNode as exc:
        raise LabError(str(exc)) from None
    folder = paths.node_dir(node.name)
    files = []
    for name, container_path in node_mounts(node, topology):
        host = folder / name
        if not host.is_file():
            raise LabError(f"{host} does not exist yet; run `pgha-lab up` to write the lab's configuration.")
        files.append({"path": container_path, "host_path": str(host), "content": host.read_text()})
    tls_files = sorted(tls.node_bundle(topology, node))
    lab = ctx.settings
    if args.json:
        print(json.dumps({"node": node.name, "role": node.role.value, "files": files,
                          "settings": lab.as_dict(), "profile": ctx.profile.name,
                          "tls": {"mount": TLS_MOUNT, "files": tls_files, "certs": str(paths.certs)}}, indent=2))
        return 0
    # bootstrap.dcs in patroni.yml counts only at the cluster's first boot; what runs is in etcd.
    print(f"==> lab settings ({paths.state / 'settings.json'}; applied through Patroni's /config in etcd) <==")
    print(f"{lab.summary()}; {ctx.profile.name} profile")
    print("patroni dynamic config: " + json.dumps(lab.dcs()))
    print()
    for f in files:
        print(f"==> {f['path']}  (host: {f['host_path']}) <==")
        print(f["content"].rstrip("\n"))
        print()
    print(f"==> {TLS_MOUNT}  (host: {folder / 'tls'}, copied from {paths.certs} when written, "
          f"and to the role's TLS folder at start) <==")
    print("\n".join(tls_files))
    return 0
