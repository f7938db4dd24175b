"""Per-lab passwords: made once, 0600, stable, and in the variables Patroni reads."""
from __future__ import annotations

import stat

import pytest

from pgha_lab import secrets
from pgha_lab.errors import LabError
from pgha_lab.paths import LabPaths


def test_made_once_0600_and_stable_across_calls(tmp_path):
    paths = LabPaths(home=tmp_path)
    first = secrets.ensure(paths)
    assert stat.S_IMODE(paths.secrets_file.stat().st_mode) == 0o600
    raw, mtime = paths.secrets_file.read_bytes(), paths.secrets_file.stat().st_mtime_ns
    assert secrets.ensure(paths) == first == secrets.load(paths)
    assert paths.secrets_file.read_bytes() == raw and paths.secrets_file.stat().st_mtime_ns == mtime


def test_passwords_are_random_long_and_distinct(tmp_path):
    a = secrets.ensure(LabPaths(home=tmp_path / "a"))
    b = secrets.ensure(LabPaths(home=tmp_path / "b"))
    assert len(set(a.passwords() + b.passwords())) == 8
    assert all(len(p) >= 32 for p in a.passwords())


def test_the_file_holds_patronis_own_variables(tmp_path):
    paths = LabPaths(home=tmp_path)
    s = secrets.ensure(paths)
    env = dict(line.split("=", 1) for line in paths.secrets_file.read_text().splitlines() if line and not line.startswith("#"))
    assert env == {
        "PATRONI_SUPERUSER_USERNAME": "postgres", "PATRONI_SUPERUSER_PASSWORD": s.superuser_password,
        "PATRONI_REPLICATION_USERNAME": "replicator", "PATRONI_REPLICATION_PASSWORD": s.replication_password,
        "PATRONI_REWIND_USERNAME": "rewind_user", "PATRONI_REWIND_PASSWORD": s.rewind_password,
        "PATRONI_RESTAPI_USERNAME": "patroni", "PATRONI_RESTAPI_PASSWORD": s.restapi_password,
    }


def test_a_loosened_mode_is_tightened_again(tmp_path):
    paths = LabPaths(home=tmp_path)
    secrets.ensure(paths)
    paths.secrets_file.chmod(0o644)
    secrets.ensure(paths)
    assert stat.S_IMODE(paths.secrets_file.stat().st_mode) == 0o600


def test_load_without_a_lab_names_the_fix(tmp_path):
    with pytest.raises(LabError, match=r"run `pgha-lab up` first\.$"):
        secrets.load(LabPaths(home=tmp_path))


def test_a_damaged_file_is_refused_and_left_alone(tmp_path):
    paths = LabPaths(home=tmp_path)
    secrets.ensure(paths)
    paths.secrets_file.write_text("PATRONI_SUPERUSER_PASSWORD=x\n")
    with pytest.raises(LabError, match="lacks PATRONI_"):
        secrets.ensure(paths)
    assert paths.secrets_file.read_text() == "PATRONI_SUPERUSER_PASSWORD=x\n"
