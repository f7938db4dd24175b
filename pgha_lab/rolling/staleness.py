"""Which running nodes run with older files than the ones rendered on the host: certificates,
configs, image, compose settings. Read from the node itself (what its entrypoint copied and what
its single-file mounts pinned at start), so a rotation or an edit nobody rolled yet is seen."""
from __future__ import annotations

import datetime as dt
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pgha_lab import node_paths, tls
from pgha_lab.context import LabContext
from pgha_lab.gateway import IMAGES, ContainerState
from pgha_lab.render import node_mounts
from pgha_lab.topology import Node, Role

# Where each role's entrypoint copies the mounted TLS folder at start (images/*/entrypoint).
TLS_DIRS = {Role.ETCD: node_paths.ETCD_TLS, Role.DB: node_paths.PATRONI_TLS, Role.HAPROXY: node_paths.HAPROXY_TLS}

CERTIFICATES, CONFIG, IMAGE, SETTINGS = "certificates", "config", "image", "compose settings"


@dataclass
class NodeFiles:
    """What one node runs compared with the host: `stale` names what is older; `unknown` says why
    it could not be read (a paused or stopped node)."""
    node: str
    stale: list[str] = field(default_factory=list)
    unknown: str = ""

    @property
    def is_stale(self) -> bool:
        return bool(self.stale)

    def text(self) -> str:
        if self.unknown:
            return f"{self.node}: {self.unknown}"
        if self.stale:
            return f"{self.node} runs older {', '.join(self.stale)} than the host's"
        return f"{self.node}: current"


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def expected_files(ctx: LabContext, node: Node) -> dict[str, tuple[str, str | None]]:
    """container path -> (what it is, sha256 of the host's current file) for one node."""
    folder = ctx.paths.node_dir(node.name)
    out: dict[str, tuple[str, str | None]] = {}
    for name in tls.node_bundle(ctx.topology, node):
        out[f"{TLS_DIRS[node.role]}/{name}"] = (CERTIFICATES, _sha(folder / "tls" / name))
    for name, target in node_mounts(node, ctx.topology):
        out[target] = (CONFIG, _sha(folder / name))
    return out


def check_node(ctx: LabContext, node: Node, state: str, built: dict[str, str | None],
               recreate: set[str]) -> NodeFiles:
    result = NodeFiles(node.name)
    if state != "running":
        result.unknown = f"{state or 'missing'}, so what it runs cannot be read"
        return result
    # A node restored from a snapshot runs the image committed over its lab image: judged by that
    # lab image, and compose (which sees another image name) is not asked about its settings.
    image, restored = ctx.docker.origin_image(node)
    if image and built.get(node.role.value) and image != built[node.role.value]:
        result.stale.append(IMAGE)
    elif node.name in recreate and not restored:   # compose's own verdict; an image change is already named
        result.stale.append(SETTINGS)
    expected = expected_files(ctx, node)
    have = ctx.docker.file_digests(node, list(expected))
    if have is None:
        result.unknown = "does not answer docker exec, so its files cannot be read"
        return result
    for path, (kind, digest) in expected.items():
        if digest is not None and have.get(path) != digest and kind not in result.stale:
            result.stale.append(kind)
    return result


# A node reads its files when it boots; a host file last written this long before the boot is one
# the node has (the margin covers the moment between Docker's mounts and its StartedAt stamp).
BOOT_MARGIN_S = 1.0


def _epoch(stamp: str) -> float | None:
    """Docker's RFC 3339 time (nanoseconds, Z) as seconds since the epoch; None when unset."""
    if not stamp or stamp.startswith("0001-"):
        return None
    day, _, rest = stamp.rstrip("Z").partition("T")
    clock, _, fraction = rest.partition(".")
    try:
        whole = dt.datetime.fromisoformat(f"{day}T{clock}+00:00").timestamp()
    except ValueError:
        return None
    return whole + float(f"0.{fraction or 0}")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def booted_after_its_files(ctx: LabContext, node: Node, state: ContainerState) -> bool:
    """The node booted after every file it reads was last written on the host (and compose made its
    container after the compose file's last change): it runs them, with no need to look inside."""
    started, created = _epoch(state.started_at), _epoch(state.created)
    if started is None or created is None:
        return False
    folder = ctx.paths.node_dir(node.name)
    newest = max([_mtime(folder / "tls" / name) for name in tls.node_bundle(ctx.topology, node)]
                 + [_mtime(folder / name) for name, _ in node_mounts(node, ctx.topology)])
    # compose reads its file before it creates the container, so one written before the creation is its.
    return newest < started - BOOT_MARGIN_S and _mtime(ctx.paths.compose_file) < created


def survey(ctx: LabContext, nodes: list[Node] | None = None,
           states: dict[str, ContainerState] | None = None) -> list[NodeFiles]:
    """Every node (or the ones given), in topology order. A node that booted after its files were
    written and runs the built image is current without a look inside (what keeps `status` quick);
    the others are read with docker exec, side by side. `states`: Docker's, when already read. A bare
    lab's nodes run what their builder installed, not files pushed from the host: none is stale."""
    if ctx.topology.bare:
        return []
    nodes = list(nodes) if nodes is not None else list(ctx.topology.nodes)
    states = states if states is not None else ctx.docker.states(nodes)
    built = ctx.docker.image_ids(list(IMAGES.values()))
    built_for = {role: built.get(ref) for role, ref in IMAGES.items()}

    def current(node: Node) -> bool:
        state = states[node.name]
        return (state.running and state.image == built_for.get(node.role.value)
                and booted_after_its_files(ctx, node, state))

    doubtful = [n for n in nodes if not current(n)]
    recreate = ctx.docker.compose_would_recreate() if doubtful and ctx.paths.compose_file.exists() else set()
    with ThreadPoolExecutor(max_workers=max(1, len(doubtful))) as pool:
        found = pool.map(lambda n: check_node(ctx, n, states[n.name].status, built_for, recreate), doubtful)
        checked = dict(zip([n.name for n in doubtful], found, strict=True))
    return [checked.get(n.name) or NodeFiles(n.name) for n in nodes]


def stale_nodes(ctx: LabContext, nodes: list[Node] | None = None,
                states: dict[str, ContainerState] | None = None) -> list[NodeFiles]:
    return [f for f in survey(ctx, nodes, states) if f.is_stale]
