"""The track on a bare lab as `up --bare` leaves it: every step's check fails, each for the reason
its step states, through the command line (exit 3, --json for instructors), and a hint comes one at a
time; nothing passed is recorded."""
from __future__ import annotations

import json

import pytest

from pgha_lab.track import course

pytestmark = [pytest.mark.docker, pytest.mark.lab, pytest.mark.xdist_group("track")]

# step -> (the known mistake or state it names, how its first finding begins) on a bare lab
BARE_REASONS = {
    1: ("hostname", "etcd1's hostname is 'ubuntu', not its lab name"),
    2: ("missing-file", "there is no CA certificate at /etc/etcd/tls/ca.crt on etcd1"),
    3: ("not-configured", "etcd is not configured on etcd1"),
    4: ("no-data-dir", "the data directory /var/lib/postgresql/18/main does not exist on dbnode1"),
    5: ("no-patroni", "Patroni is not installed in /opt/patroni on dbnode1"),
    6: ("haproxy-bind", "nothing in /etc/haproxy/haproxy.cfg on haproxy binds port 5432 (the primary)"),
    7: ("etcd-unreadable", "etcd could not be read to see the cluster's history"),
}


def test_every_step_fails_on_the_bare_lab_for_its_stated_reason(fresh_bare_lab):
    lab = fresh_bare_lab
    proc = lab.cli("track", "check", "--json", check=False)
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["passed"] is False and doc["first_failing"] == 1
    got = {s["step"]: (s["findings"][0]["diagnosis"], s["findings"][0]["problem"]) for s in doc["steps"]}
    for step, (diagnosis, begins) in BARE_REASONS.items():
        assert got[step][0] == diagnosis and got[step][1].startswith(begins), (step, got[step])
    for s in doc["steps"]:
        print(f"step {s['step']} checked in {s['seconds']:.1f}s")
    assert course.load(lab.ctx).passed == {}

    text = lab.cli("track", "check", "1", check=False)
    assert text.returncode == 3
    assert "FAIL  1 Names" in text.stdout and "where: on etcd1: hostnamectl" in text.stdout
    first = json.loads(lab.cli("track", "hint", "--json").stdout)
    second = json.loads(lab.cli("track", "hint", "--json").stdout)
    assert (first["step"], first["hint"]) == (1, 1) and (second["step"], second["hint"]) == (1, 2)
