"""Snapshots of a whole lab, kept as VirtualBox users keep them: every node's file-system changes (an
image committed from its container) and its data volumes (a copy of each), taken with the nodes
stopped so etcd and PostgreSQL are consistent on disk. `restore` replaces every node's container with
one made from its committed image, copies the volumes back, and boots what was running at the save.

The images and volumes live in the engine, labelled with the lab and the snapshot; what a restore
needs besides (the lab's shape, which nodes ran, which services they ran, the host-side settings that
describe what etcd holds) is the manifest in labs/<project>/snapshots/<name>/.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from pgha_lab import disks, lab_settings, render
from pgha_lab.context import PROFILE_FILE, LabContext
from pgha_lab.errors import LabError
from pgha_lab.gateway import (
    LABEL_SNAPSHOT_BASE,
    LABEL_SNAPSHOT_NAME,
    LABEL_SNAPSHOT_PROJECT,
    LabDocker,
    snapshot_image,
    snapshot_volume,
)
from pgha_lab.paths import LabPaths
from pgha_lab.topology import Role, Topology
from pgha_lab.wait import Verdict, wait_until

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
SNAPSHOTS = "snapshots"             # in labs/<project>/: one folder a snapshot
MANIFEST = "manifest.json"
OVERRIDE = "compose.override.yaml"   # the nodes' images for compose while a restore creates them
HOST_FILES_DIR = "host"
# Host-side files that describe what the nodes' data holds (the profile and settings etcd was given,
# what the cluster was bootstrapped with): restored with the data, so `up` does not undo it.
HOST_FILES = (PROFILE_FILE, lab_settings.SETTINGS_FILE, render.BOOTSTRAP_PROFILE_FILE, render.BOOTSTRAP_SETTINGS_FILE)
BOOT_DEADLINE_S = 180.0
# HAProxy and the db nodes go down first, etcd last: a stopping Patroni still reaches its DCS.
STOP_WAVES = ((Role.HAPROXY, Role.DB), (Role.ETCD,))
SYSTEMD_SETTLING = ("initializing", "starting")


@dataclass
class VolumeCopy:
    volume: str        # the lab's volume, as compose names it
    target: str        # where the node mounts it
    copy: str          # the snapshot's copy
    bytes: int = 0


@dataclass
class NodeRecord:
    name: str
    role: str
    image: str                     # committed from the node's container
    running: bool                  # running at the save: a restore boots it
    services: list[str] | None     # systemd services enabled and running at the save (None: no systemd)
    volumes: list[VolumeCopy] = field(default_factory=list)
    layer_bytes: int = 0           # what the node's file system changes take
    # A systemd node's /etc/hostname and /etc/hosts as it had them, read while it ran (a node stopped
    # at the save cannot be read: Docker shows its own files there). `docker commit` keeps only
    # Docker's empty placeholders of both, so a restore puts these back before the node boots.
    etc: dict[str, str] = field(default_factory=dict)


@dataclass
class Manifest:
    name: str
    project: str
    created: str
    shape: dict[str, Any]
    nodes: list[NodeRecord]
    healthy: bool | None           # the lab's health assessment at the save (None: not a lab it applies to)
    save_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Manifest:
        nodes = [NodeRecord(**{**n, "volumes": [VolumeCopy(**v) for v in n.get("volumes", [])]})
                 for n in doc["nodes"]]
        return cls(**{**doc, "nodes": nodes})

    @property
    def bytes(self) -> int:
        return sum(n.layer_bytes + sum(v.bytes for v in n.volumes) for n in self.nodes)

    def node(self, name: str) -> NodeRecord:
        return next(n for n in self.nodes if n.name == name)


@dataclass
class Outcome:
    """What save or restore did, and how long the lab was down for it."""
    manifest: Manifest
    seconds: float
    booted: list[str]
    verdict: Verdict

    def as_dict(self) -> dict[str, Any]:
        return {"snapshot": self.manifest.name, "seconds": round(self.seconds, 2), "booted": self.booted,
                "ok": self.verdict.ok, "reason": self.verdict.reason, "bytes": self.manifest.bytes}


# -- the lab's shape ------------------------------------------------------------------------------
def shape_of(topo: Topology) -> dict[str, Any]:
    """What a snapshot's data depends on: the nodes, their names and addresses (published ports and
    the project name do not matter to it)."""
    return {k: v for k, v in topo.to_dict().items() if k not in ("published", "project")}


def describe_shape(shape: dict[str, Any]) -> str:
    parts = [f"{shape.get('etcdNodes')} etcd members", f"{shape.get('dbNodes')} db nodes",
             f"{shape.get('haproxyNodes')} HAProxy node{'s' if shape.get('haproxyNodes') != 1 else ''}"]
    extra = {k: v for k, v in shape.items() if k not in ("apiVersion", "etcdNodes", "dbNodes", "haproxyNodes",
                                                          "subnet", "prefix", "scope")}
    text = ", ".join(parts) + f" on {shape.get('subnet')}"
    if shape.get("prefix"):
        text += f", names prefixed {shape['prefix']!r}"
    return text + "".join(f", {k} {v}" for k, v in sorted(extra.items()))


def shape_mismatch(saved: dict[str, Any], now: dict[str, Any]) -> str | None:
    if saved == now:
        return None
    return f"the snapshot is of a lab with {describe_shape(saved)}, and this lab has {describe_shape(now)}"


# -- where snapshots live -------------------------------------------------------------------------
def folder(ctx: LabContext, name: str | None = None) -> Path:
    base = ctx.paths.state / SNAPSHOTS
    return base / name if name else base


def validate_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise LabError(f"a snapshot name is up to 40 lowercase letters, digits, dots, dashes and underscores, "
                       f"starting with a letter or digit (e.g. after-etcd), not {name!r}.")
    return name


def load(ctx: LabContext, name: str) -> Manifest:
    f = folder(ctx, validate_name(name)) / MANIFEST
    if not f.exists():
        have = [m.name for m in list_all(ctx)]
        listed = f"its snapshots are {', '.join(have)}" if have else "it has none yet (`pgha-lab snapshot save NAME`)"
        raise LabError(f"lab {ctx.project!r} has no snapshot {name!r}; {listed}.")
    try:
        return Manifest.from_dict(json.loads(f.read_text()))
    except (ValueError, KeyError, TypeError, StopIteration):
        raise LabError(f"{f} is not a snapshot manifest pgha-lab wrote; `pgha-lab snapshot delete {name}` "
                       f"removes the snapshot.") from None


def list_all(ctx: LabContext) -> list[Manifest]:
    base = folder(ctx)
    out = []
    for f in sorted(base.glob(f"*/{MANIFEST}")) if base.is_dir() else []:
        try:
            out.append(Manifest.from_dict(json.loads(f.read_text())))
        except (ValueError, KeyError, TypeError):
            continue   # `load` names a broken one when it is asked for
    return sorted(out, key=lambda m: m.created)


def missing_parts(ctx: LabContext, manifest: Manifest) -> list[str]:
    """The images and volume copies of a snapshot the engine no longer has."""
    docker = ctx.docker
    volumes = set(docker.volumes_labelled(f"{LABEL_SNAPSHOT_PROJECT}={ctx.project}"))
    out = [n.image for n in manifest.nodes if not docker.image_exists(n.image)]
    out += [v.copy for n in manifest.nodes for v in n.volumes if v.copy not in volumes]
    return out


# -- reading the nodes ----------------------------------------------------------------------------
def _systemd_services(ctx: LabContext, node: str) -> list[str] | None:
    """Services a boot starts again (enabled) that run now; None on a node whose PID 1 is not systemd."""
    docker = ctx.docker
    comm = docker.exec(node, "cat", "/proc/1/comm", check=False)
    if comm.stdout.strip() != "systemd":
        return None
    running = docker.exec(node, "systemctl", "list-units", "--type=service", "--state=running", "--plain",
                          "--no-legend", check=False).stdout
    enabled = docker.exec(node, "systemctl", "list-unit-files", "--type=service", "--state=enabled", "--plain",
                          "--no-legend", check=False).stdout
    on = {line.split()[0] for line in enabled.splitlines() if line.strip()}
    return sorted(u for u in (line.split()[0] for line in running.splitlines() if line.strip()) if u in on)


NODE_ETC = ("/etc/hostname", "/etc/hosts")


def _etc_files(ctx: LabContext, node: str) -> dict[str, str]:
    """The node's own name files (the boot script unmounted Docker's: these are what its admin wrote)."""
    out = {}
    for path in NODE_ETC:
        proc = ctx.docker.exec(node, "cat", path, check=False)
        if proc.returncode == 0:
            out[path] = proc.stdout
    return out


def _booted(ctx: LabContext, manifest: Manifest) -> Callable[[], Verdict]:
    """The nodes running at the save run again, with their services; a lab healthy at the save is
    healthy again."""
    docker = ctx.docker
    expected = [n for n in manifest.nodes if n.running]

    def check() -> Verdict:
        states = docker.states([n.name for n in manifest.nodes])
        for n in expected:
            if not states[n.name].running:
                return Verdict(False, f"{n.name} is {states[n.name].status}", n.name)
        for n in expected:
            if n.services is None:
                continue
            boot = docker.exec(n.name, "systemctl", "is-system-running", check=False).stdout.strip()
            if boot in SYSTEMD_SETTLING or not boot:
                return Verdict(False, f"{n.name} is still booting (systemd: {boot or 'no answer'})", n.name)
            if n.services:
                active = docker.exec(n.name, "systemctl", "is-active", *n.services, check=False).stdout.split()
                down = [s for s, state in zip(n.services, active, strict=False) if state != "active"]
                if down:
                    return Verdict(False, f"{n.name}: {', '.join(down)} not active yet", n.name)
        if manifest.healthy:
            return ctx.health()
        return Verdict(True, f"{len(expected)} nodes running" + (", their services active"
                                                                  if any(n.services for n in expected) else ""))
    return check


# -- save -----------------------------------------------------------------------------------------
def check_saveable(ctx: LabContext, name: str) -> dict[str, str]:
    """Refuse a save that cannot be taken, before anything stops; each node's container state."""
    validate_name(name)
    if (folder(ctx, name) / MANIFEST).exists():
        raise LabError(f"lab {ctx.project!r} has a snapshot {name!r} already; pick another name or delete it "
                       f"first (`pgha-lab snapshot delete {name}`).")
    if not ctx.paths.compose_file.exists():
        raise LabError(f"there is no lab {ctx.project!r} here; `pgha-lab up` makes it, then it can be saved.")
    states = {n: s.status for n, s in ctx.docker.states(list(ctx.topology.names)).items()}
    missing = [n for n, s in states.items() if s == "missing"]
    if missing:
        raise LabError(f"{', '.join(missing)} of lab {ctx.project!r} {'has' if len(missing) == 1 else 'have'} no "
                       f"container; `pgha-lab up` makes {'it' if len(missing) == 1 else 'them'}, then save.")
    paused = [n for n, s in states.items() if s == "paused"]
    if paused:
        raise LabError(f"{', '.join(paused)} {'is' if len(paused) == 1 else 'are'} paused, and a frozen node cannot "
                       f"shut down cleanly; `pgha-lab chaos resume {paused[0]}` first.")
    return states


