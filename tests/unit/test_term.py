"""Terminal output: one colour decision, patronictl-shaped tables, plain progress lines off a terminal."""
import io
import re

import pytest

from pgha_lab.imaging.progress import Lines
from pgha_lab.probes import Backend, EtcdEndpoint, Member
from pgha_lab.term.console import console_for, has_colour
from pgha_lab.term.progress import Progress
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


def test_nothing_wraps_off_a_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    out = io.StringIO()
    Progress(stream=out).info("x" * 300)
    assert len(out.getvalue().splitlines()) == 1


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


# -- term progress ------------------------------------------------------------------------------
def test_progress_off_a_terminal_prints_one_plain_line_per_step(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    progress = Progress(stream=out)
    with progress.step("Starting 3 nodes"):
        progress.detail("waiting for etcd")   # a terminal-only note
    with pytest.raises(RuntimeError):
        with progress.step("Waiting for a leader"):
            raise RuntimeError("no leader")
    progress.info("node images match this checkout")
    text = out.getvalue()
    assert not ANSI.search(text)
    lines = text.splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r" ✓ Starting 3 nodes \(\d+\.\ds\)", lines[0])
    assert re.fullmatch(r" ✗ Waiting for a leader \(\d+\.\ds\)", lines[1])
    assert lines[2] == " • node images match this checkout"


def test_quiet_progress_prints_nothing():
    out = io.StringIO()
    progress = Progress(stream=out, quiet=True)
    with progress.step("Healing every fault"):
        progress.info("healed")
    assert out.getvalue() == ""


def test_progress_on_a_terminal_with_no_color_has_no_colour(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    out = FakeTerminal()
    with Progress(stream=out).step("Starting 3 nodes"):
        pass
    assert "Starting 3 nodes" in out.getvalue()
    assert not COLOUR.search(out.getvalue())


def test_progress_on_a_terminal_marks_the_step_in_colour(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = FakeTerminal()
    with Progress(stream=out).step("Starting 3 nodes"):
        pass
    assert COLOUR.search(out.getvalue())


# -- build progress -----------------------------------------------------------------------------
def test_build_lines_off_a_terminal_are_one_plain_line_each(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    progress = Lines(stream=out)
    assert progress.tty is False and progress.color is False
    progress.info("PostgreSQL 18: pgdg")
    progress.start("etcd", "[4/9] RUN apt-get install etcd-server")
    progress.done("etcd", "[4/9] RUN apt-get install etcd-server", 6.1)
    progress.fail("dbnode", "[9/28] RUN build", 61.0, "cc: error\nmake: *** Error 2")
    progress.close()
    assert out.getvalue().splitlines() == [
        "• PostgreSQL 18: pgdg",
        "✓ etcd     [4/9] RUN apt-get install etcd-server  6.1s",
        "✗ dbnode   [9/28] RUN build  failed after 1m01s",
        "    cc: error",
        "    make: *** Error 2",
    ]


# -- doctor shares the decision -----------------------------------------------------------------
@pytest.fixture
def doctor_checks(monkeypatch):
    from pgha_lab.doctor import Check
    monkeypatch.setattr("pgha_lab.doctor.run", lambda paths, registry_timeout: [
        Check("engine", True, "27.0"), Check("registry", False, "no answer", required=False)])


@pytest.mark.parametrize("stream,no_color,coloured", [
    (io.StringIO, None, False), (FakeTerminal, "1", False), (FakeTerminal, None, True)])
def test_doctor_colours_only_where_the_console_allows(tmp_path, monkeypatch, doctor_checks,
                                                      stream, no_color, coloured):
    from pgha_lab import cli
    if no_color:
        monkeypatch.setenv("NO_COLOR", no_color)
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    out = stream()
    monkeypatch.setattr("sys.stdout", out)
    assert cli.main(["--home", str(tmp_path), "doctor"]) == 0
    assert bool(COLOUR.search(out.getvalue())) is coloured
    assert COLOUR.sub("", out.getvalue()).splitlines() == ["ok    engine    27.0", "note  registry  no answer", "ready"]
