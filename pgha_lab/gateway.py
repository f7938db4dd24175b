"""The one door to Docker: every container, network, volume, image and compose call the lab makes,
and the names and labels it gives them. Nothing else in the package imports `docker` or runs the
`docker` command.

Images go through the SDK (`Engine`): builds stream their steps and imports report in the body.
Nodes go through the CLI (`LabDocker`): the same commands a DBA would type, and `exec`/`logs`
can hand the terminal over to the user.
"""
from __future__ import annotations

import functools
import io
import ipaddress
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pgha_lab.errors import LabError

NO_ENGINE = ("cannot reach the Docker engine; start it (as root on Debian or Ubuntu, "
             "`bash scripts/setup-host.sh` installs and starts it).")

# -- names and labels -------------------------------------------------------------------------
ROLE_IMAGES = ("etcd", "dbnode", "haproxy")


def image_refs(dev_tag: str = "") -> tuple[str, dict[str, str]]:
    """The base image and node role -> image. A developer's tag (PGHA_IMAGE_TAG) gives a checkout
    images of its own, so changing images/ there never rebuilds what another checkout's labs run."""
    if not dev_tag:
        return "pgha-lab/base:noble", {role: f"pgha-lab/{role}:latest" for role in ROLE_IMAGES}
    return f"pgha-lab/base:noble-{dev_tag}", {role: f"pgha-lab/{role}:{dev_tag}" for role in ROLE_IMAGES}


def bare_image_refs(dev_tag: str = "") -> dict[str, str]:
    """Node role -> the bare node's image (`up --bare`: the role's image booting systemd, nothing configured)."""
    return {role: f"pgha-lab/bare-{role}:{dev_tag or 'latest'}" for role in ROLE_IMAGES}


BASE_IMAGE, IMAGES = image_refs(os.environ.get("PGHA_IMAGE_TAG", ""))
BARE_IMAGES = bare_image_refs(os.environ.get("PGHA_IMAGE_TAG", ""))
IMAGE_LABEL = "org.pgha-lab"        # label prefix on every image the lab builds
LABEL_PROJECT = "pgha-lab.project"  # on every node container: which lab
LABEL_NODE = "pgha-lab.node"        # ... which node of it
LABEL_ROLE = "pgha-lab.role"        # ... which role
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"   # compose puts it on containers, networks, volumes
COMPOSE_NETWORK_LABEL = "com.docker.compose.network"   # ... and on a network its key in the file


def container_name(project: str, node: str) -> str:
    return f"{project}-{node}"


def network_name(project: str) -> str:
    return f"{project}-net"


def edge_network_name(project: str) -> str:
    return f"{project}-edge"


def volume_key(node: str) -> str:
    """The data volume's key in compose.yaml; compose names the volume `<project>_<key>`."""
    return f"{node}-data"


def volume_name(project: str, node: str) -> str:
    return f"{project}_{volume_key(node)}"


# A lab snapshot (snapshots.py): one committed image per node and one volume per data volume.
LABEL_SNAPSHOT_PROJECT = "pgha-lab.snapshot.project"
LABEL_SNAPSHOT_NAME = "pgha-lab.snapshot.name"
LABEL_SNAPSHOT_BASE = "pgha-lab.snapshot.base"   # the lab image a snapshot's node image was committed over


def snapshot_image(project: str, node: str, snapshot: str) -> str:
    return f"pgha-lab-snapshot/{project}-{node}:{snapshot}"


def snapshot_volume(project: str, node: str, snapshot: str) -> str:
    return f"pgha-lab-snapshot_{project}_{snapshot}_{node}"


def _node_name(node: Any) -> str:
    return node if isinstance(node, str) else node.name


# -- the engine (SDK): images and one-off containers --------------------------------------------
PAUSE_ATTEMPTS = 5               # docker pause tries before its 'unable to freeze' is the answer
BUILD_READ_TIMEOUT = 3 * 3600   # a RUN step may print nothing for minutes (the PostgreSQL compile)


@dataclass(frozen=True)
class ImageInfo:
    ref: str
    id: str
    size: int
    created: str
    labels: dict[str, str]


