"""The Ansible project `export ansible` writes: site.yml and files.yml (the steps, shipped with the
package), an inventory per target, variables from the topology, settings and profile, and under
files/<target>/<node>/ exactly what pgha-lab renders for that node: its configs (render/), how its
services start (render/systemd.py), its certificates (tls.py) and Patroni's passwords (secrets.py).
Built in memory first, so bad input is refused before anything is written."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pgha_lab import node_paths, render, secrets, tls
from pgha_lab.context import LabContext
from pgha_lab.deploy import targets
from pgha_lab.errors import LabError
from pgha_lab.imaging import wheelhouse
from pgha_lab.paths import LabPaths
from pgha_lab.render import systemd
from pgha_lab.render.common import RenderedFile
from pgha_lab.topology import Node, Role, Topology

# The software the images run, pinned the same way for real hosts: Ubuntu noble's etcd 3.4.30 and
# HAProxy 2.8 (a test holds the bare images to these), PostgreSQL's major, Patroni as patroni.lock.
ETCD_VERSION = "3.4.30"
HAPROXY_VERSION = "2.8"
PATRONI_LOCK = "/var/cache/pgha-lab/patroni.lock"   # where a bare db node carries it, beside its wheels
SERVICE_USER = {Role.ETCD: "etcd", Role.DB: "postgres", Role.HAPROXY: "haproxy"}
TLS_DIR = {Role.ETCD: node_paths.ETCD_TLS, Role.DB: node_paths.PATRONI_TLS, Role.HAPROXY: node_paths.HAPROXY_TLS}
# How a running service takes new files: etcd reads them only at start, Patroni and HAProxy on reload.
APPLY = {Role.ETCD: "restarted", Role.DB: "reloaded", Role.HAPROXY: "reloaded"}
GROUPS = {Role.ETCD: "etcd", Role.DB: "dbnodes", Role.HAPROXY: "haproxy"}
STEP = {Role.ETCD: "etcd", Role.DB: "patroni", Role.HAPROXY: "haproxy"}   # the step that installs a role's configs
WAIT_RETRIES = 120            # a step's health waits give up after 2 s x this
PRIVATE = 0o600
OWN_FILES = ("README.md", "ansible.cfg", "site.yml", "files.yml", "inventory", "group_vars", "host_vars", "files")

ANSIBLE_CFG = """\
# Written by `pgha-lab export ansible`.
[defaults]
# Every member of a step at once: etcd's members wait for one another's quorum as they start.
forks = 20
interpreter_python = /usr/bin/python3
retry_files_enabled = false

[ssh_connection]
pipelining = true