def save(ctx: LabContext, name: str, note: Callable[[str], None] = lambda _: None) -> Outcome:
    states = check_saveable(ctx, name)
    started = time.monotonic()
    topo, docker = ctx.topology, ctx.docker
    running = [n for n in topo.names if states[n] == "running"]
    with ThreadPoolExecutor(max_workers=len(topo.names)) as pool:
        services = dict(zip(running, pool.map(lambda n: _systemd_services(ctx, n), running), strict=True))
    systemd_lab = any(s is not None for s in services.values())
    with ThreadPoolExecutor(max_workers=len(topo.names)) as pool:
        etc = dict(zip(running, pool.map(lambda n: _etc_files(ctx, n) if services[n] is not None else {}, running),
                       strict=True))
    healthy = None if systemd_lab or not running else ctx.health().ok
    note(f"stopping {len(running)} nodes (HAProxy and db nodes first, etcd last)" if running else
         "the nodes are stopped already")
    labels = {LABEL_SNAPSHOT_PROJECT: ctx.project, LABEL_SNAPSHOT_NAME: name}
    try:
        for wave in STOP_WAVES:
            docker.stop_many([n.name for n in topo.nodes if n.role in wave and n.name in running])
        note(f"committing {len(topo.nodes)} nodes' file systems and copying their data volumes")
        manifest = Manifest(name, ctx.project, datetime.now(UTC).isoformat(timespec="seconds"),
                            shape_of(topo), _capture(ctx, name, labels, running, services, etc), healthy)
        _write(ctx, manifest)
    except BaseException:
        # Nothing half-made stays: the parts taken so far go, and the lab boots as it was.
        _remove_parts(ctx, name)
        docker.start_many(running)
        raise
    note(f"booting {len(running)} nodes again" if running else "the lab stays stopped, as it was")
    docker.start_many(running)
    verdict = wait_until(_booted(ctx, manifest), BOOT_DEADLINE_S, interval_s=0.5)
    manifest.save_seconds = round(time.monotonic() - started, 2)
    _write(ctx, manifest)
    return Outcome(manifest, manifest.save_seconds, running, verdict)


