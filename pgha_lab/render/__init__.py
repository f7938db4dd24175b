"""The one entry point that turns a Topology into the files a lab runs on: certificates,
secrets, and every node's rendered configuration, written idempotently under paths.state."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import yaml

from pgha_lab import lab_settings, profiles, secrets, tls
from pgha_lab.errors import LabError
from pgha_lab.fsutil import write_if_changed
from pgha_lab.paths import LabPaths
from pgha_lab.profiles import Profile
from pgha_lab.render import etcd, haproxy, keepalived, patroni
from pgha_lab.render.common import RenderedFile
from pgha_lab.topology import Node, Role, Topology

CONFIG_MODE = 0o644   # no secret lives in a rendered file; the service users must read them
BOOTSTRAP_PROFILE_FILE = "bootstrap-profile"
BOOTSTRAP_SETTINGS_FILE = "bootstrap-settings.json"


def node_files(topology: Topology, node: Node | str, profile: Profile,
               bootstrap: Profile | None = None,
               bootstrap_settings: lab_settings.LabSettings = lab_settings.DEFAULT) -> list[RenderedFile]:
    """The rendered files one node runs (not its TLS folder), in memory. Patroni's file holds the
    timings and settings the cluster was bootstrapped with (`bootstrap`, default `profile`)."""
    node = topology.node(node) if isinstance(node, str) else node
    if node.role is Role.ETCD:
        return etcd.render(topology, node, profile)
    if node.role is Role.DB:
        return patroni.render(topology, node, bootstrap or profile, bootstrap_settings)
    files = haproxy.render(topology, profile, node)
    if topology.haproxy2 is not None:   # keepalived only where there is a VIP to move
        files += keepalived.render(topology, node)
    return files


def bootstrap_profile(paths: LabPaths, profile: Profile) -> Profile:
    """The profile the lab's Patroni cluster was bootstrapped with. bootstrap.dcs counts only at
    the first boot (later timings go to etcd, see lifecycle.apply_dcs_timings), so a profile switch
    leaves patroni.yml alone and no db node restarts for it."""
    f = paths.state / BOOTSTRAP_PROFILE_FILE
    saved = f.read_text().strip() if f.exists() else profile.name
    return profile if saved == profile.name else profiles.get(saved)


def bootstrap_settings(paths: LabPaths, wanted: lab_settings.LabSettings) -> lab_settings.LabSettings:
    """The settings the lab's cluster was bootstrapped with, pinned like its profile: later changes
    go to etcd (lifecycle.apply_dcs_settings), so patroni.yml and the db nodes stay as they are."""
    f = paths.state / BOOTSTRAP_SETTINGS_FILE
    if f.exists():
        return lab_settings.load_file(f)
    # A lab bootstrapped before settings existed ran the defaults; a new one starts with `wanted`.
    return lab_settings.DEFAULT if (paths.state / BOOTSTRAP_PROFILE_FILE).exists() else wanted


def node_mounts(node: Node, topology: Topology | None = None) -> list[tuple[str, str]]:
    """(file name in paths.node_dir(node), container path) for each rendered file of the node's
    role, for compose to mount read-only; the TLS folder ("tls") goes to node_paths.TLS_MOUNT.
    An HAProxy node of a two-HAProxy `topology` also mounts its keepalived.conf."""
    files = {Role.ETCD: etcd.FILES, Role.DB: patroni.FILES, Role.HAPROXY: haproxy.FILES}
    mounts = [(name, path) for name, path in files[node.role]]
    if node.role is Role.HAPROXY and topology is not None and topology.haproxy2 is not None:
        mounts += [(name, path) for name, path in keepalived.FILES]
    return mounts


def save_topology(paths: LabPaths, topology: Topology) -> bool:
    text = "# pgha-lab topology: the model every certificate and config of this lab is derived from.\n" + \
        yaml.safe_dump(topology.to_dict(), sort_keys=False, default_flow_style=False)
    return write_if_changed(paths.topology_file, text, 0o644)


def write_lab(paths: LabPaths, topology: Topology, profile: Profile, *, rotate_certs: bool = False,
              now: dt.datetime | None = None, settings: lab_settings.LabSettings = lab_settings.DEFAULT) -> list[Path]:
    """Make certificates and secrets when needed and write every node's files.

    Returns the paths that changed (empty when the lab on disk already matched), so `up` can
    tell whether containers need recreating. Bad input is refused before anything is written.
    """
    if topology.project != paths.project:
        raise LabError(f"the topology is for lab {topology.project!r} but the "
                       f"paths are for {paths.project!r}; use one project name.")
    profile.validate()
    settings.validate(len(topology.db))
    bootstrap = bootstrap_profile(paths, profile)
    pinned = bootstrap_settings(paths, settings)
    rendered = {n.name: node_files(topology, n, profile, bootstrap, pinned)
                for n in topology.nodes}   # fail before writing

    changed: list[Path] = []
    if save_topology(paths, topology):
        changed.append(paths.topology_file)
    write_if_changed(paths.state / BOOTSTRAP_PROFILE_FILE, bootstrap.name + "\n", CONFIG_MODE)
    lab_settings.save_file(paths.state / BOOTSTRAP_SETTINGS_FILE, pinned)
    existed = paths.secrets_file.exists()
    secrets.ensure(paths)
    if not existed:
        changed.append(paths.secrets_file)
    changed.extend(tls.ensure(paths, topology, rotate=rotate_certs, now=now).written)
    for name, files in rendered.items():
        for f in files:
            target = paths.node_dir(name) / f.name
            if write_if_changed(target, f.content, CONFIG_MODE):
                changed.append(target)
    # A lab back to one HAProxy must not keep a keepalived.conf that no longer applies.
    if topology.haproxy2 is None:
        for name, _ in keepalived.FILES:
            stale_file = paths.node_dir(topology.haproxy.name) / name
            if stale_file.exists():
                stale_file.unlink()
                changed.append(stale_file)
    # A node the topology no longer has must not leave its keys and configs behind.
    if paths.nodes.is_dir():
        for stale in paths.nodes.iterdir():
            if stale.is_dir() and stale.name not in rendered:
                shutil.rmtree(stale)
                changed.append(stale)
    return changed
