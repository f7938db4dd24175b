"""The lab's node images: names, build contexts, the PostgreSQL install choice, and the
concurrent builds (docker SDK, classic builder) with per-step progress."""
from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pgha_lab.build import baseimage, wheelhouse
from pgha_lab.build.progress import Lines, Progress, Silent, fmt_seconds
from pgha_lab.errors import LabError
from pgha_lab.gateway import BASE_IMAGE, BUILD_READ_TIMEOUT, IMAGE_LABEL as LABEL, IMAGES, Engine
from pgha_lab.paths import LabPaths

ROLES = tuple(IMAGES)
PG_INSTALL_CHOICES = ("auto", "pgdg", "source")
PGDG_PROBE_TIMEOUT = 120.0            # seconds for the whole probe container
PGDG_PROBE_TTL = 6 * 3600             # the probe's answer is trusted this long
LOG_TAIL_LINES = 25
WORK_INSTRUCTIONS = {"RUN", "COPY", "ADD"}


@dataclass(frozen=True)
class StepTiming:
    image: str
    step: str
    seconds: float
    cached: bool = False


@dataclass
class BuildResult:
    images: dict[str, str]
    pg_install: str
    pg_install_reason: str
    base: baseimage.Choice
    steps: list[StepTiming] = field(default_factory=list)
    seconds: float = 0.0


# -- facts about existing images ---------------------------------------------------------------
def sdk(timeout: int = BUILD_READ_TIMEOUT) -> Engine:
    """The engine with a read timeout long enough for a build; LabError when there is none."""
    return Engine.connect(timeout)


def existing(engine: Any) -> dict[str, dict[str, Any]]:
    """role -> {id, size, created, labels} for the lab images the engine has (base included)."""
    found: dict[str, dict[str, Any]] = {}
    for role, ref in {"base": BASE_IMAGE, **IMAGES}.items():
        img = engine.image(ref)
        if img is not None:
            found[role] = {"ref": ref, "id": img.id, "size": img.size, "created": img.created, "labels": img.labels}
    return found


def engine_arch(engine: Engine) -> str:
    """The engine's architecture (not the host's: Docker Desktop may differ from the laptop)."""
    return engine.arch()


# -- the PostgreSQL install method -----------------------------------------------------------
def choose_pg_install(requested: str, pgdg_reachable: Callable[[], bool]) -> tuple[str, str]:
    """(method, reason). `auto` asks the probe; explicit choices never probe."""
    if requested not in PG_INSTALL_CHOICES:
        raise LabError(f"--pg-install must be one of {', '.join(PG_INSTALL_CHOICES)}, not {requested!r}.")
    if requested == "pgdg":
        return "pgdg", "requested: the PostgreSQL apt repository"
    if requested == "source":
        return "source", "requested: compiled from the release tarball"
    if pgdg_reachable():
        return "pgdg", "auto: the PostgreSQL apt repository is reachable"
    return "source", "auto: the PostgreSQL apt repository is unreachable, so it is built from the release tarball"


# Runs in a throwaway container from the base image. It unpacks postgresql-common's pgdg
# script (without installing the package), lets it add the repository as it would on a host,
# and asks apt whether postgresql-18 became installable. Only noble main is indexed first so
# the probe stays a few seconds; the repository's address comes from Ubuntu's script.
_PGDG_PROBE = r"""
set -e
mirror=$(cat /usr/local/lib/pgha-lab/ubuntu-mirror)
rm -f /etc/apt/sources.list.d/*
echo "deb [signed-by=/usr/share/keyrings/ubuntu-archive-keyring.gpg] $mirror noble main" >/etc/apt/sources.list
apt-get -qq update >/dev/null
cd /tmp && apt-get -qq download postgresql-common >/dev/null
dpkg-deb -x postgresql-common_*.deb /
timeout 60 sh /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y >/tmp/pgdg.log 2>&1 || true
apt-cache show postgresql-18 >/dev/null 2>&1
"""


