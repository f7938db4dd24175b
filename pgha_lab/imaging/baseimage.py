"""Where the Ubuntu 24.04 image under every node image comes from: a local ubuntu:24.04, a
registry pull, or a debootstrapped noble imported into the engine (reused once made)."""
from __future__ import annotations

import enum
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgha_lab.errors import LabError

UBUNTU_REPO, UBUNTU_TAG = "ubuntu", "24.04"
UBUNTU_REF = f"{UBUNTU_REPO}:{UBUNTU_TAG}"
BOOTSTRAPPED_REPO = "pgha-lab/ubuntu"
BOOTSTRAPPED_REF = f"{BOOTSTRAPPED_REPO}:{UBUNTU_TAG}"

# Debian 12's debootstrap predates noble; Ubuntu's later suites all use the gutsy script.
DEBOOTSTRAP_SCRIPT = Path("/usr/share/debootstrap/scripts/gutsy")
UBUNTU_KEYRING = Path("/usr/share/keyrings/ubuntu-archive-keyring.gpg")
REGISTRY_TIMEOUT = 10.0   # seconds: an unreachable registry must not stall a build


class Source(str, enum.Enum):
    LOCAL = "local"                 # ubuntu:24.04 already in the engine
    BOOTSTRAPPED = "bootstrapped"   # our earlier debootstrap import, reused
    PULL = "pull"                   # from a registry
    DEBOOTSTRAP = "debootstrap"     # bootstrap noble now and import it


@dataclass(frozen=True)
class Facts:
    local_ubuntu: bool
    bootstrapped: bool
    registry: bool | None      # None: not probed (not needed, or the probe was skipped)
    can_debootstrap: bool


@dataclass(frozen=True)
class Choice:
    source: Source
    ref: str        # the image the base Dockerfile builds FROM
    reason: str


def decide(facts: Facts) -> Choice:
    """The base for these facts. Local images win so a build needs no network; our bootstrap
    is reused before a registry is asked, so a warm build never waits on a registry probe."""
    if facts.local_ubuntu:
        return Choice(Source.LOCAL, UBUNTU_REF, f"using the local {UBUNTU_REF}")
    if facts.bootstrapped:
        return Choice(Source.BOOTSTRAPPED, BOOTSTRAPPED_REF, f"reusing {BOOTSTRAPPED_REF}, bootstrapped earlier")
    if facts.registry:
        return Choice(Source.PULL, UBUNTU_REF, f"pulling {UBUNTU_REF}")
    if facts.can_debootstrap:
        return Choice(Source.DEBOOTSTRAP, BOOTSTRAPPED_REF,
                      f"no registry reachable: bootstrapping Ubuntu 24.04 with debootstrap as {BOOTSTRAPPED_REF}")
    raise LabError(
        f"no Ubuntu 24.04 image to build on: {UBUNTU_REF} is not local, no registry answers, and "
        "debootstrap cannot run here; run `bash scripts/setup-host.sh` as root (it installs debootstrap "
        f"and Ubuntu's keyring), or `docker load` an {UBUNTU_REF} image.")


def debootstrap_missing() -> str | None:
    """Why this host cannot bootstrap noble, or None when it can."""
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed"
    if not UBUNTU_KEYRING.is_file():
        return f"Ubuntu's archive keyring ({UBUNTU_KEYRING}) is missing"
    if not DEBOOTSTRAP_SCRIPT.is_file():
        return f"debootstrap's {DEBOOTSTRAP_SCRIPT.name} script is missing"
    if os.geteuid() != 0:
        return "debootstrap needs root"
    return None


def image_exists(client: Any, ref: str) -> bool:
    return client.image(ref) is not None


def registry_reachable(ref: str = UBUNTU_REF, timeout: float = REGISTRY_TIMEOUT) -> tuple[bool, str]:
    """Ask the engine for the image's manifest (no layers move); (reachable, detail).

    Runs in a thread with a deadline because an engine behind a silent firewall can hang far
    longer than any client timeout we set."""
    from pgha_lab.gateway import Engine
    result: dict[str, Any] = {}

    def probe() -> None:
        try:
            info = Engine.connect().inspect_distribution(ref)
            result["ok"] = True
            result["detail"] = info.get("Descriptor", {}).get("digest", "")
        except Exception as exc:   # any failure means "not usable now"
            result["ok"] = False
            # The engine's own words (e.g. a DNS failure) say more than the SDK's wrapper.
            text = getattr(exc, "explanation", None) or str(exc)
            result["detail"] = str(text).splitlines()[0][:160]

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return False, f"no answer within {timeout:.0f}s"
    return bool(result.get("ok")), str(result.get("detail", ""))


def gather(client: Any) -> Facts:
    """The facts decide() needs; the registry is asked only when nothing local will do."""
    local = image_exists(client, UBUNTU_REF)
    boot = image_exists(client, BOOTSTRAPPED_REF)
    registry: bool | None = None
    if not (local or boot):
        registry, _ = registry_reachable()
    return Facts(local_ubuntu=local, bootstrapped=boot, registry=registry,
                 can_debootstrap=debootstrap_missing() is None)


