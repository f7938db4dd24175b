"""What `pgha-lab doctor` checks on a host: engine, Compose v2, architecture, disk, registry,
debootstrap, and which lab images exist. Each check is a plain record a test can read."""
from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from typing import Any

from pgha_lab.errors import LabError
from pgha_lab.gateway import BASE_IMAGE, IMAGE_LABEL, IMAGES
from pgha_lab.imaging import baseimage, images, recipes
from pgha_lab.paths import LabPaths

MIN_FREE_GB = 10.0   # a cold build with the PostgreSQL compile needs about 3 GB; leave room


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True   # a failing optional check is a note, not a failure

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _engine() -> tuple[Check, Any]:
    from pgha_lab.gateway import Engine
    try:
        client = Engine.connect()
    except LabError as exc:
        return Check("engine", False, str(exc)), None
    version = client.version()
    return Check("engine", True, f"Docker Engine {version.get('Version')} (API {version.get('ApiVersion')}, "
                                 f"{client.info().get('Driver', '?')})"), client


def _compose() -> Check:
    from pgha_lab.gateway import require_compose
    try:
        return Check("compose", True, f"Compose {require_compose()}")
    except LabError as exc:
        return Check("compose", False, str(exc))


def _disk(client: Any, paths: LabPaths) -> Check:
    # The engine's root dir is where images land; only measurable when the engine is local.
    root = client.info().get("DockerRootDir", "/var/lib/docker") if client else "/"
    target = root if os.path.exists(root) else str(paths.home)
    usage = shutil.disk_usage(target)
    free_gb = usage.free / 2**30
    return Check("disk", free_gb >= MIN_FREE_GB,
                 f"{free_gb:.1f} GB free on {target} (builds want {MIN_FREE_GB:.0f} GB)")


# Every systemd (a bare lab's nodes, all root on the host) takes inotify instances from root's
# host-wide allowance; at the common default of 128 a few bare labs exhaust it and a node fails to boot
# ("Failed to create inotify object: Too many open files").
INOTIFY_FILE = "/proc/sys/fs/inotify/max_user_instances"
INOTIFY_WANTED = 1024


def inotify_check(limit: int | None) -> Check:
    """fs.inotify.max_user_instances, as read from the host (None: unreadable, e.g. not Linux)."""
    if limit is None:
        return Check("inotify", True, "fs.inotify.max_user_instances not readable here; not checked", required=False)
    if limit >= INOTIFY_WANTED:
        return Check("inotify", True, f"fs.inotify.max_user_instances={limit}", required=False)
    return Check("inotify", False, f"fs.inotify.max_user_instances={limit}: a few bare labs at once can run out "
                                   f"and a node then fails to boot; raise it to {INOTIFY_WANTED} "
                                   f"(scripts/setup-host.sh does, or `sysctl -w fs.inotify.max_user_instances="
                                   f"{INOTIFY_WANTED}`)", required=False)


def _inotify_limit() -> int | None:
    try:
        with open(INOTIFY_FILE) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def run(paths: LabPaths, *, registry_timeout: float = 5.0) -> list[Check]:
    checks: list[Check] = []
    engine_check, client = _engine()
    checks.append(engine_check)
    checks.append(_compose())
    if client is None:
        return checks
    info = client.info()
    arch = images.engine_arch(client)
    try:
        from pgha_lab.imaging.wheelhouse import machine_for
        checks.append(Check("architecture", True,
                            f"{machine_for(arch)} ({info.get('OSType')}, {info.get('NCPU')} CPUs, "
                                                  f"{info.get('MemTotal', 0) / 2**30:.1f} GiB)"))
    except LabError as exc:
        checks.append(Check("architecture", False, str(exc)))
    checks.append(_disk(client, paths))
    checks.append(inotify_check(_inotify_limit()))
    reachable, detail = baseimage.registry_reachable(timeout=registry_timeout)
    checks.append(Check("registry", reachable,
                        f"{baseimage.UBUNTU_REF} manifest " + ("found" if reachable else f"unavailable: {detail}"),
                        required=False))
    missing = baseimage.debootstrap_missing()
    checks.append(Check("debootstrap", missing is None,
                        "can bootstrap Ubuntu 24.04 without a registry" if missing is None else missing,
                        required=False))
    have = recipes.existing(client)
    for ubuntu in (baseimage.UBUNTU_REF, baseimage.BOOTSTRAPPED_REF):
        if baseimage.image_exists(client, ubuntu):
            checks.append(Check("ubuntu base", True, f"{ubuntu} present", required=False))
            break
    else:
        # Without a registry or debootstrap, no build can start.
        checks.append(Check("ubuntu base", reachable or missing is None,
                            "none local yet; `pgha-lab build` will "
                            + ("pull it" if reachable else "bootstrap it" if missing is None
                               else "have no way to get one"),
                            required=not (reachable or missing is None)))
    for role, ref in {"base": BASE_IMAGE, **IMAGES}.items():
        if role in have:
            meta = have[role]
            extra = ""
            method = meta["labels"].get(f"{IMAGE_LABEL}.pg-install")
            if method:
                extra = f", PostgreSQL from {method}"
            checks.append(Check(f"image {role}", True, f"{ref} {meta['size'] / 1e6:.0f} MB{extra}", required=False))
        else:
            checks.append(Check(f"image {role}", False, f"{ref} not built; run `pgha-lab build`", required=False))
    return checks


def healthy(checks: list[Check]) -> bool:
    return all(c.ok for c in checks if c.required)
