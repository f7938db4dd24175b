"""Terminal output: one colour decision, patronictl-shaped tables."""
import io
import re

import pytest

from pgha_lab.probes import Backend, EtcdEndpoint, Member
from pgha_lab.term.console import console_for, has_colour
from pgha_lab.term.tables import MEMBER_COLUMNS, etcd_table, haproxy_table, members_table, table

ANSI = re.compile(r"\x1b\[")
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def members():
    return [Member("dbnode1", "192.168.56.10", "leader", "running", 1, tags={"failover_priority": 1}),
            Member("dbnode2", "192.168.56.20", "replica", "streaming", 1, "0/3000060", 0, "0/3000060", 0)]


# -- the colour decision ------------------------------------------------------------------------
def test_a_terminal_gets_colour(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    console = console_for(FakeTerminal())
    assert console.is_terminal and has_colour(console)


def test_no_color_turns_colour_off_on_a_terminal(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    console = console_for(FakeTerminal())
    assert console.is_terminal and not has_colour(console)


@pytest.mark.parametrize("forced", ["FORCE_COLOR", "TTY_COMPATIBLE"])
def test_a_pipe_has_no_terminal_and_no_colour_whatever_rich_is_told(monkeypatch, forced):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv(forced, "1")
    console = console_for(io.StringIO())
    assert not console.is_terminal and not has_colour(console)


# -- tables -------------------------------------------------------------------------------------
def test_members_table_has_patronictls_columns_and_ascii_borders():
    lines = members_table(members(), "18/main").splitlines()
    assert lines[0].startswith("+ Cluster: 18/main -") and lines[0].endswith("+")
    assert [c.strip() for c in lines[1].split("|")[1:-1]] == MEMBER_COLUMNS
    assert set(lines[2]) == {"+", "-"} and set(lines[-1]) == {"+", "-"}
    assert lines[2] == lines[-1]
    # The title overlays the top border, whose junctions stay where the columns meet.
    assert lines[0][len(" Cluster: 18/main ") + 1:] == lines[2][len(" Cluster: 18/main ") + 1:]
    assert all(len(line) == len(lines[0]) for line in lines)
    assert len(lines) == 2 + 1 + 2 + 1   # title, header, rule, two members, bottom: no rule between rows


def test_tables_are_plain_text_even_on_a_coloured_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    text = "\n".join([members_table(members(), "s"),
                      etcd_table([EtcdEndpoint(name="etcd1", endpoint="https://etcd1:2379", id="8e9e05c52164694d",
                                               version="3.4.34", db_size=20480, is_leader=True, raft_term=2)]),
                      haproxy_table([Backend("primary", "dbnode1", "UP", "L7OK", "200", since_change_s=12)])])
    assert not ANSI.search(text)


def test_cells_are_text_not_markup():
    text = table(["Step"], [["[4/9] RUN [bold]x[/bold] :smile:"]])
    assert "[4/9] RUN [bold]x[/bold] :smile:" in text


def test_a_title_wider_than_its_columns_is_kept_whole():
    lines = table(["A"], [["1"]], title="a title much wider than the one column").splitlines()
    assert lines[0] == "+ a title much wider than the one column -+"
    assert all(len(line) == len(lines[0]) for line in lines)
