"""Building the lab's node images: the base image first, then etcd, dbnode and haproxy
concurrently, each step reported; `ensure_built` builds only when the images are out of date."""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgha_lab.errors import LabError
from pgha_lab.gateway import BASE_IMAGE, BUILD_READ_TIMEOUT, IMAGES, Engine
from pgha_lab.gateway import IMAGE_LABEL as LABEL
from pgha_lab.imaging import baseimage, wheelhouse
from pgha_lab.imaging.pg_install import PG_INSTALL_CHOICES, choose_pg_install, pgdg_probe, remember_pgdg
from pgha_lab.imaging.progress import BuildProgress, Lines, Silent, fmt_seconds
from pgha_lab.imaging.recipes import context_tar, outdated, prune_superseded, recipe_digest
from pgha_lab.imaging.steps import BuildFailed, StepTiming, docker_build, failures, is_work_step
from pgha_lab.paths import LabPaths


@dataclass
class BuildResult:
    images: dict[str, str]
    pg_install: str
    pg_install_reason: str
    base: baseimage.Choice
    steps: list[StepTiming] = field(default_factory=list)
    seconds: float = 0.0


def sdk(timeout: int = BUILD_READ_TIMEOUT) -> Engine:
    """The engine with a read timeout long enough for a build; LabError when there is none."""
    return Engine.connect(timeout)


def engine_arch(engine: Engine) -> str:
    """The engine's architecture (not the host's: Docker Desktop may differ from the laptop)."""
    return engine.arch()


# -- the whole build -----------------------------------------------------------------------
@dataclass
class _Plan:
    paths: LabPaths
    pg_install: str
    pg_source_url: str | None
    no_cache: bool
    progress: BuildProgress
    timings: list[StepTiming] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        return self.paths.cache / "logs"


def _timed(plan: _Plan, image: str, step: str, action: Callable[[], Any]) -> Any:
    started = time.monotonic()
    plan.progress.start(image, step)
    try:
        value = action()
    except LabError as exc:
        plan.progress.fail(image, step, time.monotonic() - started, str(exc))
        raise
    seconds = time.monotonic() - started
    plan.timings.append(StepTiming(image, step, seconds))
    plan.progress.done(image, step, seconds)
    return value


def _ensure_ubuntu(plan: _Plan, client: Engine) -> baseimage.Choice:
    choice = baseimage.decide(baseimage.gather(client))
    plan.progress.info(f"Ubuntu 24.04: {choice.reason}")
    if choice.source is baseimage.Source.PULL:
        try:
            _timed(plan, "ubuntu", f"pull {baseimage.UBUNTU_REF}", lambda: baseimage.pull(client))
        except Exception:
            # A registry that answered the probe may still fail the pull: bootstrap instead.
            facts = baseimage.Facts(False, False, False, baseimage.debootstrap_missing() is None)
            choice = baseimage.decide(facts)
            plan.progress.info(f"Ubuntu 24.04: pull failed; {choice.reason}")
    if choice.source is baseimage.Source.DEBOOTSTRAP:
        baseimage.bootstrap(client, plan.paths.cache, plan.logs / "debootstrap.log",
                            plan.paths.images / "base" / "setup-apt.sh",
                            step=lambda name, action: _timed(plan, "ubuntu", name, action))
    return choice


def _build_role(plan: _Plan, role: str, buildargs: dict[str, str], extra: dict[str, Path] | None = None,
                dockerfile: str = "Dockerfile", labels: dict[str, str] | None = None) -> str:
    client = sdk()
    folder = plan.paths.images / role
    if not (folder / dockerfile).is_file():
        raise LabError(f"{folder / dockerfile} is missing; the checkout is incomplete.")
    tag = BASE_IMAGE if role == "base" else IMAGES[role]
    all_labels = {f"{LABEL}.role": role, f"{LABEL}.recipe": recipe_digest(plan.paths, role), **(labels or {})}
    started = time.monotonic()
    mine: list[StepTiming] = []
    image_id = docker_build(client, image=role, tag=tag, context=context_tar(folder, extra),
                            dockerfile=dockerfile, buildargs=buildargs, labels=all_labels,
                            nocache=plan.no_cache, log=plan.logs / f"{role}.log",
                            progress=plan.progress, timings=mine)
    plan.timings.extend(mine)
    work = [t for t in mine if is_work_step(t.step)]
    cached = sum(t.cached for t in work)
    plan.progress.info(f"{tag} ready in {fmt_seconds(time.monotonic() - started)}"
                       + (f" ({cached} of {len(work)} steps from the cache)" if cached else ""))
    return image_id


