"""Where a lab keeps its generated state on the host: certificates under certs/<project>/; topology,
secrets and rendered configs under labs/<project>/."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pgha_lab.topology import DEFAULT_PROJECT

# The hand-build track's record in labs/<project>/ (lessons/progress.py reads and writes it): named
# here so `down --volumes`, which forgets it with the nodes, needs nothing of the lessons.
TRACK_FILE = "track.json"


def default_home() -> Path:
    """The checkout holding compose.yaml when run from a clone; else $PGHA_LAB_HOME or the cwd."""
    env = os.environ.get("PGHA_LAB_HOME")
    if env:
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "images").is_dir():
        return checkout
    return Path.cwd().resolve()


@dataclass(frozen=True)
class LabPaths:
    home: Path
    project: str = DEFAULT_PROJECT

    @property
    def state(self) -> Path:
        return self.home / "labs" / self.project

    @property
    def topology_file(self) -> Path:
        return self.state / "topology.yaml"

    @property
    def certs(self) -> Path:
        """The lab's TLS material: its CA, every node's certificates and the host's client certificate."""
        return self.home / "certs" / self.project

    @property
    def legacy_certs(self) -> Path:
        """Where labs made before certs/ existed kept their TLS material; `up` moves it (see tls.adopt_legacy)."""
        return self.state / "certs"

    @property
    def secrets_file(self) -> Path:
        return self.state / "secrets.env"

    @property
    def nodes(self) -> Path:
        return self.state / "nodes"

    def node_dir(self, name: str) -> Path:
        return self.nodes / name

    @property
    def compose_file(self) -> Path:
        """The committed top-level compose.yaml describes the default lab; other labs get their own."""
        if self.project == DEFAULT_PROJECT:
            return self.home / "compose.yaml"
        return self.state / "compose.yaml"

    @property
    def images(self) -> Path:
        return self.home / "images"

    @property
    def cache(self) -> Path:
        """Host-side build inputs (wheelhouse, base rootfs tarball), shared by every lab."""
        return self.home / ".cache"
