"""No generated password or private key in any git-tracked file or compose file."""
from __future__ import annotations

import subprocess
from pathlib import Path

from leakscan import Needles, labs_in, leaks_in
from pgha_lab import profiles, render
from pgha_lab.paths import LabPaths
from pgha_lab.topology import Topology

REPO = Path(__file__).resolve().parents[2]


def _needles(tmp_path: Path) -> Needles:
    needles = Needles()
    for lab in labs_in(REPO):            # labs a user or the suite made in this checkout
        needles.add_lab(lab)
    fresh = LabPaths(home=tmp_path)      # and a fresh one, so the scan never runs empty
    render.write_lab(fresh, Topology.build(), profiles.SEED)
    needles.add_lab(fresh)
    return needles


def test_the_scanner_finds_what_it_looks_for(tmp_path):
    needles = _needles(tmp_path)
    lab = LabPaths(home=tmp_path)
    assert leaks_in(lab.secrets_file.read_bytes(), needles)
    assert leaks_in((lab.certs / "ca.key").read_bytes(), needles)
    assert leaks_in((lab.node_dir("haproxy") / "tls" / "haproxy-check.pem").read_bytes(), needles)
    assert not leaks_in((lab.node_dir("dbnode1") / "patroni.yml").read_bytes(), needles)


def test_no_tracked_file_or_compose_file_holds_a_secret(tmp_path):
    needles = _needles(tmp_path)
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    files = {REPO / name for name in tracked.decode().split("\0") if name}
    files |= {REPO / "compose.yaml", *(lab.compose_file for lab in labs_in(REPO))}
    leaks = {}
    for f in sorted(files):
        if f.is_file():
            found = leaks_in(f.read_bytes(), needles)
            if found:
                leaks[str(f.relative_to(REPO))] = found
    assert not leaks
