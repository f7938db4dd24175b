"""What every command needs: the lab's paths and its topology."""
from __future__ import annotations

import argparse

import yaml

from ..paths import LabPaths, default_home
from ..topology import DEFAULT_PROJECT, Topology, TopologyError
from ..errors import LabError
from pathlib import Path


def lab_paths(args: argparse.Namespace) -> LabPaths:
    home = Path(args.home).resolve() if getattr(args, "home", None) else default_home()
    return LabPaths(home=home, project=getattr(args, "project", None) or DEFAULT_PROJECT)


def load_topology(paths: LabPaths) -> Topology:
    """The lab's saved topology, or the default one for a lab not yet created."""
    if not paths.topology_file.exists():
        return Topology.build(project=paths.project)
    try:
        return Topology.from_dict(yaml.safe_load(paths.topology_file.read_text()))
    except TopologyError as exc:
        raise LabError(f"{paths.topology_file}: {exc}") from None
