"""What the renderers share: a rendered file's description and the header every file carries."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RenderedFile:
    """One file a node runs: its name in paths.node_dir(node), where compose mounts it, its text."""
    name: str
    container_path: str
    content: str


def header(what: str, project: str, profile: str | None = None, comment: str = "#") -> str:
    """Say where the file came from, so a DBA who opens it knows not to edit it in place.
    Only files the timing profile shapes name it: switching profiles must not touch the others."""
    timing = f" (timing profile: {profile})" if profile else ""
    return (f"{comment} {what}, rendered by pgha-lab from labs/{project}/topology.yaml{timing}.\n"
            f"{comment} Mounted read-only; edit the model or the renderer instead, then run `pgha-lab up`.\n")
