"""What every command needs: the lab's paths, or the whole lab context."""
from __future__ import annotations

import argparse
from pathlib import Path

from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.paths import LabPaths, default_home
from pgha_lab.topology import DEFAULT_PROJECT, TopologyError, check_project


def project(args: argparse.Namespace) -> str:
    """--project, checked before any path is made from it (`../../x` would leave labs/)."""
    try:
        return check_project(getattr(args, "project", None) or DEFAULT_PROJECT)
    except TopologyError as exc:
        raise LabError(str(exc)) from None


def lab_paths(args: argparse.Namespace) -> LabPaths:
    home = Path(args.home).resolve() if getattr(args, "home", None) else default_home()
    return LabPaths(home=home, project=project(args))


def lab_context(args: argparse.Namespace) -> LabContext:
    return LabContext.open(getattr(args, "home", None), project(args))
