"""What the lab's images are made from (images/<role>, as a build context) and whether the
engine's copies still match this checkout; superseded copies are pruned."""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

from pgha_lab.gateway import BASE_IMAGE, IMAGES, Engine
from pgha_lab.gateway import IMAGE_LABEL as LABEL
from pgha_lab.paths import LabPaths

ROLES = tuple(IMAGES)


def existing(engine: Any) -> dict[str, dict[str, Any]]:
    """role -> {id, size, created, labels} for the lab images the engine has (base included)."""
    found: dict[str, dict[str, Any]] = {}
    for role, ref in {"base": BASE_IMAGE, **IMAGES}.items():
        img = engine.image(ref)
        if img is not None:
            found[role] = {"ref": ref, "id": img.id, "size": img.size, "created": img.created, "labels": img.labels}
    return found


def context_tar(folder: Path, extra: dict[str, Path] | None = None) -> io.BytesIO:
    """The build context as an uncompressed tar: `folder`'s files plus extra folders/files
    under the given names. Owners and times are normalised so an unchanged input always
    hits the builder's cache."""
    buf = io.BytesIO()

    def add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
        info = tar.gettarinfo(str(path), arcname)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        if info.isfile():
            with path.open("rb") as fh:
                tar.addfile(info, fh)
        else:
            tar.addfile(info)

    def walk(tar: tarfile.TarFile, root: Path, prefix: str) -> None:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            add(tar, path, f"{prefix}{rel.as_posix()}")

    with tarfile.open(fileobj=buf, mode="w") as tar:
        walk(tar, folder, "")
        for name, path in (extra or {}).items():
            if path.is_dir():
                add(tar, path, name)
                walk(tar, path, f"{name}/")
            else:
                add(tar, path, name)
    buf.seek(0)
    return buf


def recipe_digest(paths: LabPaths, role: str) -> str:
    """A digest of images/<role> as the builder sees it; stored as a label on the image so a
    checkout with other Dockerfiles or scripts is noticed (the wheelhouse follows patroni.lock,
    which is part of it)."""
    return hashlib.sha256(context_tar(paths.images / role).getvalue()).hexdigest()[:16]


def outdated(client: Engine, paths: LabPaths) -> list[str]:
    """The lab images (base included) that are missing or were built from other files than the
    checkout holds now."""
    have = existing(client)
    return [role for role in ("base", *ROLES)
            if have.get(role, {}).get("labels", {}).get(f"{LABEL}.recipe") != recipe_digest(paths, role)]


def superseded(dangling: list[Any], paths: LabPaths) -> list[Any]:
    """The untagged lab images a rebuild replaced. A node image is untagged only once a newer one
    took its tag. Untagged images labelled as the base are also the build stages (they inherit
    the base's labels), the next build's cache: only those of another base recipe go."""
    base = recipe_digest(paths, "base")

    def replaced(labels: dict[str, str]) -> bool:
        role = labels.get(f"{LABEL}.role")
        return role in ROLES or (role == "base" and labels.get(f"{LABEL}.recipe") != base)
    return [img for img in dangling if replaced(img.labels or {})]


def prune_superseded(client: Engine, paths: LabPaths) -> int:
    """Remove superseded lab images; one a container still uses stays. The number removed."""
    removed = 0
    for img in superseded(client.dangling_images(f"{LABEL}.role"), paths):
        removed += client.remove_image(img.id)   # one a running lab's container uses stays
    return removed
