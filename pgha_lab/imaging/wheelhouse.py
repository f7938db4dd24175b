"""The Patroni wheelhouse: the lock file, the pip platform tags for the engine's architecture,
and the host-side pip runs that fill .cache/wheelhouse for an offline install in the image."""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pgha_lab.errors import LabError

# The node image's interpreter: Ubuntu 24.04 ships CPython 3.12 and glibc 2.39.
PYTHON_VERSION = "3.12"
ABI = "cp312"
GLIBC_MINOR = 39
# Oldest manylinux tag worth asking for; pip (23.x) does not expand a manylinux_2_39 tag to
# the older ones a wheel may carry, so every tag is listed.
OLDEST_GLIBC_MINOR = 5

_PIN_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[(?P<extras>[^\]]*)\])?==(?P<version>[^\s;#]+)")

# Docker reports its architecture either the Go way (docker version) or the uname way
# (docker info); pip wants the uname way.
_MACHINE = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    extras: tuple[str, ...] = ()
    sdist_only: bool = False   # "# sdist" in the lock: build a wheel on the host first

    @property
    def requirement(self) -> str:
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        return f"{self.name}{extras}=={self.version}"


def parse_lock(text: str) -> list[Pin]:
    """name==version lines (extras allowed), comments and blank lines ignored; anything else
    is a mistake in the lock and refused, so the image never installs an unpinned project."""
    pins: list[Pin] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN_RE.match(line)
        if not match:
            raise LabError(f"patroni.lock line {number} ({line!r}) is not a name==version pin; fix the lock file.")
        comment = line.partition("#")[2].strip().lower()
        extras = tuple(e.strip() for e in (match["extras"] or "").split(",") if e.strip())
        pins.append(Pin(match["name"], match["version"], extras, sdist_only=comment.startswith("sdist")))
    names = [p.name.lower().replace("_", "-") for p in pins]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise LabError(f"patroni.lock pins {', '.join(dupes)} more than once; keep one line each.")
    return pins


def machine_for(engine_arch: str) -> str:
    """uname-style machine for the engine's architecture, or LabError for one the lab lacks."""
    try:
        return _MACHINE[engine_arch.lower()]
    except KeyError:
        raise LabError(f"the Docker engine runs on {engine_arch}, but the lab's "
                       "images are built for amd64 and arm64 only.") from None


def platform_tags(engine_arch: str) -> list[str]:
    """pip --platform values a wheel may carry to run on noble's glibc on that architecture."""
    machine = machine_for(engine_arch)
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC_MINOR, OLDEST_GLIBC_MINOR - 1, -1)]
    tags.append(f"manylinux2014_{machine}")
    if machine == "x86_64":   # the legacy aliases exist for x86_64 only
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    return tags


def download_args(engine_arch: str) -> list[str]:
    """The pip download options selecting wheels for the image's interpreter, not the host's."""
    args = ["--only-binary=:all:"]
    for tag in platform_tags(engine_arch):
        args += ["--platform", tag]
    args += ["--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", ABI]
    return args


def wheelhouse_dir(cache: Path, lock_text: str, engine_arch: str) -> Path:
    """One folder per lock content and architecture, so a changed lock never mixes wheels."""
    digest = hashlib.sha256(lock_text.encode()).hexdigest()[:12]
    return cache / "wheelhouse" / f"{ABI}-{machine_for(engine_arch)}-{digest}"


def prepare(lock_file: Path, cache: Path, engine_arch: str, *, log: Path | None = None) -> Path:
    """Fill (or reuse) the wheelhouse for `lock_file`; returns its folder.

    Uses pip as this host has it configured (its index, proxy and certificates stay on the
    host: nothing of pip's configuration enters an image)."""
    text = lock_file.read_text()
    pins = parse_lock(text)
    target = wheelhouse_dir(cache, text, engine_arch)
    done = target / ".complete"
    if done.exists():
        return target
    if target.exists():
        shutil.rmtree(target)
    work = target.with_name(target.name + ".partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    sdists = [p.requirement for p in pins if p.sdist_only]
    if sdists:
        # Pure-Python sdists make portable py3-none-any wheels, so the host may build them.
        _run(pip + ["wheel", "--no-deps", "--wheel-dir", str(work), *sdists], log)
    _run(pip + ["download", *download_args(engine_arch), "--find-links", str(work),
                "--dest", str(work), *[p.requirement for p in pins]], log)
    work.rename(target)
    done.write_text(text)
    return target


def _run(cmd: list[str], log: Path | None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if log is not None:
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise LabError("pip could not prepare the Patroni wheelhouse (pip "
                       f"must reach a package index from this host):\n{tail}")