def _capture(ctx: LabContext, name: str, labels: dict[str, str], running: list[str],
             services: dict[str, list[str] | None], etc: dict[str, dict[str, str]]) -> list[NodeRecord]:
    """Commit every (stopped) node and copy its volumes; the records of what was taken."""
    docker = ctx.docker

    def commit(node) -> NodeRecord:
        base = docker.running_image(node) or ""
        env = set(docker.image_env(base))
        blank = [line.partition("=")[0] for line in docker.env_of(node) if line not in env]
        ref = snapshot_image(ctx.project, node.name, name)
        origin, _ = docker.origin_image(node)   # a node restored from a snapshot keeps its lab image's
        docker.commit(node, ref, {**labels, LABEL_SNAPSHOT_BASE: origin or base}, blank)
        vols = [VolumeCopy(vol, target, snapshot_volume(ctx.project, node.name, name) + (f"-{i}" if i else ""))
                for i, (vol, target) in enumerate(docker.named_volumes(node))]
        return NodeRecord(node.name, node.role.value, ref, node.name in running, services.get(node.name),
                          vols, max(0, docker.image_size(ref) - docker.image_size(base)), etc.get(node.name, {}))

    nodes = list(ctx.topology.nodes)
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        records = list(pool.map(commit, nodes))
    pairs = [(v.volume, v.copy) for r in records for v in r.volumes]
    for _, copy in pairs:
        docker.create_volume(copy, labels)
    if pairs:
        sizes = docker.copy_volumes(pairs, records[0].image)
        for r in records:
            for v in r.volumes:
                v.bytes = sizes.get(v.copy, 0)
    return records


