"""The suite's own lab: its own compose project, subnet and published ports, so it never touches
a lab the user runs. The session fixtures over it (tests/conftest.py) remove leftovers of an
interrupted run before it starts and after it ends."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pgha_lab import disks, snapshots
from pgha_lab.context import LabContext
from pgha_lab.gateway import LabDocker
from pgha_lab.lessons import progress
from pgha_lab.paths import LabPaths
from pgha_lab.probes import LabProbe
from pgha_lab.topology import Published, Topology

REPO = Path(__file__).resolve().parents[1]
# PGHA_TEST_SLOT (0-9) gives a checkout its own test labs, so two checkouts can test side by side;
# each pytest-xdist worker of a checkout (gw0..gw9) gets its own slot within the checkout's ten.
# Subnets 10.57.x/10.58.x: the bench scripts keep to 10.56.x.
CHECKOUT_SLOT = int(os.environ.get("PGHA_TEST_SLOT", "0"))
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
SLOT = 10 * CHECKOUT_SLOT + WORKER


def project_for(slot: int) -> str:
    return "pgha-lab-test" + (str(slot) if slot else "")


PROJECT = project_for(SLOT)
SUBNET = f"10.57.{SLOT}.0/24"
PORTS = Published(primary=25432 + 10 * SLOT, replicas=25433 + 10 * SLOT, stats=28404 + 10 * SLOT)
# Each db node on its own 2 GiB disk (sparse: the host pays for what is written), so `chaos fill-disk`
# fills a real filesystem, and every other test runs on the same kind of disk as a user's lab with --disk-size.
DISK_SIZE = 2 << 30
# PGHA_TEST_KEEP_LAB=1 keeps the lab between two runs while one works on a test (never in CI):
# the next run starts from it instead of booting a new one.
KEEP = os.environ.get("PGHA_TEST_KEEP_LAB") == "1"


def bare_project_for(slot: int) -> str:
    """The bare lab of a slot (`up --bare`): its own project, and subnet 10.58.<slot>, beside the ready one."""
    return f"pgha-lab-bare{slot}"


BARE_PROJECT = bare_project_for(SLOT)
BARE_SUBNET = f"10.58.{SLOT}.0/24"


@dataclass
class LabUnderTest:
    paths: LabPaths
    topo: Topology

    def cli(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", self.paths.project,
                               *args],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"pgha-lab {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def up(self) -> subprocess.CompletedProcess:
        # --haproxy-nodes 1: a test that grew the lab to two HAProxy nodes and failed is undone here.
        return self.cli("up", "--profile", "fast", "--subnet", SUBNET, "--haproxy-nodes", "1",
                        "--publish-ports", f"{PORTS.primary},{PORTS.replicas},{PORTS.stats}",
                        "--disk-size", str(DISK_SIZE))

    def ensure_healthy(self) -> None:
        """`up`, unless the lab is already healthy in the suite's shape and profile: then `up` would
        find nothing to do, at 10-30 s a call on a busy machine, before and after every test."""
        ctx = self.ctx
        if (ctx.paths.topology_file.exists() and ctx.saved_profile == "fast" and len(ctx.topology.db) == 2
                and ctx.topology.published.enabled and ctx.topology.haproxy2 is None
                and ctx.topology.db_disk_size == DISK_SIZE and ctx.health().ok):
            return
        self.up()

    @property
    def ctx(self) -> LabContext:
        """A fresh context each time: the topology on disk may have changed (a test grew the lab)."""
        return LabContext.open(self.paths.home, self.paths.project)

    def probe(self) -> LabProbe:
        return self.ctx.probe

    def dsn(self, **kw) -> str:
        return self.ctx.dsn(**kw)

    def password(self) -> str:
        return self.ctx.secrets.superuser_password


@dataclass
class BareLabUnderTest(LabUnderTest):
    """The slot's bare lab: nodes booting systemd, nothing configured until a test runs the playbook."""
    removed: bool = False   # put away after the worker's last bare test; the next one brings it up again

    def up(self) -> subprocess.CompletedProcess:
        return self.cli("up", "--bare", "--profile", "fast", "--subnet", BARE_SUBNET, "--publish-ports", "off")

    def put_away(self) -> None:
        """Remove the lab while the worker runs other tests: a cluster the playbook built (etcd, Patroni,
        HAProxy) idling on the host would slow every other lab of the phase."""
        remove_leftovers(self.paths.project)
        self.removed = True

    def ensure_up(self) -> None:
        if self.removed:
            self.up()
            self.removed = False

    def sh(self, node: str, script: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """A shell command inside a node, as root (what `pgha-lab exec NODE -- sh -c ...` runs)."""
        return self.ctx.docker.exec(node, "sh", "-c", script, check=check, timeout=timeout)


def remove_leftovers(project: str = PROJECT) -> None:
    """Whatever an earlier, interrupted run left: containers, volumes, networks of the test project,
    and its saved topology (a test may have grown the lab), so the next `up` builds the usual shape."""
    paths = LabPaths(home=REPO, project=project)
    docker = LabDocker(project, paths.compose_file)
    docker.remove_everything()
    snapshots.delete_all(paths, docker)
    disks.release_all(paths)
    paths.topology_file.unlink(missing_ok=True)
    progress.forget(paths, progress.TRACK_FILE)


def prepare() -> None:
    """Before the parallel phase (scripts/test.sh): the images built once, so no two workers build
    them at once, and no lab left by an earlier run in any of this checkout's ten slots, so every
    worker starts from nothing and the serial phase finds no other lab alive."""
    from pgha_lab.bare import images
    images.ensure_built(LabPaths(home=REPO))   # the lab images, then the bare ones made from them
    if not KEEP:
        for slot in range(10 * CHECKOUT_SLOT, 10 * CHECKOUT_SLOT + 10):
            remove_leftovers(project_for(slot))
            remove_leftovers(bare_project_for(slot))


if __name__ == "__main__":
    prepare()
