"""What every command needs: the lab's paths and its topology."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from pgha_lab.errors import LabError
from pgha_lab.paths import LabPaths, default_home
from pgha_lab.topology import DEFAULT_PROJECT, Topology, TopologyError


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
    except yaml.YAMLError:   # from_dict turns a readable document's bad shapes into TopologyError
        raise LabError(f"{paths.topology_file} is not a topology pgha-lab wrote; fix it, or remove it "
                       f"to fall back to the default topology.") from None