class Engine:
    """The SDK client behind one reachable engine."""

    def __init__(self, sdk_client: Any) -> None:
        self._sdk = sdk_client

    @classmethod
    def connect(cls, timeout: int = 120) -> Engine:
        """A reachable engine, or LabError with the one sentence that fixes it."""
        import docker  # imported late: unit tests and --help need no engine
        try:
            sdk_client = docker.from_env(timeout=timeout)
            sdk_client.ping()
        except Exception:  # the SDK raises several unrelated types for "not there"
            raise LabError(NO_ENGINE) from None
        return cls(sdk_client)

    def version(self) -> dict[str, Any]:
        return self._sdk.version()

    def info(self) -> dict[str, Any]:
        return self._sdk.info()

    def arch(self) -> str:
        return str(self.version().get("Arch") or self.info().get("Architecture"))

    def image(self, ref: str) -> ImageInfo | None:
        import docker.errors
        try:
            img = self._sdk.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        return ImageInfo(ref, img.id, img.attrs.get("Size", 0), img.attrs.get("Created", ""), img.labels or {})

    def dangling_images(self, label: str) -> list[ImageInfo]:
        return [ImageInfo("", img.id, img.attrs.get("Size", 0), img.attrs.get("Created", ""), img.labels or {})
                for img in self._sdk.images.list(filters={"dangling": True, "label": label})]

    def remove_image(self, ref: str, force: bool = False) -> bool:
        """False when a container still uses it (or it is gone already)."""
        import docker.errors
        try:
            self._sdk.images.remove(ref, force=force)
            return True
        except docker.errors.APIError:
            return False

    def prune_build_cache(self) -> None:
        self._sdk.api.prune_builds()
        self._sdk.images.prune(filters={"dangling": True})

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """The classic builder's decoded stream (steps, output, errors, the image id)."""
        return self._sdk.api.build(decode=True, **kwargs)

    def pull(self, repository: str, tag: str) -> None:
        for _ in self._sdk.api.pull(repository, tag=tag, stream=True, decode=True):
            pass

    def import_image(self, tarball: Path, repository: str, tag: str, changes: list[str] | None = None) -> str:
        """docker import; the engine's answer, which is where it reports a failure."""
        return str(self._sdk.api.import_image(src=str(tarball), repository=repository, tag=tag, changes=changes))

    def inspect_distribution(self, ref: str) -> dict[str, Any]:
        return self._sdk.api.inspect_distribution(ref)

    def run(self, image: str, cmd: list[str], *, env: dict[str, str] | None = None,
            labels: dict[str, str] | None = None) -> OneOff:
        return OneOff(self._sdk.containers.run(image, cmd, detach=True, environment=env or {}, labels=labels or {}))


class OneOff:
    """A detached one-off container (build probes, the base image's upgrade)."""

    def __init__(self, container: Any) -> None:
        self._c = container

    def wait(self, timeout: float | None = None) -> int | None:
        """Its exit code; None when it did not end within `timeout`."""
        try:
            return int(self._c.wait(timeout=timeout)["StatusCode"])
        except Exception:   # the SDK's read timeout surfaces as a requests error
            return None

    def logs(self) -> str:
        return self._c.logs().decode(errors="replace")

    def export(self) -> Iterator[bytes]:
        return self._c.export()

    def remove(self) -> None:
        self._c.remove(force=True)


def require_compose() -> str:
    """Compose v2 (`docker compose`) must be on the host; its version."""
    if shutil.which("docker") is None:
        raise LabError("the docker command is missing; install Docker (as root "
                       "on Debian or Ubuntu, `bash scripts/setup-host.sh`).")
    proc = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True)
    version = proc.stdout.strip().lstrip("v")
    if proc.returncode != 0 or not version.startswith("2"):
        raise LabError("Docker Compose v2 (`docker compose`) is missing; install it "
                       "(as root on Debian or Ubuntu, `bash scripts/setup-host.sh`).")
    return version


