"""The suite's own lab: its own compose project, subnet and published ports, so it never touches
a lab the user runs. Leftovers of an interrupted run are removed before it starts and after it ends."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgha_lab import access
from pgha_lab.paths import LabPaths
from pgha_lab.probes import LabProbe
from pgha_lab.topology import Published, Topology

REPO = Path(__file__).resolve().parents[2]
# PGHA_TEST_SLOT (0-9) gives a checkout its own test lab, so two checkouts can test side by side.
SLOT = int(os.environ.get("PGHA_TEST_SLOT", "0"))
PROJECT = "pgha-lab-test" + (str(SLOT) if SLOT else "")
SUBNET = f"10.56.{56 + SLOT}.0/24"
PORTS = Published(primary=25432 + 10 * SLOT, replicas=25433 + 10 * SLOT, stats=28404 + 10 * SLOT)


@dataclass
class LabUnderTest:
    paths: LabPaths
    topo: Topology

    def cli(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", PROJECT, *args],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"pgha-lab {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def up(self) -> subprocess.CompletedProcess:
        return self.cli("up", "--profile", "fast", "--subnet", SUBNET,
                        "--publish-ports", f"{PORTS.primary},{PORTS.replicas},{PORTS.stats}")

    def probe(self) -> LabProbe:
        return access.probe_for(self.paths, self.topo)

    def dsn(self, **kw) -> str:
        return access.dsn(self.paths, self.topo, **kw)

    def password(self) -> str:
        return access.superuser_password(self.paths)


def remove_leftovers() -> None:
    """Whatever an earlier, interrupted run left: containers, volumes, networks of the test project."""
    label = f"label=com.docker.compose.project={PROJECT}"
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True)
    vols = subprocess.run(["docker", "volume", "ls", "-q", "--filter", label], capture_output=True, text=True).stdout.split()
    if vols:
        subprocess.run(["docker", "volume", "rm", "-f", *vols], capture_output=True)
    nets = subprocess.run(["docker", "network", "ls", "-q", "--filter", label], capture_output=True, text=True).stdout.split()
    if nets:
        subprocess.run(["docker", "network", "rm", *nets], capture_output=True)


@pytest.fixture(scope="session")
def test_lab(docker_client, built_images):
    remove_leftovers()
    paths = LabPaths(home=REPO, project=PROJECT)
    topo = Topology.build(project=PROJECT, subnet=SUBNET, published=PORTS)
    lab = LabUnderTest(paths, topo)
    yield lab
    remove_leftovers()


@pytest.fixture()
def healthy_lab(test_lab):
    """The test lab, brought up (a no-op when it is already healthy)."""
    test_lab.up()
    return test_lab