def _write(ctx: LabContext, manifest: Manifest) -> None:
    where = folder(ctx, manifest.name)
    (where / HOST_FILES_DIR).mkdir(parents=True, exist_ok=True)
    where.chmod(0o700)   # what the nodes hold: their keys and passwords
    for f in HOST_FILES:
        src = ctx.paths.state / f
        if src.exists():
            shutil.copy2(src, where / HOST_FILES_DIR / f)
    (where / MANIFEST).write_text(json.dumps(manifest.as_dict(), indent=2) + "\n")


# -- restore --------------------------------------------------------------------------------------
def check_restorable(ctx: LabContext, name: str) -> Manifest:
    """Refuse a restore that cannot be done, before anything stops; the snapshot's manifest."""
    manifest = load(ctx, name)
    if not ctx.paths.compose_file.exists():
        raise LabError(f"there is no lab {ctx.project!r} here ({ctx.paths.compose_file} is missing); "
                       f"`pgha-lab up` makes it in the snapshot's shape, then restore.")
    mismatch = shape_mismatch(manifest.shape, shape_of(ctx.topology))
    if mismatch:
        raise LabError(f"snapshot {name!r} cannot be restored here: {mismatch}; bring the lab back to that "
                       "shape (`pgha-lab up` with the same "
                       "--db-nodes/--etcd-nodes/--haproxy-nodes) or save a new one.")
    lost = missing_parts(ctx, manifest)
    if lost:
        raise LabError(f"snapshot {name!r} is incomplete: the engine no longer has {', '.join(lost[:3])}"
                       f"{' and more' if len(lost) > 3 else ''}; `pgha-lab "
                       f"snapshot delete {name}` removes what is left.")
    return manifest