# -- one lab's containers (CLI) -------------------------------------------------------------------
@dataclass(frozen=True)
class ContainerState:
    status: str            # running, paused, exited, created, restarting, or "missing"
    on_lab_network: bool
    exit_code: int | None = None   # of the last run, when it ended (137: killed)
    started_at: str = ""           # RFC 3339, UTC: when the container last booted
    created: str = ""              # RFC 3339, UTC: when compose made it
    image: str = ""                # the image id it was created from

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def condition(self) -> str:
        """The one word a VM's state is named by: running, stopped (killed or shut down), paused
        (frozen), isolated (cable pulled), missing (no container) or restarting."""
        if self.status in ("exited", "created", "dead"):
            return "stopped"
        if self.status != "running":
            return self.status
        return "running" if self.on_lab_network else "isolated"

    def text(self) -> str:
        """The condition with Docker's own words where they add something: "stopped (Docker: exited 137)"."""
        word = self.condition
        if word == "stopped":
            code = f" {self.exit_code}" if self.exit_code is not None else ""
            return f"stopped (Docker: {self.status}{code})"
        if word == "isolated":
            return "isolated (off the lab network)"
        return word


class LabDocker:
    """Node control for one lab: its containers, network, volumes and compose project."""

    def __init__(self, project: str, compose_file: Path) -> None:
        self.project = project
        self.compose_file = compose_file
        self.network = network_name(project)

    def container(self, node: Any) -> str:
        return container_name(self.project, _node_name(node))

    # -- reading --------------------------------------------------------------------------------
    def state(self, node: Any) -> ContainerState:
        return self.states([node])[_node_name(node)]

    def states(self, nodes: list[Any]) -> dict[str, ContainerState]:
        """node name -> ContainerState for many nodes (the dashboard reads every node each tick), from
        the engine's API: a `docker inspect` process cost ten times the answer."""
        out = {}
        for name in (_node_name(n) for n in nodes):
            doc = self._inspect(name)
            if doc is None:
                out[name] = ContainerState("missing", False)
                continue
            state = doc.get("State") or {}
            status = state.get("Status", "")
            networks = (doc.get("NetworkSettings") or {}).get("Networks") or {}
            ended = status in ("exited", "dead")
            out[name] = ContainerState(status, self.network in networks,
                                       exit_code=int(state.get("ExitCode", 0)) if ended else None,
                                       started_at=state.get("StartedAt", ""), created=doc.get("Created", ""),
                                       image=doc.get("Image", ""))
        return out

    def _inspect(self, name: str) -> dict[str, Any] | None:
        """The engine's inspection of the node's container, or None when it has none."""
        import docker.errors
        try:
            return _api().inspect_container(container_name(self.project, name))
        except docker.errors.NotFound:
            return None

    def started_at(self, node: Any) -> str:
        """When the node's container last booted (RFC 3339, UTC), or "" when it has no container."""
        return self.state(node).started_at

    def containers(self) -> dict[str, str]:
        """node name -> container state, for this lab's containers that exist."""
        listed = _api().containers(all=True, filters={"label": f"{LABEL_PROJECT}={self.project}"})
        return {c["Labels"][LABEL_NODE]: c["State"] for c in listed if (c.get("Labels") or {}).get(LABEL_NODE)}

    def volumes(self) -> set[str]:
        return set(self._ls("volume", "ls", "-q"))

    def published_ports(self, node: Any) -> set[str]:
        proc = subprocess.run(["docker", "port", self.container(node)], capture_output=True, text=True)
        return {line.rsplit(":", 1)[-1] for line in proc.stdout.splitlines()}

    def running_image(self, node: Any) -> str | None:
        """The image id the node's container was created from; None when it is missing."""
        doc = self._inspect(_node_name(node))
        return doc.get("Image") if doc else None

    def origin_image(self, node: Any) -> tuple[str | None, bool]:
        """(the lab image id the node was made from, whether it runs a snapshot's image over it)."""
        image = self.running_image(node)
        if not image:
            return None, False
        proc = subprocess.run(["docker", "image", "inspect", "-f",
                               f'{{{{index .Config.Labels "{LABEL_SNAPSHOT_BASE}"}}}}', image],
                              capture_output=True, text=True)
        base = proc.stdout.strip() if proc.returncode == 0 else ""
        return (base, True) if base and base != "<no value>" else (image, False)

    def image_id(self, ref: str) -> str | None:
        proc = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def image_ids(self, refs: list[str]) -> dict[str, str]:
        """ref -> image id for the refs that exist, in one `docker image inspect`."""
        proc = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", *refs], capture_output=True, text=True)
        ids = proc.stdout.split()
        if len(ids) == len(refs):
            return dict(zip(refs, ids, strict=True))
        return {ref: i for ref in refs if (i := self.image_id(ref))}   # one is missing: ask each

    def compose_would_recreate(self) -> set[str]:
        """The nodes `docker compose up` would recreate now (their compose settings or image changed),
        by compose's own judgement (`up --dry-run`); nothing is changed."""
        proc = self.compose("up", "-d", "--dry-run", check=False)
        prefix = f"{self.project}-"
        out = set()
        for line in (proc.stdout + proc.stderr).splitlines():
            words = line.split()
            if len(words) >= 2 and words[-1] == "Recreate" and words[-2].startswith(prefix):
                out.add(words[-2][len(prefix):])
        return out

    def file_digests(self, node: Any, paths: list[str]) -> dict[str, str] | None:
        """container path -> sha256 of the file as the running node has it (missing files left out);
        None when the node cannot be asked (stopped or paused)."""
        proc = subprocess.run(["docker", "exec", self.container(node), "sha256sum", *paths],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode not in (0, 1) or not proc.stdout:
            return None
        out = {}
        for line in proc.stdout.splitlines():
            digest, _, path = line.partition("  ")
            out[path] = digest
        return out

    def logs_tail(self, node: Any, lines: int = 30) -> str:
        proc = subprocess.run(["docker", "logs", "--tail", str(lines), self.container(node)],
                              capture_output=True, text=True)
        return (proc.stdout + proc.stderr).strip()

    def logs_since(self, node: Any, since: str) -> str:
        """The node's log from `since` (RFC 3339, UTC) on, e.g. HAProxy's session lines since a lesson began."""
        proc = subprocess.run(["docker", "logs", "--since", since, self.container(node)],
                              capture_output=True, text=True)
        return (proc.stdout + proc.stderr).strip()

    # -- acting on nodes (chaos and heal) -------------------------------------------------------
    def kill(self, node: Any) -> None:
        self._docker("kill", "--signal", "KILL", self.container(node))

    def signal(self, node: Any, name: str) -> None:
        """Send a signal to the node's service (docker-init passes it on), e.g. HUP or USR2 to reload."""
        self._docker("kill", "--signal", name, self.container(node))

    def pause(self, node: Any) -> None:
        # On cgroup v1 runc gives up freezing when a task keeps forking or sits in the kernel (a loaded
        # host with PostgreSQL busy: "unable to freeze") and leaves the node thawed, so another try is
        # safe; a VM's pause never fails like that.
        for attempt in range(PAUSE_ATTEMPTS):
            try:
                self._docker("pause", self.container(node))
                return
            except LabError as exc:
                if "unable to freeze" not in str(exc) or attempt == PAUSE_ATTEMPTS - 1:
                    raise
                time.sleep(0.2)

    def unpause(self, node: Any) -> None:
        self._docker("unpause", self.container(node))

    def stop(self, node: Any) -> None:
        self._docker("stop", self.container(node), timeout=180)

    def start(self, node: Any) -> None:
        self._docker("start", self.container(node))

    def restart(self, node: Any) -> None:
        """A reboot: the services stop (Patroni hands on the leader key), then the node boots and reads
        its mounted files afresh; its data stays."""
        self._docker("restart", "-t", "60", self.container(node), timeout=180)

    def disconnect(self, node: Any) -> None:
        self._docker("network", "disconnect", self.network, self.container(node))

    def connect(self, node: Any, address: str) -> None:
        self._docker("network", "connect", "--ip", address, self.network, self.container(node))

    def exec(self, node: Any, *cmd: str, check: bool = True, user: str | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess:
        """`docker exec` through the engine's API: the CLI process cost a third of each exec's CPU, and the
        lab execs every few seconds per node. Output and exit status as the CLI gives them."""
        name = _node_name(node)
        proc = _api_exec(self.container(node), list(cmd), user, timeout, f"`{' '.join(cmd)}` on {name}")
        if check and proc.returncode != 0:
            raise LabError(f"`{' '.join(cmd)}` failed on {name}: {(proc.stderr or proc.stdout).strip()[:300]}")
        return proc

    def put_files(self, node: Any, files: dict[str, str]) -> None:
        """Write files into a created, not yet started container's own file system (`docker cp` from a
        tar on stdin): before its first start Docker has not bind-mounted its /etc/hostname and
        /etc/hosts over the node's, so the copies land where the node's boot finds them."""
        for path, text in files.items():
            folder, _, name = path.rpartition("/")
            data = text.encode()
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            proc = subprocess.run(["docker", "cp", "-", f"{self.container(node)}:{folder or '/'}"],
                                  input=buf.getvalue(), capture_output=True, timeout=60)
            if proc.returncode != 0:
                raise LabError(f"docker cp of {path} into {_node_name(node)} failed: "
                               f"{proc.stderr.decode(errors='replace').strip()[:300]}")

    # -- snapshots: stopping and booting a whole lab, committed images, volume copies ------------
    def stop_many(self, nodes: list[Any]) -> None:
        """A clean shutdown of several nodes at once (each with its container's own grace period)."""
        self._each(nodes, lambda n: self._docker("stop", self.container(n), timeout=240))

    def start_many(self, nodes: list[Any]) -> None:
        """Boot several nodes at once (`docker start a b` would start them one after the other)."""
        self._each(nodes, lambda n: self._docker("start", self.container(n), timeout=240))

    @staticmethod
    def _each(nodes: list[Any], act: Any) -> None:
        if nodes:
            with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
                list(pool.map(act, nodes))

    def remove_containers(self, nodes: list[Any]) -> None:
        """Containers only (data volumes stay): a restore replaces them."""
        names = [self.container(n) for n in nodes]
        if names:
            subprocess.run(["docker", "rm", "-f", *names], capture_output=True)

    def named_volumes(self, node: Any) -> list[tuple[str, str]]:
        """(volume name, where the node mounts it) for each named volume of the node's container."""
        proc = subprocess.run(["docker", "inspect", "-f", "{{json .Mounts}}", self.container(node)],
                              capture_output=True, text=True)
        mounts = json.loads(proc.stdout or "[]") or [] if proc.returncode == 0 else []
        return sorted((m["Name"], m["Destination"]) for m in mounts if m.get("Type") == "volume")

    def env_of(self, node: Any) -> list[str]:
        """The node container's environment as KEY=VALUE lines (what a commit would carry along)."""
        proc = subprocess.run(["docker", "inspect", "-f", "{{json .Config.Env}}", self.container(node)],
                              capture_output=True, text=True)
        return json.loads(proc.stdout or "[]") or [] if proc.returncode == 0 else []

    def image_env(self, ref: str) -> list[str]:
        proc = subprocess.run(["docker", "image", "inspect", "-f", "{{json .Config.Env}}", ref],
                              capture_output=True, text=True)
        return json.loads(proc.stdout or "[]") or [] if proc.returncode == 0 else []

    def commit(self, node: Any, ref: str, labels: dict[str, str], blank_env: list[str]) -> str:
        """The node's file-system changes as an image on top of the one it runs; `blank_env` are
        variables the container was given (secrets from compose's env_file) that the image must not keep."""
        changes = [f"LABEL {k}={v}" for k, v in labels.items()] + [f"ENV {k}=" for k in blank_env]
        args = [arg for c in changes for arg in ("--change", c)]
        return self._docker("commit", *args, self.container(node), ref, timeout=600).strip()

    def images_labelled(self, label: str) -> list[str]:
        """repository:tag of every tagged image carrying `label` (key=value)."""
        proc = subprocess.run(["docker", "images", "--filter", f"label={label}", "--format",
                               "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True)
        return [line for line in proc.stdout.split() if not line.endswith(":<none>")]

    def image_exists(self, ref: str) -> bool:
        return self.image_id(ref) is not None

    def image_size(self, ref: str) -> int:
        """Bytes of the image with every layer under it (0 when it is missing)."""
        proc = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", ref], capture_output=True, text=True)
        return int(proc.stdout.strip() or 0) if proc.returncode == 0 else 0

    def remove_images(self, refs: list[str]) -> None:
        """Untag (a container still running from one keeps it until it is replaced), then drop the
        snapshot images nothing uses any more."""
        if refs:
            subprocess.run(["docker", "rmi", "-f", *refs], capture_output=True)
        subprocess.run(["docker", "image", "prune", "-f", "--filter", f"label={LABEL_SNAPSHOT_PROJECT}={self.project}"],
                       capture_output=True)

    def volumes_labelled(self, label: str) -> list[str]:
        proc = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"label={label}"],
                              capture_output=True, text=True)
        return proc.stdout.split()

    def create_volume(self, name: str, labels: dict[str, str]) -> None:
        self._docker("volume", "create", *(arg for k, v in labels.items() for arg in ("--label", f"{k}={v}")), name)

    def remove_volumes(self, names: list[str]) -> None:
        if names:
            subprocess.run(["docker", "volume", "rm", "-f", *names], capture_output=True)

    def copy_volumes(self, pairs: list[tuple[str, str]], image: str) -> dict[str, int]:
        """Make each target volume an exact copy of its source (owners, modes, links; runs of zeros
        left as holes), all at once in one helper container with no network. Target -> bytes copied."""
        mounts, jobs = [], []
        for i, (src, dst) in enumerate(pairs):
            mounts += ["-v", f"{src}:/from/{i}:ro", "-v", f"{dst}:/to/{i}"]
            jobs.append(f"(find /to/{i} -mindepth 1 -delete && cp -a --sparse=always /from/{i}/. /to/{i}/ "
                        f"&& echo \"{i} $(du -sB1 /to/{i} | cut -f1)\") &")
        script = " ".join(jobs) + " fail=0; for j in $(jobs -p); do wait $j || fail=1; done; exit $fail"
        proc = _run(["docker", "run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "bash", *mounts,
                     image, "-c", script], 900, "copying the data volumes")
        if proc.returncode != 0:
            raise LabError(f"copying the data volumes failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
        sizes = dict(line.split() for line in proc.stdout.splitlines() if line.strip())
        return {dst: int(sizes.get(str(i), 0)) for i, (_, dst) in enumerate(pairs)}

    # -- handing the terminal to the user ---------------------------------------------------------
    def exec_interactive(self, node: Any, cmd: list[str], *, user: str | None = None, tty: bool = False,
                         env: dict[str, str] | None = None) -> int:
        """`env` reaches the command by name only (`-e NAME`): its values never show on a command line."""
        flags = ["-it"] if tty else ["-i"]
        names = [arg for name in (env or {}) for arg in ("-e", name)]
        return subprocess.call(["docker", "exec", *flags, *names, *(["-u", user] if user else []), self.container(node),
                                *cmd], env={**os.environ, **(env or {})} if env else None)

    def follow_logs(self, node: Any, tail: str, follow: bool) -> int:
        return subprocess.call(["docker", "logs", "--tail", tail, *(["-f"] if follow else []), self.container(node)])

    # -- the compose project ---------------------------------------------------------------------
    def compose(self, *args: str, check: bool = True, over: Path | None = None) -> subprocess.CompletedProcess:
        """A compose command on the lab's file; `over`: a second file compose merges over it (the second wins)."""
        files = ["-f", str(self.compose_file), *(["-f", str(over)] if over else [])]
        if args[:1] == ("up",) and "--dry-run" not in args:
            self._fixed_subnets_first()
        proc = subprocess.run(["docker", "compose", "-p", self.project, *files, *args],
                              capture_output=True, text=True)
        if check and proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise LabError(f"docker compose {args[0]} failed:\n{tail}")
        return proc

    def _fixed_subnets_first(self) -> None:
        """Create the compose file's networks of a fixed subnet (the lab's bridge) before `compose up`
        does, as compose would: with its labels, so compose adopts them and `down` removes them.
        Compose creates a project's networks in no fixed order, and when the edge network (an
        automatic subnet) came first the engine could hand it a pool holding the lab's subnet
        (192.168.48.0/20 around 192.168.56.0/24 on a host with many networks): the lab's bridge then
        failed with "Pool overlaps". Made first, it is in use, and the engine's pick avoids it."""
        doc = yaml.safe_load(self.compose_file.read_text()) or {}
        for key, spec in (doc.get("networks") or {}).items():
            net = spec or {}
            pools = (net.get("ipam") or {}).get("config") or []
            name = net.get("name") or f"{self.project}_{key}"
            if not pools or net.get("external") or _exists("network", name):
                continue
            cmd = ["docker", "network", "create", "--driver", net.get("driver", "bridge"),
                   "--label", f"{COMPOSE_PROJECT_LABEL}={self.project}", "--label", f"{COMPOSE_NETWORK_LABEL}={key}"]
            cmd += ["--internal"] if net.get("internal") else []
            for pool in pools:
                cmd += ["--subnet", pool["subnet"], *(["--gateway", pool["gateway"]] if "gateway" in pool else [])]
            proc = _run([*cmd, name], 60, "docker network create")
            if proc.returncode != 0:
                raise LabError(_network_refused(name, [pool["subnet"] for pool in pools], proc.stderr or proc.stdout))

    def recreate(self, node: Any) -> None:
        """Replace one node's container with one made from the current compose file, image and
        mounted files (its data volume stays); no other service is touched."""
        self.compose("up", "-d", "--no-deps", "--force-recreate", _node_name(node))

    def remove_node(self, node: Any) -> None:
        """A node taken out of the lab for good: its container and its data volume (what a lab that
        shrinks leaves behind, and a later growth must not find)."""
        subprocess.run(["docker", "rm", "-f", "-v", self.container(node)], capture_output=True)
        subprocess.run(["docker", "volume", "rm", "-f", volume_name(self.project, _node_name(node))],
                       capture_output=True)

    def remove_everything(self) -> None:
        """Containers, volumes and networks of this compose project, even without its compose file
        (what an interrupted run leaves behind)."""
        ids = self._ls("ps", "-aq")
        if ids:
            subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True)
        vols = self._ls("volume", "ls", "-q")
        if vols:
            subprocess.run(["docker", "volume", "rm", "-f", *vols], capture_output=True)
        nets = self._ls("network", "ls", "-q")
        if nets:
            subprocess.run(["docker", "network", "rm", *nets], capture_output=True)

    def _ls(self, *cmd: str) -> list[str]:
        proc = subprocess.run(["docker", *cmd, "--filter", f"label={COMPOSE_PROJECT_LABEL}={self.project}"],
                              capture_output=True, text=True)
        return proc.stdout.split()

    def _docker(self, *args: str, timeout: float = 120) -> str:
        proc = _run(["docker", *args], timeout, f"docker {args[0]}")
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise LabError(f"docker {args[0]} failed: {last[0]}")
        return proc.stdout


def _exists(kind: str, name: str) -> bool:
    return subprocess.run(["docker", kind, "inspect", name], capture_output=True).returncode == 0


def _network_refused(name: str, subnets: list[str], error: str) -> str:
    """The engine's refusal of a lab network in one sentence: which existing network holds the subnet
    (what "Pool overlaps with other one on this address space" leaves out) and the two ways out."""
    wanted = [ipaddress.ip_network(s, strict=False) for s in subnets]
    ids = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True).stdout.split()
    each = "{{.Name}} {{range .IPAM.Config}}{{.Subnet}} {{end}}"
    listing = subprocess.run(["docker", "network", "inspect", "-f", each, *ids],
                             capture_output=True, text=True).stdout if ids else ""
    for line in listing.splitlines():
        other, *theirs = line.split()
        for subnet in theirs:
            held = ipaddress.ip_network(subnet, strict=False)
            if any(w.version == held.version and w.overlaps(held) for w in wanted):
                return (f"the lab's subnet {', '.join(subnets)} overlaps Docker network {other!r} ({held}): "
                        f"remove that network (`docker network rm {other}`) or bring the lab up on another --subnet.")
    last = error.strip().splitlines()[-1:] or ["no output"]
    return f"Docker refused to create the lab's network {name} ({', '.join(subnets)}): {last[0]}"


@functools.cache
def _api() -> Any:
    """The engine's low-level API client, made once a process (the threads of one reading share it)."""
    import docker.utils  # imported late: unit tests and --help need no engine
    return docker.APIClient(**docker.utils.kwargs_from_env(), timeout=120, max_pool_size=32)


ENGINE_REFUSED = "Error response from daemon: "   # how `docker exec`, and so the API exec, says the engine ran nothing


def engine_refusal(proc: subprocess.CompletedProcess) -> str | None:
    """The engine's reason when an exec ran nothing in the node (stopped, paused, gone, or the engine
    itself down), as the API exec reports it; None when the command ran, whatever its status."""
    said = proc.stderr.strip()
    if proc.returncode == 1 and not proc.stdout and (said.startswith(ENGINE_REFUSED) or said == NO_ENGINE):
        return said
    return None


def _api_exec(container: str, cmd: list[str], user: str | None, timeout: float,
              what: str) -> subprocess.CompletedProcess:
    """Run cmd in the container through the API: exit status, stdout and stderr as `docker exec` gives
    them (the engine's refusal, a stopped or paused container, as status 1 and its message). The API's
    reads wait as long as the command is silent, so the run waits on a thread of its own for `timeout`
    (a command still running then is left to finish, as the CLI's would be)."""
    import docker.errors
    import requests
    api = _api()
    answer: list[subprocess.CompletedProcess | BaseException] = []

    def run() -> None:
        try:
            started = api.exec_create(container, cmd, user=user or "")
            out, err = _exec_output(api, started["Id"])
            code = _exit_code(api, started["Id"])
            answer.append(subprocess.CompletedProcess(cmd, code if code is not None else 1,
                                                      out.decode(errors="replace"), err.decode(errors="replace")))
        except docker.errors.APIError as exc:
            answer.append(subprocess.CompletedProcess(cmd, 1, "", f"{ENGINE_REFUSED}{exc.explanation}\n"))
        except requests.exceptions.ConnectionError:
            answer.append(subprocess.CompletedProcess(cmd, 1, "", f"{NO_ENGINE}\n"))
        except BaseException as exc:  # handed to the caller's thread below
            answer.append(exc)

    worker = threading.Thread(target=run, name=f"exec {container}", daemon=True)
    worker.start()
    worker.join(timeout)
    if not answer:
        raise _stuck(what, timeout)
    if isinstance(answer[0], BaseException):
        raise answer[0]
    return answer[0]


def _exec_output(api: Any, exec_id: str) -> tuple[bytes, bytes]:
    """Start the exec attached and read its stdout and stderr to the end. docker-py's exec_start reads
    the attached stream from the socket beneath http.client's buffered reader, so output that came in
    with the response's headers is lost (docker-py#2042, #3332; seen here under load: 1 exec in 1000
    answered nothing, status 0). The same request, with the frames read from that buffered reader."""
    res = api._post_json(api._url("/exec/{0}/start", exec_id), headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                         data={"Tty": False, "Detach": False}, stream=True)
    try:
        api._raise_for_status(res)
        fp = res.raw._fp.fp   # what docker-py reads beneath (`.raw`), with its buffer
        streams = {1: bytearray(), 2: bytearray()}
        while len(header := fp.read(8)) == 8:   # a frame: stream (1 stdout, 2 stderr), 3 bytes, 4-byte length
            data = fp.read(int.from_bytes(header[4:], "big"))
            streams.get(header[0], streams[2]).extend(data)
        return bytes(streams[1]), bytes(streams[2])
    finally:
        res.close()


def _exit_code(api: Any, exec_id: str) -> int | None:
    """The exec's exit status. The engine may still list it as running for a moment after its output
    has ended (moby#19607), with no exit code yet: read again until it says (a few seconds at most)."""
    for _ in range(100):
        state = api.exec_inspect(exec_id)
        if not state.get("Running"):
            return state.get("ExitCode")
        time.sleep(0.05)
    return None


def _run(args: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise _stuck(what, timeout) from None


def _stuck(what: str, timeout: float) -> LabError:
    return LabError(f"{what} did not finish within {timeout:.0f}s; the engine or the node is stuck.")
