"""Each db node's own size-limited data disk (`up --disk-size`), so a disk can fill up for real without
filling the host's.

A disk is a sparse file under labs/<project>/disks/ formatted ext4 (no blocks reserved for root,
so PostgreSQL sees every byte) and loop-mounted on the host. The node's data volume binds to a
folder that exists only inside that filesystem: when the disk is not mounted (after a host
reboot, before `up` mounts it again) Docker refuses to start the node, instead of Patroni finding
an empty data directory on the host's disk and cloning into it.

`fill` allocates a filler file in the node's PostgreSQL home (where a DBA's `df` and `ls` find it)
until the filesystem has only `leave` bytes free; `free` removes it. Allocation marks extents
without writing data, so a full disk costs the host almost nothing.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pgha_lab.errors import LabError
from pgha_lab.paths import LabPaths
from pgha_lab.topology import Topology

MiB, GiB = 1 << 20, 1 << 30
FILLER = "pgha-lab-filler"   # in the node's /var/lib/postgresql, beside the cluster's 18/main
HOST_RESERVE = 2 * GiB       # the host keeps this much free beyond every lab disk filled to the brim
_CHUNKS = (256 * MiB, 4 * MiB, 64 * 1024, 4096)   # big first, then down to a block: a full disk is full
_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b)?\s*", re.IGNORECASE)


def parse_size(text: str, what: str = "--disk-size") -> int:
    """'2G', '512M', '1.5GiB', '0' -> bytes (powers of 1024)."""
    m = _SIZE_RE.fullmatch(text or "")
    if not m:
        raise LabError(f"{what} takes a size such as 2G or 512M, not {text!r}.")
    scale = {"": 1, "k": 1 << 10, "m": MiB, "g": GiB, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def human(size: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


@dataclass(frozen=True)
class Disk:
    node: str
    image: Path        # the sparse file holding the filesystem
    mountpoint: Path   # where the host mounts it

    @property
    def data(self) -> Path:
        """The data volume's source, the node's /var/lib/postgresql: only there while mounted."""
        return self.mountpoint / "data"

    @property
    def filler(self) -> Path:
        return self.data / FILLER

    @property
    def mounted(self) -> bool:
        return os.path.ismount(self.mountpoint)

    def usage(self) -> tuple[int, int]:
        """(bytes free for PostgreSQL, filesystem size)."""
        usage = shutil.disk_usage(self.mountpoint)
        return usage.free, usage.total

    def filler_size(self) -> int:
        return _allocated(self.filler)


@dataclass(frozen=True)
class DiskUsage:
    """A db node's disk as `status` shows it."""
    node: str
    size_bytes: int
    free_bytes: int
    filler_bytes: int

    def text(self) -> str:
        used = self.size_bytes - self.free_bytes
        full = " FULL" if self.free_bytes < MiB else ""
        filler = f", {human(self.filler_bytes)} of it the chaos filler" if self.filler_bytes else ""
        return f"{self.node} {human(used)} of {human(self.size_bytes)} used{full}{filler}"


def usage(paths: LabPaths, topo: Topology) -> list[DiskUsage]:
    """Every mounted db node disk's use (none for a lab without its own disks)."""
    out = []
    for node in topo.db if topo.db_disk_size is not None else ():
        d = disk(paths, node.name)
        if d.mounted:
            free, size = d.usage()
            out.append(DiskUsage(node.name, size, free, d.filler_size()))
    return out


def disk(paths: LabPaths, node: str) -> Disk:
    root = paths.state / "disks"
    return Disk(node, root / f"{node}.img", root / node)


def all_disks(paths: LabPaths) -> list[Disk]:
    """Every disk the lab has on the host, also of nodes no longer in its topology."""
    root = paths.state / "disks"
    return [disk(paths, image.stem) for image in sorted(root.glob("*.img"))] if root.is_dir() else []


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True)


