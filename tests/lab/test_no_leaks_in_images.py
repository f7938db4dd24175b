"""No generated password or private key inside any lab image's filesystem."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from leakscan import Needles, labs_in
from pgha_lab import profiles, render
from pgha_lab.paths import LabPaths
from pgha_lab.topology import Topology

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
PEM_KEY_GREP = r"-----BEGIN [A-Z ]*PRIVATE KEY-----\n[A-Za-z0-9+/]{40}"


@pytest.fixture(scope="module")
def needles_file(tmp_path_factory) -> Path:
    needles = Needles()
    for lab in labs_in(REPO):
        needles.add_lab(lab)
    home = tmp_path_factory.mktemp("fresh")
    render.write_lab(LabPaths(home=home), Topology.build(), profiles.SEED)
    needles.add_lab(LabPaths(home=home))
    folder = tmp_path_factory.mktemp("needles")
    folder.chmod(0o700)
    target = folder / "needles"
    target.write_text("".join(f"{n}\n" for n in needles.all()))
    target.chmod(0o600)
    return target


def _mounts(mounts: tuple[tuple[Path, str], ...]) -> list[str]:
    return [arg for src, dst in mounts for arg in ("-v", f"{src}:{dst}:ro")]


def _password_scan(image: str, needles: Path, mounts: tuple[tuple[Path, str], ...] = ()) -> subprocess.CompletedProcess:
    # grep inside the image (as root, no network), over the whole filesystem, binary files
    # included, but the kernel's and the needles' own folders; -l names files only, so no
    # secret is ever printed.
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "grep",
         "-v", f"{needles.parent}:/pgha-needles:ro", *_mounts(mounts), image,
         "-rls", "--exclude-dir=proc", "--exclude-dir=sys", "--exclude-dir=dev", "--exclude-dir=pgha-needles",
         "-F", "-f", "/pgha-needles/needles", "/"],
        capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("role", ["etcd", "dbnode", "haproxy"])
def test_no_lab_password_or_key_in_the_image(built_images, needles_file, role):
    proc = _password_scan(built_images[role], needles_file)
    assert proc.returncode == 1, f"{role}: files holding a lab secret: {proc.stdout.split()} {proc.stderr[-500:]}"


# Where lab material could end up if a build copied it in. System libraries are left out:
# GnuTLS, for one, embeds PEM key templates that are no one's secret.
LAB_DIRS = ("/etc/patroni", "/etc/etcd", "/etc/haproxy", "/run/pgha-lab", "/var/lib/postgresql",
            "/var/lib/etcd", "/opt", "/usr/local", "/root", "/home", "/tmp", "/srv")


def _key_scan(image: str, mounts: tuple[tuple[Path, str], ...] = ()) -> subprocess.CompletedProcess:
    script = 'for d in "$@"; do [ -e "$d" ] && set -- "$@" "$d"; shift; done; ' \
             '[ "$#" -gt 0 ] || exit 1; exec grep -rls -zP -e "$PATTERN" "$@"'
    return subprocess.run(["docker", "run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "sh",
                           "-e", f"PATTERN={PEM_KEY_GREP}", *_mounts(mounts), image, "-c", script, "sh", *LAB_DIRS],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("role", ["etcd", "dbnode", "haproxy"])
def test_no_pem_private_key_where_lab_files_live_in_the_image(built_images, role):
    proc = _key_scan(built_images[role])
    assert proc.returncode == 1, f"{role}: files holding a private key: {proc.stdout.split()} {proc.stderr[-500:]}"



def test_the_image_scans_find_a_planted_key_and_passwords(built_images, needles_file, tmp_path):
    """The scans are only worth their silence if they speak up: the same two scans, over an image
    with a folder planted where lab files live, name a password in a text file, one inside a
    binary file, and a private key."""
    planted = tmp_path / "planted"
    planted.mkdir()
    lab = sorted(p for p in needles_file.read_text().splitlines() if p)
    (planted / "leak.txt").write_text(f"PASSWORD={lab[0]}\n")
    (planted / "leak.bin").write_bytes(b"\x00\x01binary\x00" + lab[-1].encode() + b"\x00\xff")
    fresh_key = next(Path(tmp_path.parent).glob("fresh*/certs/pgha-lab/ca.key"))
    (planted / "leak.key").write_bytes(fresh_key.read_bytes())
    mounts = ((planted, "/srv/planted"),)
    found = _password_scan(built_images["haproxy"], needles_file, mounts).stdout.split()
    assert {"/srv/planted/leak.txt", "/srv/planted/leak.bin"} <= set(found), found
    found = _key_scan(built_images["haproxy"], mounts).stdout.split()
    assert "/srv/planted/leak.key" in found, found