def restore(ctx: LabContext, name: str, note: Callable[[str], None] = lambda _: None) -> Outcome:
    manifest = check_restorable(ctx, name)
    started = time.monotonic()
    topo, docker = ctx.topology, ctx.docker
    disks.prepare(ctx.paths, topo)   # after a host reboot a db node's disk is mounted again first
    note(f"replacing {len(topo.nodes)} nodes with the snapshot's")
    docker.remove_containers(list(topo.nodes))
    override = folder(ctx, name) / OVERRIDE
    override.write_text(yaml.safe_dump({"services": {n.name: {"image": n.image} for n in manifest.nodes}}))
    docker.compose("up", "--no-start", "--force-recreate", "--remove-orphans", over=override)
    for record in manifest.nodes:
        if record.etc:
            docker.put_files(topo.node(record.name), record.etc)
    pairs = [(v.copy, v.volume) for n in manifest.nodes for v in n.volumes]
    if pairs:
        note(f"copying {len(pairs)} data volumes back")
        docker.copy_volumes(pairs, manifest.nodes[0].image)
    for f in HOST_FILES:
        saved = folder(ctx, name) / HOST_FILES_DIR / f
        if saved.exists():
            shutil.copy2(saved, ctx.paths.state / f)
        else:
            (ctx.paths.state / f).unlink(missing_ok=True)
    booted = [n.name for n in manifest.nodes if n.running]
    note(f"booting {len(booted)} nodes")
    docker.start_many(booted)
    verdict = wait_until(_booted(ctx, manifest), BOOT_DEADLINE_S, interval_s=0.5)
    return Outcome(manifest, time.monotonic() - started, booted, verdict)


# -- delete ---------------------------------------------------------------------------------------
def delete(ctx: LabContext, name: str) -> Manifest:
    manifest = load(ctx, name)
    _remove(ctx, manifest.nodes, name)
    return manifest


def _remove(ctx: LabContext, nodes: list[NodeRecord], name: str) -> None:
    ctx.docker.remove_images([n.image for n in nodes])
    ctx.docker.remove_volumes([v.copy for n in nodes for v in n.volumes])
    shutil.rmtree(folder(ctx, name), ignore_errors=True)


def _remove_parts(ctx: LabContext, name: str) -> None:
    """Whatever the engine holds of one snapshot, found by its labels (a save that failed half-way)."""
    docker = ctx.docker
    ours, named = f"{LABEL_SNAPSHOT_PROJECT}={ctx.project}", f"{LABEL_SNAPSHOT_NAME}={name}"
    docker.remove_images(sorted(set(docker.images_labelled(ours)) & set(docker.images_labelled(named))))
    docker.remove_volumes(sorted(set(docker.volumes_labelled(ours)) & set(docker.volumes_labelled(named))))
    shutil.rmtree(folder(ctx, name), ignore_errors=True)


def delete_all(paths: LabPaths, docker: LabDocker) -> list[str]:
    """Every snapshot of a lab, and whatever a snapshot interrupted half-way left in the engine (all of it
    is labelled with the lab), also for a lab whose topology is gone; the names of the manifests removed."""
    base = paths.state / SNAPSHOTS
    names = sorted(f.parent.name for f in base.glob(f"*/{MANIFEST}")) if base.is_dir() else []
    label = f"{LABEL_SNAPSHOT_PROJECT}={paths.project}"
    docker.remove_images(docker.images_labelled(label))
    docker.remove_volumes(docker.volumes_labelled(label))
    shutil.rmtree(base, ignore_errors=True)
    return names