[connection]
pipelining = true
"""


@dataclass(frozen=True)
class ProjectFile:
    path: str          # relative to the project folder
    content: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class Target:
    name: str                      # targets.LAB or targets.HOSTS
    topology: Topology
    paths: LabPaths                # where its certificates are kept
    inventory: dict[str, Any]


# -- what each node gets ----------------------------------------------------------------------------
def _dir(path: str, owner: str, mode: str) -> dict[str, str]:
    return {"path": path, "owner": owner, "mode": mode}


def _file(src: str, dest: str, owner: str = "root", mode: str = "0644") -> dict[str, str]:
    return {"src": src, "dest": dest, "owner": owner, "mode": mode}


def node_plan(topology: Topology, node: Node) -> tuple[dict[str, list], dict[str, list]]:
    """(folders, files) per step for one node: where each rendered file goes, its owner and mode (the
    modes the ready lab's entrypoints give the same files)."""
    user, tls_dir = SERVICE_USER[node.role], TLS_DIR[node.role]
    dirs: dict[str, list] = {"tls": [_dir(tls_dir, user, "0750")]}
    files: dict[str, list] = {"tls": [
        _file(f"tls/{name}", f"{tls_dir}/{name}", user, "0600" if name.endswith((".key", ".pem")) else "0644")
        for name in tls.node_bundle(topology, node)]}
    step = STEP[node.role]
    configs = [_file(name, dest) for name, dest in render.node_mounts(node, topology)]
    configs += [_file(f.name, f.container_path) for f in systemd.render(topology, node)]
    if node.role is Role.ETCD:
        dirs["etcd"] = [_dir(node_paths.ETCD_DATA_ROOT, user, "0700")]
        configs.append(_file("ectl", "/usr/local/bin/ectl", mode="0755"))
    elif node.role is Role.DB:
        dirs["tls"].insert(0, _dir(str(Path(node_paths.PATRONI_CONFIG).parent), user, "0750"))
        dirs["postgres"] = [_dir(str(Path(node_paths.PG_DATA).parent), user, "0755"),
                            _dir(node_paths.PG_DATA, user, "0700")]
        dirs["patroni"] = [_dir(str(Path(PATRONI_LOCK).parent), "root", "0755")]
        configs.insert(0, _file("patroni.lock", PATRONI_LOCK))
        configs.append(_file(systemd.PATRONI_ENV[0], systemd.PATRONI_ENV[1], mode="0600"))
    files[step] = configs
    return dirs, files


def node_contents(ctx: LabContext, target: Target, node: Node) -> dict[str, tuple[bytes, int]]:
    """file name in files/<target>/<node>/ -> (content, mode), every one of them pgha-lab's own."""
    topo, paths = target.topology, target.paths
    profile = ctx.profile
    if target.name == targets.LAB:   # the cluster's first boot takes what the lab pinned (render.write_lab)
        boot_profile, boot_settings = render.bootstrap_profile(ctx.paths, profile), \
            render.bootstrap_settings(ctx.paths, ctx.settings)
    else:                            # a new estate bootstraps with the lab's settings of today
        boot_profile, boot_settings = profile, ctx.settings
    rendered: list[RenderedFile] = render.node_files(topo, node, profile, boot_profile, boot_settings)
    rendered += systemd.render(topo, node)
    out = {f.name: (f.content.encode(), 0o644) for f in rendered}
    for name, source in tls.node_bundle(topo, node).items():
        mode = PRIVATE if name.endswith((".key", ".pem")) else 0o644
        out[f"tls/{name}"] = ((paths.certs / source).read_bytes(), mode)
    if node.role is Role.ETCD:
        out["ectl"] = ((ctx.paths.images / "etcd" / "ectl").read_bytes(), 0o755)
    elif node.role is Role.DB:
        out["patroni.lock"] = ((ctx.paths.images / "dbnode" / "patroni.lock").read_bytes(), 0o644)
        out[systemd.PATRONI_ENV[0]] = (secrets.load(ctx.paths).render().encode(), PRIVATE)
    return out


# -- variables and inventories ----------------------------------------------------------------------
def group_vars(ctx: LabContext) -> dict[str, Any]:
    topo, profile, lab = ctx.topology, ctx.profile, ctx.settings
    lock = wheelhouse.parse_lock((ctx.paths.images / "dbnode" / "patroni.lock").read_text())
    patroni = next(p.version for p in lock if p.name.lower() == "patroni")
    return {
        "pgha_project": topo.project,
        "pgha_scope": topo.scope,
        "pgha_profile": {"name": profile.name, "ttl": profile.ttl, "loop_wait": profile.loop_wait,
                         "retry_timeout": profile.retry_timeout},
        "pgha_settings": lab.as_dict(),
        "pgha_sync_required": lab.expects_sync_standby,
        "pgha_ports": {"etcd_client": topo.ports.etcd_client, "etcd_peer": topo.ports.etcd_peer,
                       "restapi": topo.ports.restapi, "postgres": topo.ports.postgres,
                       "haproxy_primary": topo.ports.haproxy_primary, "haproxy_replicas": topo.ports.haproxy_replicas,
                       "haproxy_stats": topo.ports.haproxy_stats},
        "pgha_versions": {"etcd": ETCD_VERSION, "haproxy": HAPROXY_VERSION, "postgresql": node_paths.PG_MAJOR,
                          "patroni": patroni},
        "pgha_paths": {"pg_bin": node_paths.PG_BIN, "patroni_venv": node_paths.PATRONI_VENV,
                       "patroni_config": node_paths.PATRONI_CONFIG,
                       "patroni_lock": PATRONI_LOCK, "patroni_env": systemd.PATRONI_ENV[1]},
        "pgha_wait_retries": WAIT_RETRIES,
    }


def host_vars(topology: Topology, node: Node) -> dict[str, Any]:
    dirs, files = node_plan(topology, node)
    return {"pgha_role": node.role.value, "pgha_unit": systemd.UNITS[node.role], "pgha_apply": APPLY[node.role],
            "pgha_tls_dir": TLS_DIR[node.role], "pgha_dirs": dirs, "pgha_files": files}


def hosts_block(topology: Topology) -> str:
    return "".join(f"{n.address} {n.name}\n" for n in topology.nodes)


def inventory(topology: Topology, target: str, connection: dict[str, Any],
              host: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """An inventory with the groups etcd, dbnodes and haproxy; `host` holds each node's connection."""
    children = {}
    for role, group in GROUPS.items():
        children[group] = {"hosts": {n.name: {**host[n.name], "pgha_address": str(n.address)}
                                     for n in topology.by_role(role)}}
    return {"all": {"vars": {**connection, "pgha_target": target, "pgha_files_dir": f"files/{target}",
                             "pgha_hosts_block": hosts_block(topology)},
                    "children": children}}


def lab_target(ctx: LabContext) -> Target:
    topo = ctx.topology
    # The nodes' images run `docker exec` as root. No ansible_user: with one the plugin asks the engine
    # its version (two `docker version` runs) for every task on every node. A remote_tmp without `~`
    # spares each file copy the round trip that expands it.
    connection = {"ansible_connection": "community.docker.docker", "ansible_become": False,
                  "ansible_remote_tmp": "/root/.ansible/tmp"}
    host = {n.name: {"ansible_host": topo.container_name(n)} for n in topo.nodes}
    return Target(targets.LAB, topo, ctx.paths, inventory(topo, targets.LAB, connection, host))


def hosts_target(ctx: LabContext, overrides: dict, ssh_user: str) -> Target:
    topo = targets.hosts_topology(ctx.topology, overrides)
    connection = {"ansible_connection": "ssh", "ansible_user": ssh_user, "ansible_become": True}
    host = {n.name: {"ansible_host": str(n.address)} for n in topo.nodes}
    return Target(targets.HOSTS, topo, targets.HostsPaths(ctx.paths.home, ctx.paths.project),
                  inventory(topo, targets.HOSTS, connection, host))


# -- the whole project ---------------------------------------------------------------------------
class _Dumper(yaml.SafeDumper):
    """Lines of text as YAML's literal blocks, as one writes them by hand."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def _yaml(doc: Any, head: str) -> bytes:
    return (f"# {head}\n# Written by `pgha-lab export ansible`; export again rather than edit it.\n" +
            yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)).encode()


def _shipped(name: str) -> bytes:
    return resources.files("pgha_lab.deploy").joinpath("ansible", name).read_bytes()


def project_files(ctx: LabContext, chosen: list[Target], readme: str) -> list[ProjectFile]:
    """Every file of the project for the targets chosen (certificates must exist: `make_certificates`)."""
    topo = ctx.topology
    out = [ProjectFile("README.md", readme.encode()), ProjectFile("ansible.cfg", ANSIBLE_CFG.encode()),
           ProjectFile("site.yml", _shipped("site.yml")), ProjectFile("files.yml", _shipped("files.yml")),
           ProjectFile("group_vars/all.yml", _yaml(group_vars(ctx), f"pgha-lab lab {topo.project!r}: "
                                                                     f"topology, settings and profile"))]
    for node in topo.nodes:
        out.append(ProjectFile(f"host_vars/{node.name}.yml",
                               _yaml(host_vars(topo, node), f"{node.name}: what each step installs, and where")))
    for target in chosen:
        what = ("the lab's bare nodes over `docker exec`" if target.name == targets.LAB
                else "real Ubuntu 24.04 hosts over SSH")
        out.append(ProjectFile(f"inventory/{target.name}.yml", _yaml(target.inventory, f"{topo.project}: {what}")))
        for node in target.topology.nodes:
            for name, (content, mode) in node_contents(ctx, target, node).items():
                out.append(ProjectFile(f"files/{target.name}/{node.name}/{name}", content, mode))
    return out


def make_certificates(ctx: LabContext, chosen: list[Target]) -> None:
    """Each target's certificates, made or kept (tls.py decides); the lab's passwords exist already."""
    for target in chosen:
        tls.ensure(target.paths, target.topology)


def check_out(out: Path, force: bool) -> None:
    """Refuse a destination the project cannot go to, before anything is made."""
    if out.exists() and not out.is_dir():
        raise LabError(f"{out} is a file; give --out a folder.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise LabError(f"{out} is not empty; give another --out, or --force to replace the project in it.")


def write(files: list[ProjectFile], out: Path, force: bool) -> None:
    """Write the project to `out`; with `force`, what an earlier export wrote there goes first."""
    check_out(out, force)
    if out.is_dir():
        for name in OWN_FILES:
            old = out / name
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)   # private keys and passwords inside
    for f in files:
        target = out / f.path
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        target.write_bytes(f.content)
        target.chmod(f.mode)
