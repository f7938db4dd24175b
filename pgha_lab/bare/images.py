"""The bare nodes' images: each role's lab image with systemd added and the lab's own start-up,
helpers and Patroni taken away (images/bare). Built after the lab images they are made from, and
again whenever those change or images/bare does."""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from pgha_lab.errors import LabError
from pgha_lab.gateway import BARE_IMAGES, IMAGES, ROLE_IMAGES, Engine
from pgha_lab.gateway import IMAGE_LABEL as LABEL
from pgha_lab.imaging import images, wheelhouse
from pgha_lab.imaging.progress import BuildProgress, Lines, fmt_seconds
from pgha_lab.imaging.recipes import context_tar, recipe_digest
from pgha_lab.imaging.steps import StepTiming, docker_build, failures, is_work_step
from pgha_lab.paths import LabPaths

FOLDER = "bare"                        # images/bare: one Dockerfile for every role
PARENT_LABEL = f"{LABEL}.parent"       # the lab image a bare image was made from (its id)


def _role_label(role: str) -> str:
    return f"bare-{role}"


def outdated(client: Engine, paths: LabPaths) -> list[str]:
    """The roles whose bare image is missing, was built from other files than images/bare holds now,
    or from another build of the role's lab image."""
    digest = recipe_digest(paths, FOLDER)
    stale = []
    for role in ROLE_IMAGES:
        have, parent = client.image(BARE_IMAGES[role]), client.image(IMAGES[role])
        labels = have.labels if have else {}
        if (have is None or parent is None or labels.get(f"{LABEL}.recipe") != digest
                or labels.get(PARENT_LABEL) != parent.id):
            stale.append(role)
    return stale


def build(paths: LabPaths, roles: list[str], progress: BuildProgress) -> None:
    """Build the bare images of `roles` side by side (the lab images must exist)."""
    client = images.sdk()
    folder = paths.images / FOLDER
    if not (folder / "Dockerfile").is_file():
        raise LabError(f"{folder / 'Dockerfile'} is missing; the checkout is incomplete.")
    logs = paths.cache / "logs"
    lock_file = paths.images / "dbnode" / "patroni.lock"
    digest = recipe_digest(paths, FOLDER)

    def one(role: str) -> None:
        parent = client.image(IMAGES[role])
        if parent is None:
            raise LabError(f"{IMAGES[role]} is missing; `pgha-lab build` makes it.")
        extra = {}
        if role == "dbnode":
            house = wheelhouse.prepare(lock_file, paths.cache, images.engine_arch(client),
                                       log=logs / "wheelhouse.log")
            extra = {"wheelhouse": house, "patroni.lock": lock_file}
        started = time.monotonic()
        timings: list[StepTiming] = []
        name = _role_label(role)
        docker_build(client, image=name, tag=BARE_IMAGES[role], context=context_tar(folder, extra),
                     dockerfile="Dockerfile", buildargs={"NODE": IMAGES[role], "ROLE": role},
                     labels={f"{LABEL}.role": name, f"{LABEL}.recipe": digest, PARENT_LABEL: parent.id},
                     nocache=False, log=logs / f"{name}.log", progress=progress, timings=timings)
        progress.info(f"{BARE_IMAGES[role]} ready in {fmt_seconds(time.monotonic() - started)}"
                      + _cached_note(timings))

    with ThreadPoolExecutor(max_workers=len(roles) or 1) as pool:
        failed = failures({role: pool.submit(one, role) for role in roles})
    if failed:
        raise LabError("the bare images' build failed: " + "; ".join(failed) + ".")
    _prune(client)


def _cached_note(timings: list[StepTiming]) -> str:
    work = [t for t in timings if is_work_step(t.step)]
    cached = sum(t.cached for t in work)
    return f" ({cached} of {len(work)} steps from the cache)" if cached else ""


def _prune(client: Engine) -> None:
    """Bare images a rebuild replaced (untagged now); one a container still uses stays."""
    names = {_role_label(r) for r in ROLE_IMAGES}
    for img in client.dangling_images(f"{LABEL}.role"):
        if (img.labels or {}).get(f"{LABEL}.role") in names:
            client.remove_image(img.id)


def ensure_built(paths: LabPaths, *, pg_install: str = "auto", progress: BuildProgress | None = None,
                 announce: Callable[[list[str]], None] | None = None) -> list[str]:
    """The lab images first (the bare ones are made from them), then the bare images that are missing
    or out of date; the roles rebuilt."""
    progress = progress or Lines()
    images.ensure_built(paths, pg_install=pg_install, progress=progress, announce=announce)
    stale = outdated(images.sdk(), paths)
    if stale:
        if announce:
            announce([_role_label(r) for r in stale])
        try:
            build(paths, stale, progress)
        finally:
            progress.close()
    return stale
