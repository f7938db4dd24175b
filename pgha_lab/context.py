"""LabContext: the handle on one lab (paths, topology, profile, secrets, probes, node control),
built once per command and passed down to chaos, role changes, drills, lessons and the dashboard."""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import yaml

from pgha_lab import health, lab_settings, profiles, secrets, tls
from pgha_lab.errors import LabError
from pgha_lab.gateway import LabDocker
from pgha_lab.paths import LabPaths, default_home
from pgha_lab.probes import ClientTLS, Cluster, LabProbe
from pgha_lab.profiles import Profile
from pgha_lab.topology import DEFAULT_PROJECT, Topology, TopologyError
from pgha_lab.wait import Verdict

PROFILE_FILE = "profile"   # in labs/<project>/: the timing profile the lab was last brought up with


def load_topology(paths: LabPaths) -> Topology:
    """The lab's saved topology, or the default one for a lab not yet created."""
    if not paths.topology_file.exists():
        return Topology.build(project=paths.project)
    try:
        return Topology.from_dict(yaml.safe_load(paths.topology_file.read_text()))
    except TopologyError as exc:
        raise LabError(f"{paths.topology_file}: {exc}") from None
    except yaml.YAMLError:   # from_dict turns a readable document's bad shapes into TopologyError
        raise LabError(f"{paths.topology_file} is not a topology pgha-lab wrote; fix it, or remove it "
                       f"to fall back to the default topology.") from None


@dataclass
class LabContext:
    paths: LabPaths
    topology: Topology

    @classmethod
    def open(cls, home: Path | str | None = None, project: str | None = None) -> LabContext:
        paths = LabPaths(home=Path(home).resolve() if home else default_home(), project=project or DEFAULT_PROJECT)
        return cls(paths, load_topology(paths))

    def with_topology(self, topology: Topology) -> LabContext:
        """The same lab with another shape (what `up --db-nodes 3` is about to make)."""
        return replace(self, topology=topology)   # cached probes and node control are not carried over

    @property
    def project(self) -> str:
        return self.topology.project

    # -- node control and probes ---------------------------------------------------------------
    @cached_property
    def docker(self) -> LabDocker:
        return LabDocker(self.topology.project, self.paths.compose_file)

    @cached_property
    def probe(self) -> LabProbe:
        files = tls.host_client(self.paths)   # etcd and the REST API both accept the host's client certificate
        client = ClientTLS(ca=str(files.ca), cert=str(files.cert), key=str(files.key))
        return LabProbe(self.topology, etcd_tls=client, patroni_tls=client)

    def cluster(self) -> Cluster:
        return self.probe.cluster()

    def health(self) -> Verdict:
        """The one meaning of healthy (health.assess_lab), read from the live lab now."""
        probe = self.probe
        return health.assess_lab(probe.etcd(), probe.cluster(), probe.haproxy(), [n.name for n in self.topology.db],
                                 sync_required=self.settings.expects_sync_standby)

    def is_running(self) -> bool:
        return any(state == "running" for state in self.docker.containers().values())

    # -- settings and secrets -----------------------------------------------------------------
    @property
    def saved_profile(self) -> str | None:
        f = self.paths.state / PROFILE_FILE
        return f.read_text().strip() if f.exists() else None

    def save_profile(self, name: str) -> None:
        f = self.paths.state / PROFILE_FILE
        if not f.exists() or f.read_text().strip() != name:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(name + "\n")

    @property
    def settings(self) -> lab_settings.LabSettings:
        """Replication mode and safety switches the lab was last brought up with (settings.json)."""
        return lab_settings.load(self.paths.state)

    @property
    def profile(self) -> Profile:
        return profiles.get(self.saved_profile or profiles.DEFAULT)

    @cached_property
    def secrets(self) -> secrets.Secrets:
        return secrets.load(self.paths)

    @property
    def restapi_auth(self) -> tuple[str, str]:
        return (self.secrets.restapi_user, self.secrets.restapi_password)

    # -- connecting ----------------------------------------------------------------------------
    @property
    def ca_file(self) -> Path:
        return self.paths.certs / tls.CA_CERT

    def dsn(self, replica: bool = False, published: bool = False, user: str = "postgres",
            dbname: str = "postgres", ca: str | None = None) -> str:
        """libpq conninfo through HAProxy with full verification; `ca` is the CA file's path as the
        client sees it (the host's copy unless given)."""
        topo = self.topology
        if published:
            host = topo.published.bind
            port = topo.published.replicas if replica else topo.published.primary
        else:
            host = str(topo.entry_address)   # the VIP when two HAProxy nodes share one
            port = topo.ports.haproxy_replicas if replica else topo.ports.haproxy_primary
        return (f"host={host} port={port} dbname={dbname} user={user} sslmode=verify-full "
                f"sslrootcert={ca or self.ca_file}")

    def uri(self, replica: bool = False) -> str:
        topo = self.topology
        port = topo.ports.haproxy_replicas if replica else topo.ports.haproxy_primary
        return (f"postgresql://postgres@{topo.entry_address}:{port}/postgres"
                f"?sslmode=verify-full&sslrootcert={self.ca_file}")
