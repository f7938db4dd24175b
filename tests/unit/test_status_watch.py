"""`pgha-lab status --watch`: redrawn in place on a terminal, one snapshot per interval elsewhere."""
import io
import json
import re

import pytest

from pgha_lab import cli
from pgha_lab.commands import status
from pgha_lab.gateway import ContainerState
from pgha_lab.probes import Backend, Cluster, EtcdEndpoint, Member
from pgha_lab.reading import Reading
from pgha_lab.wait import Verdict


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Interrupted(Exception):
    """Stands in for the Ctrl-C that ends a watch."""


@pytest.fixture
def lab(monkeypatch):
    """A running lab that answers every probe; `naps` records each refresh interval slept."""
    naps = []
    members = [Member("dbnode1", "192.168.56.10", "leader", "running", 1)]
    monkeypatch.setattr(status, "snapshot", lambda ctx: Reading(
        containers={"dbnode1": ContainerState("running", True)}, cluster=Cluster.of(members), answered=["dbnode1"],
        members=members, writes=Verdict(True, "dbnode1 leads and takes writes through HAProxy's 5432"),
        etcd=[EtcdEndpoint(name="etcd1", endpoint="https://etcd1:2379", is_leader=True)],
        haproxy=[Backend("primary", "dbnode1", "UP")], live_settings=None))

    def nap(seconds):
        naps.append(seconds)
        if len(naps) == 2:
            raise Interrupted
    monkeypatch.setattr(status.time, "sleep", nap)
    monkeypatch.setattr(status, "settings_line", lambda ctx, live: ("", {}))
    return naps


def run(tmp_path, *args):
    return cli.main(["--home", str(tmp_path), "status", *args])


def test_watch_zero_is_refused(tmp_path, lab, capsys):
    assert run(tmp_path, "--watch", "0") == 1
    assert "above 0" in capsys.readouterr().err


def test_watch_off_a_terminal_prints_a_plain_snapshot_per_interval(tmp_path, lab, capsys):
    with pytest.raises(Interrupted):
        run(tmp_path, "--watch", "1.5")
    out = capsys.readouterr().out
    assert lab == [1.5, 1.5]
    assert out.count("+ Cluster: ") == 2
    assert "\x1b[" not in out


def test_watch_json_stays_json(tmp_path, lab, monkeypatch):
    out = FakeTerminal()
    monkeypatch.setattr("sys.stdout", out)
    with pytest.raises(Interrupted):
        run(tmp_path, "--watch", "--json")
    first = out.getvalue().split("\n}\n")[0] + "\n}"
    assert json.loads(first)["members"][0]["name"] == "dbnode1"


def test_watch_on_a_terminal_redraws_in_place(tmp_path, lab, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    out = FakeTerminal()
    monkeypatch.setattr("sys.stdout", out)
    with pytest.raises(Interrupted):
        run(tmp_path, "--watch")
    text = out.getvalue()
    assert lab == [2.0, 2.0]
    assert "+ Cluster: " in text and "etcd1" in text and "primary" in text
    assert not re.search(r"\x1b\[[0-9;]*m", text)   # NO_COLOR
    assert "\x1b[2K" in text             # the previous snapshot is erased, not scrolled away
    assert "\x1b[H\x1b[J" not in text    # and the screen is not cleared
