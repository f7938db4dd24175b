"""No generated password or private key of the suite's running lab inside the images it runs, nor
written into its containers' own layers (what `docker commit` of a node would carry away). Run on
the real lab, so the needles are secrets a real `up` generated and handed to those containers."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from leakscan import Needles, labs_in
from pgha_lab import secrets
from pgha_lab.rolling import staleness

pytestmark = [pytest.mark.docker, pytest.mark.lab]
REPO = Path(__file__).resolve().parents[2]
PEM_KEY_GREP = r"-----BEGIN [A-Z ]*PRIVATE KEY-----\n[A-Za-z0-9+/]{40}"


@pytest.fixture(scope="module")
def scanned_lab(test_lab):
    test_lab.ensure_healthy()
    return test_lab


@pytest.fixture(scope="module")
def needles_file(scanned_lab, tmp_path_factory) -> Path:
    needles = Needles()
    for lab in labs_in(REPO):   # the suite's lab among them, and any other lab made in this checkout
        needles.add_lab(lab)
    # The scan is worth its silence only with the running lab's own secrets in it.
    real = secrets.load(scanned_lab.paths).passwords()
    assert real and set(real) <= needles.passwords and needles.key_lines, "the running lab's secrets are not needles"
    folder = tmp_path_factory.mktemp("needles")
    folder.chmod(0o700)
    target = folder / "needles"
    target.write_text("".join(f"{n}\n" for n in needles.all()))
    target.chmod(0o600)
    return target


def running_images(lab) -> dict[str, str]:
    """role -> the image id the lab's containers of that role run."""
    out = {}
    for node in lab.topo.nodes:
        image = subprocess.run(["docker", "inspect", "-f", "{{.Image}}", lab.topo.container_name(node)],
                               capture_output=True, text=True, check=True).stdout.strip()
        out.setdefault(node.role.value, image)
    return out


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
def test_no_lab_password_or_key_in_the_image(scanned_lab, needles_file, role):
    proc = _password_scan(running_images(scanned_lab)[role], needles_file)
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
def test_no_pem_private_key_where_lab_files_live_in_the_image(scanned_lab, role):
    proc = _key_scan(running_images(scanned_lab)[role])
    assert proc.returncode == 1, f"{role}: files holding a private key: {proc.stdout.split()} {proc.stderr[-500:]}"



def test_no_lab_secret_in_the_files_a_running_node_wrote_into_its_own_layer(scanned_lab, needles_file):
    """Mounts and volumes are where secrets belong, and the role's TLS folder, where the entrypoint
    copies the node's own certificates and keys at start (owned by the service's user, keys 0600);
    any other file a node's start-up wrote into the container's own layer (`docker diff`) must hold none."""
    checked = 0
    for node in scanned_lab.topo.nodes:
        name = scanned_lab.topo.container_name(node)
        tls_dir = staleness.TLS_DIRS[node.role].rstrip("/") + "/"
        changed = [path for line in subprocess.run(
            ["docker", "diff", name], capture_output=True, text=True, check=True).stdout.splitlines()
            if line[:1] in ("A", "C") for path in [line.split(" ", 1)[1]] if not path.startswith(tls_dir)]
        files = subprocess.run(["docker", "exec", name, "find", *changed, "-maxdepth", "0", "-type", "f"],
                               capture_output=True, text=True).stdout.split() if changed else []
        checked += len(files)
        if files:   # the needles on stdin, so no secret is on a command line; -l names files only
            proc = subprocess.run(["docker", "exec", "-i", name, "grep", "-lsF", "-f", "-", "--", *files],
                                  input=needles_file.read_text(), capture_output=True, text=True)
            assert proc.returncode == 1, f"{node.name}: files holding a lab secret: {proc.stdout.split()} {proc.stderr[-300:]}"
    assert checked > 0, "no node wrote a file into its layer: the scan looked at nothing"


def test_the_image_scans_find_a_planted_key_and_passwords(scanned_lab, needles_file, tmp_path):
    """The scans are only worth their silence if they speak up: the same two scans, over an image
    with a folder planted where lab files live, name the running lab's password in a text file, one
    inside a binary file, and its CA's private key."""
    planted = tmp_path / "planted"
    planted.mkdir()
    password = secrets.load(scanned_lab.paths).superuser_password
    (planted / "leak.txt").write_text(f"PASSWORD={password}\n")
    (planted / "leak.bin").write_bytes(b"\x00\x01binary\x00" + password.encode() + b"\x00\xff")
    (planted / "leak.key").write_bytes((scanned_lab.paths.certs / "ca.key").read_bytes())
    mounts = ((planted, "/srv/planted"),)
    image = running_images(scanned_lab)["haproxy"]
    found = _password_scan(image, needles_file, mounts).stdout.split()
    assert {"/srv/planted/leak.txt", "/srv/planted/leak.bin"} <= set(found), found
    found = _key_scan(image, mounts).stdout.split()
    assert "/srv/planted/leak.key" in found, found