def pgdg_probe(client: Engine, cache: Path, base_id: str) -> bool:
    """Whether the PostgreSQL apt repository works from a container; remembered for a while
    (per base image) so a warm build does not repeat the probe."""
    memo = cache / "pgdg-probe.json"
    try:
        seen = json.loads(memo.read_text())
        if seen.get("base") == base_id and time.time() - float(seen["at"]) < PGDG_PROBE_TTL:
            return bool(seen["reachable"])
    except (OSError, ValueError, KeyError):
        pass
    container = client.run(BASE_IMAGE, ["sh", "-c", _PGDG_PROBE], labels={f"{LABEL}.probe": "pgdg"})
    try:
        reachable = container.wait(timeout=PGDG_PROBE_TIMEOUT) == 0   # a timeout counts as unreachable
    finally:
        container.remove()
    remember_pgdg(cache, base_id, reachable)
    return reachable


def remember_pgdg(cache: Path, base_id: str, reachable: bool) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "pgdg-probe.json").write_text(json.dumps({"base": base_id, "reachable": reachable, "at": time.time()}))


# -- build contexts --------------------------------------------------------------------------
def context_tar(folder: Path, extra: dict[str, Path] | None = None) -> io.BytesIO:
    """The build context as an uncompressed tar: `folder`'s files plus extra folders/files
    under the given names. Owners and times are normalised so an unchanged input always
    hits the builder's cache."""
    buf = io.BytesIO()

    def add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
        info = tar.gettarinfo(str(path), arcname)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        if info.isfile():
            with path.open("rb") as fh:
                tar.addfile(info, fh)
        else:
            tar.addfile(info)

    def walk(tar: tarfile.TarFile, root: Path, prefix: str) -> None:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            add(tar, path, f"{prefix}{rel.as_posix()}")

    with tarfile.open(fileobj=buf, mode="w") as tar:
        walk(tar, folder, "")
        for name, path in (extra or {}).items():
            if path.is_dir():
                add(tar, path, name)
                walk(tar, path, f"{name}/")
            else:
                add(tar, path, name)
    buf.seek(0)
    return buf


# -- one image build -----------------------------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def is_work_step(step: str) -> bool:
    """"[3/12] RUN apt-get ..." does work; ARG, ENV, LABEL and the like take no time and say nothing."""
    return step.split("] ", 1)[-1].split(" ", 1)[0].upper() in WORK_INSTRUCTIONS


def failed_step_tail(log_text: str, lines: int = LOG_TAIL_LINES) -> str:
    """The end of a build log from the last step's header on: what the failing step printed."""
    rows = log_text.splitlines()
    starts = [i for i, row in enumerate(rows) if row.startswith("Step ")]
    rows = rows[starts[-1]:] if starts else rows
    return "\n".join(rows[-lines:])


class BuildFailed(Exception):
    def __init__(self, image: str, step: str, log: Path, tail: str):
        super().__init__(f"{image}: {step}")
        self.image, self.step, self.log, self.tail = image, step, log, tail


def docker_build(client: Engine, *, image: str, tag: str, context: io.BytesIO, dockerfile: str,
                 buildargs: dict[str, str], labels: dict[str, str], nocache: bool,
                 log: Path, progress: Progress, timings: list[StepTiming]) -> str:
    """Build with the engine's classic builder, reporting each Dockerfile step; image id."""
    log.parent.mkdir(parents=True, exist_ok=True)
    step, started, cached, image_id = "", time.monotonic(), False, ""

    def finish() -> None:
        if step:
            seconds = time.monotonic() - started
            timings.append(StepTiming(image, step, seconds, cached))   # list.append is atomic
            if is_work_step(step):   # the output keeps to the steps that do work
                progress.done(image, step, seconds, cached)

    with log.open("w") as fh:
        stream = client.build(fileobj=context, custom_context=True, dockerfile=dockerfile, tag=tag,
                              buildargs=buildargs, labels=labels, nocache=nocache, rm=True,
                              forcerm=True, pull=False)
        for chunk in stream:
            if "error" in chunk:
                fh.write(chunk["error"] + "\n")
                fh.flush()
                tail = failed_step_tail(log.read_text(errors="replace"))
                progress.fail(image, step or "build", time.monotonic() - started, tail)
                raise BuildFailed(image, step or "build", log, tail)
            # The classic builder paints a RUN's stderr red, a few characters per chunk.
            text = _ANSI.sub("", chunk.get("stream", ""))
            if not text:
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                continue
            fh.write(text)
            if text.startswith("Step "):
                finish()
                # "Step 3/12 : RUN apt-get ..." -> "[3/12] RUN apt-get ..."
                head, _, instruction = text.partition(" : ")
                step = f"[{head.split()[1]}] {instruction.strip()}"
                started, cached = time.monotonic(), False
                if is_work_step(step):
                    progress.start(image, step)
            elif text.strip() == "---> Using cache":
                cached = True
        finish()
    return image_id