def _last_line(proc: subprocess.CompletedProcess) -> str:
    return ((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1]


def check_host(paths: LabPaths, topo: Topology) -> None:
    """Refuse disks the host cannot give: loop mounts need root, and every disk filled to its size must
    still leave the host HOST_RESERVE free (the images are sparse: this is what they can grow to)."""
    if topo.db_disk_size is None:
        return
    if os.geteuid() != 0:
        raise LabError("--disk-size loop-mounts a filesystem for each db node, which needs root; run pgha-lab as "
                       "root, or leave --disk-size out (the data then lives in Docker volumes on the host's disk).")
    missing = [tool for tool in ("mkfs.ext4", "mount", "umount") if shutil.which(tool) is None]
    if missing:
        raise LabError(f"--disk-size needs {', '.join(missing)} on the host (Debian/Ubuntu: apt-get install "
                       f"e2fsprogs mount).")
    root = paths.state
    root.mkdir(parents=True, exist_ok=True)
    new = [n for n in topo.db if not disk(paths, n.name).image.exists()]
    growth = sum(topo.db_disk_size - _allocated(disk(paths, n.name).image) for n in topo.db)
    free = shutil.disk_usage(root).free
    if new and growth + HOST_RESERVE > free:
        raise LabError(f"{len(topo.db)} disks of {human(topo.db_disk_size)} could fill the host: it has "
                       f"{human(free)} free and keeps {human(HOST_RESERVE)}; choose a smaller --disk-size.")


def _allocated(path: Path) -> int:
    """Bytes the file really takes on its filesystem (a sparse file takes less than its size)."""
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return 0


def prepare(paths: LabPaths, topo: Topology) -> list[str]:
    """Every db node's disk created (sparse, ext4) and mounted, ready to bind; what was done."""
    if topo.db_disk_size is None:
        return []
    done = []
    for node in topo.db:
        d = disk(paths, node.name)
        if not d.image.exists():
            d.image.parent.mkdir(parents=True, exist_ok=True)
            with open(d.image, "wb") as fh:
                fh.truncate(topo.db_disk_size)
            proc = _run("mkfs.ext4", "-q", "-F", "-m", "0", "-L", node.name[:16], str(d.image))
            if proc.returncode != 0:
                d.image.unlink(missing_ok=True)
                raise LabError(f"could not make {node.name}'s disk: mkfs.ext4 said {_last_line(proc)}.")
            done.append(f"made {node.name}'s disk ({human(topo.db_disk_size)}, ext4)")
        if not d.mounted:
            d.mountpoint.mkdir(parents=True, exist_ok=True)
            proc = _run("mount", "-o", "loop", str(d.image), str(d.mountpoint))
            if proc.returncode != 0:
                raise LabError(f"could not mount {node.name}'s disk {d.image}: mount said {_last_line(proc)} "
                               f"(loop devices are needed; Docker Desktop has none, so leave --disk-size out there).")
            done.append(f"mounted {node.name}'s disk")
        d.data.mkdir(exist_ok=True)
    return done


def release(d: Disk) -> None:
    """Unmount the disk and delete its image (the node's data goes with it)."""
    if d.mounted:
        proc = _run("umount", str(d.mountpoint))
        if proc.returncode != 0:
            raise LabError(f"could not unmount {d.node}'s disk at {d.mountpoint}: {_last_line(proc)}; stop "
                           f"whatever uses it and run `pgha-lab down --volumes` again.")
    d.image.unlink(missing_ok=True)
    if d.mountpoint.is_dir():
        d.mountpoint.rmdir()


def release_all(paths: LabPaths) -> list[str]:
    out = []
    for d in all_disks(paths):
        release(d)
        out.append(d.node)
    return out


def fill(d: Disk, leave: int = 0) -> int:
    """Allocate the filler until `leave` bytes stay free; the bytes it took."""
    if not d.mounted:
        raise LabError(f"{d.node}'s disk is not mounted; `pgha-lab up` mounts it.")
    want = max(0, d.usage()[0] - leave)
    taken = 0
    with open(d.filler, "ab") as fh:
        offset = os.fstat(fh.fileno()).st_size
        for chunk in _CHUNKS:
            while want - taken >= chunk:
                try:
                    os.posix_fallocate(fh.fileno(), offset, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                offset += chunk
                taken += chunk
    return taken


def free(d: Disk) -> int:
    """Remove the filler; the bytes it gave back."""
    size = d.filler_size()
    d.filler.unlink(missing_ok=True)
    return size
