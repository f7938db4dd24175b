"""Wheelhouse inputs: the lock file and the pip platform tags for the engine's architecture."""
from pathlib import Path

import pytest
from packaging.version import Version

from pgha_lab.imaging import wheelhouse
from pgha_lab.errors import LabError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("arch,machine", [("amd64", "x86_64"), ("x86_64", "x86_64"),
                                          ("arm64", "aarch64"), ("aarch64", "aarch64"), ("AMD64", "x86_64")])
def test_engine_arch_maps_to_uname_machine(arch, machine):
    assert wheelhouse.machine_for(arch) == machine


def test_unknown_arch_is_refused_with_a_sentence():
    with pytest.raises(LabError, match="amd64 and arm64"):
        wheelhouse.machine_for("s390x")


def test_amd64_tags_cover_noble_glibc_down_to_manylinux2014():
    tags = wheelhouse.platform_tags("amd64")
    assert tags[0] == "manylinux_2_39_x86_64"       # noble's glibc
    assert "manylinux_2_17_x86_64" in tags and "manylinux2014_x86_64" in tags
    assert "manylinux_2_40_x86_64" not in tags       # newer than noble: would not load
    assert all(t.endswith("x86_64") for t in tags)


def test_arm64_tags_are_aarch64_only():
    tags = wheelhouse.platform_tags("arm64")
    assert tags[0] == "manylinux_2_39_aarch64"
    assert "manylinux2014_aarch64" in tags
    assert not any("x86_64" in t for t in tags)
    assert "manylinux1_aarch64" not in tags           # never existed


def test_download_args_target_the_image_interpreter():
    args = wheelhouse.download_args("arm64")
    assert args[0] == "--only-binary=:all:"
    assert args[args.index("--python-version") + 1] == "3.12"
    assert args[args.index("--abi") + 1] == "cp312"
    assert args[args.index("--implementation") + 1] == "cp"


def test_parse_lock_reads_pins_extras_and_sdist_marks():
    pins = wheelhouse.parse_lock(
        "# comment\n\npatroni[psycopg3, etcd3]==4.1.5\npython-etcd==0.4.5  # sdist\nPyYAML==6.0.4 # wheel\n")
    assert [p.name for p in pins] == ["patroni", "python-etcd", "PyYAML"]
    assert pins[0].extras == ("psycopg3", "etcd3")
    assert pins[0].requirement == "patroni[psycopg3,etcd3]==4.1.5"
    assert [p.sdist_only for p in pins] == [False, True, False]


@pytest.mark.parametrize("line", ["patroni>=4.1", "patroni", "patroni==", "-e ."])
def test_parse_lock_refuses_unpinned_lines(line):
    with pytest.raises(LabError, match="not a name==version pin"):
        wheelhouse.parse_lock(line + "\n")


def test_parse_lock_refuses_duplicates_across_spellings():
    with pytest.raises(LabError, match="more than once"):
        wheelhouse.parse_lock("typing_extensions==4.1\ntyping-extensions==4.2\n")


def test_committed_lock_pins_patroni_41_with_its_extras():
    pins = {p.name.lower(): p for p in wheelhouse.parse_lock((REPO / "images/dbnode/patroni.lock").read_text())}
    assert pins["patroni"].version.startswith("4.1.")
    assert set(pins["patroni"].extras) == {"psycopg3", "etcd3"}
    assert pins["python-etcd"].sdist_only and pins["ydiff"].sdist_only
    # As versions, not strings: "1.10" sorts before "1.5" as text but is the later release.
    assert Version(pins["ydiff"].version) < Version("1.5")


def test_wheelhouse_folder_changes_with_lock_and_arch(tmp_path):
    a = wheelhouse.wheelhouse_dir(tmp_path, "x==1\n", "amd64")
    assert a == wheelhouse.wheelhouse_dir(tmp_path, "x==1\n", "x86_64")
    assert a != wheelhouse.wheelhouse_dir(tmp_path, "x==2\n", "amd64")
    assert a != wheelhouse.wheelhouse_dir(tmp_path, "x==1\n", "arm64")