def pull(client: Any) -> None:
    client.pull(UBUNTU_REPO, UBUNTU_TAG)
    if not image_exists(client, UBUNTU_REF):
        raise LabError(f"pulling {UBUNTU_REF} did not leave the image in the engine; check `docker pull {UBUNTU_REF}`.")


def _untimed(_name: str, action: Callable[[], Any]) -> Any:
    return action()


def bootstrap(client: Any, cache: Path, log: Path, prepare_script: Path,
              step: Callable[[str, Callable[[], Any]], Any] = _untimed) -> None:
    """debootstrap a minimal noble (main and universe) and import it as BOOTSTRAPPED_REF.

    The mirror argument stays empty so debootstrap uses its script's default archive; the
    base image later reads whatever mirror this rootfs names. debootstrap takes packages from
    the release pocket only, so the import is upgraded from noble-updates and noble-security
    in a container and flattened: otherwise every node image would carry a second copy of
    each upgraded library in the base image's upgrade layer. `step(name, action)` runs each
    phase (a caller times and reports them)."""
    why = debootstrap_missing()
    if why:
        raise LabError(f"cannot bootstrap Ubuntu 24.04: {why}; run `bash scripts/setup-host.sh` as root.")
    rootfs = cache / "ubuntu-noble-rootfs"
    tarball = cache / "ubuntu-noble-rootfs.tar"
    for stale in (rootfs, tarball):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    cache.mkdir(parents=True, exist_ok=True)
    cmd = ["debootstrap", "--variant=minbase", "--components=main,universe",
           f"--keyring={UBUNTU_KEYRING}", "noble", str(rootfs), "", str(DEBOOTSTRAP_SCRIPT)]
    step("debootstrap noble (minbase)", lambda: _debootstrap(cmd, rootfs, log))
    raw = f"{BOOTSTRAPPED_REPO}:{UBUNTU_TAG}-release"

    def import_raw() -> None:
        # The rootfs keeps nothing a container does not need: downloaded .debs and apt lists.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        _logged(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(tarball), "."], log,
                "packing the rootfs failed")
        _import(client, tarball, BOOTSTRAPPED_REPO, f"{UBUNTU_TAG}-release", log)
        shutil.rmtree(rootfs)
        tarball.unlink()

    step("docker import the rootfs", import_raw)
    script = prepare_script.read_text() + (
        "\napt-get update -q && apt-get -y -q upgrade && apt-get clean && rm -rf /var/lib/apt/lists/*\n")

    def upgrade_and_flatten() -> None:
        ctr = client.run(raw, ["sh", "-c", script], env={"DEBIAN_FRONTEND": "noninteractive"})
        try:
            code = ctr.wait()
            with log.open("a") as fh:
                fh.write(ctr.logs())
            if code != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                raise LabError(f"upgrading the bootstrapped Ubuntu failed (exit {code}); the end of {log}:\n{tail}")
            # export streams the container's filesystem; import reads it back as one layer.
            with tarball.open("wb") as fh:
                for chunk in ctr.export():
                    fh.write(chunk)
        finally:
            ctr.remove()
        _import(client, tarball, BOOTSTRAPPED_REPO, UBUNTU_TAG, log,
                changes=['CMD ["/bin/bash"]', "ENV LANG=C.UTF-8"])
        tarball.unlink()
        client.remove_image(raw)

    step("upgrade from noble-updates and -security, flatten", upgrade_and_flatten)
    if not image_exists(client, BOOTSTRAPPED_REF):
        raise LabError(f"importing the bootstrapped rootfs did not create {BOOTSTRAPPED_REF}; see {log}.")


def _debootstrap(cmd: list[str], rootfs: Path, log: Path) -> None:
    # One retry: a download cut mid-package shows up as a failed extraction, and a second
    # run from an empty folder is cheaper than sending the user off to investigate.
    for attempt in (1, 2):
        try:
            _logged(cmd, log, "debootstrap failed")
            return
        except LabError:
            inner = rootfs / "debootstrap" / "debootstrap.log"
            if inner.exists():
                with log.open("a") as fh:
                    fh.write("".join(inner.read_text(errors="replace").splitlines(keepends=True)[-30:]))
            if attempt == 2:
                raise
            shutil.rmtree(rootfs, ignore_errors=True)


def _logged(cmd: list[str], log: Path, what: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(repr(c) if c == '' else c for c in cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise LabError(f"{what} (exit {proc.returncode}); the end of {log}:\n{tail}")


def _import(client: Any, tarball: Path, repository: str, tag: str, log: Path, changes: list[str] | None = None) -> None:
    """docker import; the engine reports a failed import in the response body, not as an error."""
    answer = client.import_image(tarball, repository, tag, changes)
    with log.open("a") as fh:
        fh.write(f"docker import {repository}:{tag}: {answer}\n")
    if not image_exists(client, f"{repository}:{tag}"):
        raise LabError(f"importing the Ubuntu rootfs as {repository}:{tag} failed; the engine said so in {log}.")