# -- the whole build -----------------------------------------------------------------------
@dataclass
class _Plan:
    paths: LabPaths
    pg_install: str
    pg_source_url: str | None
    no_cache: bool
    progress: Progress
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
          no_cache: bool = False, progress: Progress | None = None) -> BuildResult:
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
        base_id = client.image(BASE_IMAGE).id
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
            reason = "auto: installing from the PostgreSQL apt repository failed, so it is built from the release tarball"
            plan.progress.info(f"PostgreSQL 18: {reason}")
            result_meta["pg_install"], result_meta["reason"] = "source", reason
            remember_pgdg(paths.cache, base_id, False)   # so the next build does not retry at once
            return build_with("source")

        result_meta: dict[str, str] = {"pg_install": pg_install, "reason": ""}
        futures = {"dbnode": pool.submit(dbnode),
                   "etcd": pool.submit(_build_role, plan, "etcd", node_args),
                   "haproxy": pool.submit(_build_role, plan, "haproxy", node_args)}
        failures: list[str] = []
        for role, fut in futures.items():
            try:
                fut.result()
            except BuildFailed as exc:
                failures.append(f"{exc.image} failed at {exc.step} (full log: {exc.log})")
            except LabError as exc:
                failures.append(f"{role}: {exc}")
            except Exception as exc:   # e.g. the engine went away mid-build: still one message
                failures.append(f"{role}: {type(exc).__name__}: {exc}")
    if failures:
        raise LabError("the build failed: " + "; ".join(failures) + ".")
    freed = prune_superseded(client, paths)
    if freed:
        progress.info(f"removed {freed} untagged lab image(s) left from earlier builds")
    return BuildResult(images=dict(IMAGES), pg_install=result_meta["pg_install"],
                       pg_install_reason=result_meta["reason"], base=choice,
                       steps=list(plan.timings), seconds=time.monotonic() - started)


def recipe_digest(paths: LabPaths, role: str) -> str:
    """A digest of images/<role> as the builder sees it; stored as a label on the image so a
    checkout with other Dockerfiles or scripts is noticed (the wheelhouse follows patroni.lock,
    which is part of it)."""
    return hashlib.sha256(context_tar(paths.images / role).getvalue()).hexdigest()[:16]


def outdated(client: Engine, paths: LabPaths) -> list[str]:
    """The lab images (base included) that are missing or were built from other files than the
    checkout holds now."""
    have = existing(client)
    return [role for role in ("base", *ROLES)
            if have.get(role, {}).get("labels", {}).get(f"{LABEL}.recipe") != recipe_digest(paths, role)]


def superseded(dangling: list[Any], paths: LabPaths) -> list[Any]:
    """The untagged lab images a rebuild replaced. A node image is untagged only once a newer one
    took its tag. Untagged images labelled as the base are also the build stages (they inherit
    the base's labels), the next build's cache: only those of another base recipe go."""
    base = recipe_digest(paths, "base")

    def replaced(labels: dict[str, str]) -> bool:
        role = labels.get(f"{LABEL}.role")
        return role in ROLES or (role == "base" and labels.get(f"{LABEL}.recipe") != base)
    return [img for img in dangling if replaced(img.labels or {})]


def prune_superseded(client: Engine, paths: LabPaths) -> int:
    """Remove superseded lab images; one a container still uses stays. The number removed."""
    removed = 0
    for img in superseded(client.dangling_images(f"{LABEL}.role"), paths):
        removed += client.remove_image(img.id)   # one a running lab's container uses stays
    return removed


def ensure_built(paths: LabPaths, *, pg_install: str = "auto", progress: Progress | None = None,
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