def build(paths: LabPaths, *, pg_install: str = "auto", pg_source_url: str | None = None,
          no_cache: bool = False, progress: BuildProgress | None = None) -> BuildResult:
    """Build (or refresh from the cache) the base and every node image.

    Order: the Ubuntu base, then the lab base; then etcd, haproxy and dbnode concurrently, so
    the small images finish while PostgreSQL compiles. The wheelhouse is filled on the host
    meanwhile."""
    if pg_install not in PG_INSTALL_CHOICES:
        raise LabError(f"--pg-install must be one of {', '.join(PG_INSTALL_CHOICES)}, not {pg_install!r}.")
    if pg_source_url and pg_install == "pgdg":
        raise LabError("--pg-source-url is for --pg-install source; pgdg installs from the apt repository.")
    if pg_source_url:
        pg_install = "source"   # a tarball URL given with auto means: build from it
    progress = progress or Silent()
    plan = _Plan(paths, pg_install, pg_source_url, no_cache, progress)
    started = time.monotonic()
    client = sdk()
    arch = engine_arch(client)
    lock_file = paths.images / "dbnode" / "patroni.lock"
    plan.logs.mkdir(parents=True, exist_ok=True)
    try:
        return _build_all(plan, client, arch, lock_file, started)
    finally:
        progress.close()


def _build_all(plan: _Plan, client: Engine, arch: str, lock_file: Path, started: float) -> BuildResult:
    paths, pg_install, pg_source_url, progress = plan.paths, plan.pg_install, plan.pg_source_url, plan.progress
    with ThreadPoolExecutor(max_workers=4) as pool:
        # pip on the host needs nothing from the engine: start it first.
        wheels = pool.submit(_timed, plan, "dbnode", f"wheelhouse for cp312/{wheelhouse.machine_for(arch)} (host pip)",
                             lambda: wheelhouse.prepare(lock_file, paths.cache, arch, log=plan.logs / "wheelhouse.log"))
        # A failure here is reported once the wheelhouse's pip run (seconds) has ended: a running
        # future cannot be cancelled.
        try:
            choice = _ensure_ubuntu(plan, client)
            _build_role(plan, "base", {"UBUNTU": choice.ref})
        except BuildFailed as exc:
            raise LabError(f"building {exc.image} failed at {exc.step}; the full log is {exc.log}.") from None
        except LabError:
            raise
        except Exception as exc:   # the engine went away, an import or pull broke: still one sentence
            raise LabError(f"preparing the Ubuntu base failed: {type(exc).__name__}: {exc}.") from None
        base = client.image(BASE_IMAGE)
        if base is None:   # the build above tags it; only something removing it at once gets here
            raise LabError(f"{BASE_IMAGE} is gone right after its build; run `pgha-lab build` again.")
        base_id = base.id
        node_args = {"BASE": BASE_IMAGE}

        def dbnode() -> str:
            method, reason = choose_pg_install(
                pg_install, lambda: _timed(plan, "dbnode", "probe the PostgreSQL apt repository",
                                           lambda: pgdg_probe(client, paths.cache, base_id)))
            plan.progress.info(f"PostgreSQL 18: {reason}")
            result_meta["pg_install"], result_meta["reason"] = method, reason
            house = wheels.result()

            def build_with(method: str) -> str:
                args = dict(node_args)
                if method == "source" and pg_source_url:
                    args["PG_SOURCE_URL"] = pg_source_url
                return _build_role(plan, "dbnode", args, extra={"wheelhouse": house},
                                   dockerfile="Dockerfile" if method == "source" else "Dockerfile.pgdg",
                                   labels={f"{LABEL}.pg-install": method})

            try:
                return build_with(method)
            except BuildFailed:
                if pg_install != "auto" or method != "pgdg":
                    raise
            # The repository answered the probe but the install failed: auto means "whatever
            # works here", so fall back to the tarball and say so.
            reason = ("auto: installing from the PostgreSQL apt repository failed, "
                      "so it is built from the release tarball")
            plan.progress.info(f"PostgreSQL 18: {reason}")
            result_meta["pg_install"], result_meta["reason"] = "source", reason
            remember_pgdg(paths.cache, base_id, False)   # so the next build does not retry at once
            return build_with("source")

        result_meta: dict[str, str] = {"pg_install": pg_install, "reason": ""}
        futures = {"dbnode": pool.submit(dbnode),
                   "etcd": pool.submit(_build_role, plan, "etcd", node_args),
                   "haproxy": pool.submit(_build_role, plan, "haproxy", node_args)}
        failed = failures(futures)
    if failed:
        raise LabError("the build failed: " + "; ".join(failed) + ".")
    freed = prune_superseded(client, paths)
    if freed:
        progress.info(f"removed {freed} untagged lab image(s) left from earlier builds")
    return BuildResult(images=dict(IMAGES), pg_install=result_meta["pg_install"],
                       pg_install_reason=result_meta["reason"], base=choice,
                       steps=list(plan.timings), seconds=time.monotonic() - started)


def ensure_built(paths: LabPaths, *, pg_install: str = "auto", progress: BuildProgress | None = None,
                 announce: Callable[[list[str]], None] | None = None) -> list[str]:
    """Build when any image is missing or out of date (told to `announce` first); the roles that
    were. An up-to-date set costs one image lookup per role; a rebuild reuses the build cache for
    every unchanged step."""
    stale = outdated(sdk(), paths)
    if stale:
        if announce:
            announce(stale)
        build(paths, pg_install=pg_install, progress=progress or Lines())
    return stale
