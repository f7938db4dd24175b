"""A lab from the host's side: bringing it up end to end, reading it, and connecting to it."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pgha_lab import health, profiles, secrets, tls

from pgha_lab import lifecycle as lab

from pgha_lab import render

from pgha_lab.build import images

from pgha_lab.render import compose
from pgha_lab.errors import LabError
from pgha_lab.paths import LabPaths
from pgha_lab.probes import ClientTLS, LabProbe, Member
from pgha_lab.term.progress import Progress
from pgha_lab.topology import Topology


def probe_for(paths: LabPaths, topo: Topology) -> LabProbe:
    files = tls.host_client(paths)   # etcd and the REST API both accept the host's client certificate
    client = ClientTLS(ca=str(files.ca), cert=str(files.cert), key=str(files.key))
    return LabProbe(topo, etcd_tls=client, patroni_tls=client)


def ca_file(paths: LabPaths):
    return paths.certs / tls.CA_CERT


def saved_profile(paths: LabPaths) -> str | None:
    f = paths.state / "profile"
    return f.read_text().strip() if f.exists() else None


def save_profile(paths: LabPaths, name: str) -> None:
    f = paths.state / "profile"
    if not f.exists() or f.read_text().strip() != name:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(name + "\n")


@dataclass
class UpOutcome:
    topology: Topology
    paths: LabPaths
    profile: str
    members: list[Member] = field(default_factory=list)
    seconds: float = 0.0

    def psql_dsn(self, replica: bool = False, published: bool = False) -> str:
        return dsn(self.paths, self.topology, replica=replica, published=published)

    def connect_text(self) -> str:
        t, p = self.topology, self.paths
        lines = [
            "",
            f"Lab {t.project!r} is healthy ({self.profile} timings, {self.seconds:.0f}s).",
            "Connect through HAProxy (primary on 5432, replicas on 5433), TLS verified end to end:",
            f"  psql \"{self.psql_dsn()}\"",
            f"  URI: {uri(p, t)}",
            f"  password: PGPASSWORD=$(sed -n 's/^PATRONI_SUPERUSER_PASSWORD=//p' {p.secrets_file})",
            "  no psql on this host? `pgha-lab psql` runs one inside the lab.",
        ]
        if t.published.enabled:
            lines.append(f"  Docker Desktop: the same on {t.published.bind}:{t.published.primary} "
                         f"(replicas {t.published.replicas}).")
        stats = f"http://{t.haproxy.address}:{t.ports.haproxy_stats}/"
        if t.published.enabled:
            stats += f" (or http://{t.published.bind}:{t.published.stats}/)"
        lines.append(f"HAProxy stats: {stats}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"project": self.topology.project, "profile": self.profile, "seconds": round(self.seconds, 1),
                "members": [asdict(m) for m in self.members], "dsn": self.psql_dsn(),
                "replica_dsn": self.psql_dsn(replica=True)}


def dsn(paths: LabPaths, topo: Topology, replica: bool = False, published: bool = False,
        user: str = "postgres", dbname: str = "postgres", ca: str | None = None) -> str:
    """libpq conninfo through HAProxy with full verification; `ca` is the CA file's path as the
    client sees it (the host's copy unless given)."""
    if published:
        host = topo.published.bind
        port = topo.published.replicas if replica else topo.published.primary
    else:
        host = str(topo.haproxy.address)
        port = topo.ports.haproxy_replicas if replica else topo.ports.haproxy_primary
    return (f"host={host} port={port} dbname={dbname} user={user} sslmode=verify-full "
            f"sslrootcert={ca or ca_file(paths)}")


def uri(paths: LabPaths, topo: Topology, replica: bool = False) -> str:
    port = topo.ports.haproxy_replicas if replica else topo.ports.haproxy_primary
    return (f"postgresql://postgres@{topo.haproxy.address}:{port}/postgres"
            f"?sslmode=verify-full&sslrootcert={ca_file(paths)}")


def superuser_password(paths: LabPaths) -> str:
    return secrets.load(paths).superuser_password


def bring_up(paths: LabPaths, topo: Topology, *, profile: str | None, pg_install: str,
             progress: Progress, deadline_s: float) -> UpOutcome:
    from pgha_lab.gateway import client, require_compose
    started = time.monotonic()
    client()
    require_compose()
    # Refusals come before anything is written or started.
    lab.check_ports_free(topo)
    lab.check_stale_dcs(topo)
    chosen = profile or saved_profile(paths) or profiles.DEFAULT
    timings = profiles.get(chosen)   # an unknown saved profile is refused here, before any build
    built = images.ensure_built(   # the build prints its own lines, image by image
        paths, pg_install=pg_install,
        announce=lambda roles: progress.info(f"building images: {', '.join(roles)} missing or out of date"))
    if not built:
        progress.info("node images match this checkout")
    existing = {name for name, state in lab.running_containers(topo).items() if state == "running"}
    with progress.step("Writing certificates, secrets and node configs"):
        changed = render.write_lab(paths, topo, timings)
        compose.write_compose(topo, paths)
        save_profile(paths, chosen)
    lab.start(paths, topo, progress)
    # Nodes recreated on newer images free the old ones, which no build has removed yet.
    images.prune_superseded(images.sdk(), paths)
    # Configs and TLS are read at boot (single-file mounts even pin the old file), so a running
    # node whose files changed is rebooted, as one would reboot a VM after editing its config.
    stale = [n.name for n in topo.nodes if n.name in existing and _touched(paths, n.name, changed)]
    if stale:
        with progress.step(f"Restarting {', '.join(stale)} to apply their new files"):
            lab.run_compose(paths, topo, "restart", *stale)
    probe = probe_for(paths, topo)
    lab.wait_for(progress, lab.health_waits(probe, topo), topo, deadline_s)
    with progress.step("Checking Patroni's timings in etcd"):
        creds = secrets.load(paths)
        note = apply_dcs_timings(probe, topo, (creds.restapi_user, creds.restapi_password), timings)
    if note.startswith("set"):
        progress.info(f"Patroni's timings in etcd {note} ({chosen} profile)")
    return UpOutcome(topology=topo, paths=paths, profile=chosen, members=probe.members(),
                     seconds=time.monotonic() - started)


def _touched(paths: LabPaths, node: str, changed: list) -> bool:
    folder = paths.node_dir(node)
    return any(folder == p or folder in p.parents for p in changed)


def apply_dcs_timings(probe: LabProbe, topo: Topology, auth: tuple[str, str], profile) -> str:
    """bootstrap.dcs only counts on the first boot; later profile changes go to etcd through the
    REST API (what `patronictl edit-config` does), so `up --profile` works on an existing lab."""
    wanted = {"ttl": profile.ttl, "loop_wait": profile.loop_wait, "retry_timeout": profile.retry_timeout}
    leader = health.leader_of(probe.members())
    node = topo.node(leader) if leader else topo.db[0]
    code, config = probe.rest(node, "/config")
    if code != 200:
        raise LabError(f"could not read Patroni's configuration from {node.name} (HTTP {code}).")
    if all(config.get(k) == v for k, v in wanted.items()):
        return "already " + ", ".join(f"{k} {v}" for k, v in wanted.items())
    r = probe.rest_change(node, "PATCH", "/config", wanted, auth, timeout=10)
    if r.status_code != 200:
        raise LabError(f"Patroni refused the {profile.name} timings: {r.text.strip() or r.status_code}.")
    return "set " + ", ".join(f"{k} {v}" for k, v in wanted.items())
