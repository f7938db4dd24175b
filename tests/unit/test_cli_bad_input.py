"""Bad input on the command line: one sentence and exit 1, nothing written, no traceback; and the
command line itself, which lists every command without importing any command module."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pgha_lab import cli
from pgha_lab.commands import COMMANDS

REPO = Path(__file__).resolve().parents[2]


def run(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(home), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize("args, sentence", [
    (("up", "--db-nodes", "0"), "db nodes must be between 2 and 9, not 0."),
    (("up", "--etcd-nodes", "0"), "etcd members must be 1, 3 or 5 (an odd count keeps a clear majority), not 0."),
    (("up", "--haproxy-nodes", "0"), "HAProxy nodes must be 1 or 2"),
    (("--project", "../../x", "up"), "project name '../../x' must be lowercase letters, digits and dashes."),
    (("--project", "a/b", "up"), "project name 'a/b' must be lowercase letters, digits and dashes."),
    (("--project", "../../x", "status"), "project name '../../x' must be lowercase letters, digits and dashes."),
    (("--project", "a/b", "lesson", "reset"), "project name 'a/b' must be lowercase letters, digits and dashes."),
])
def test_a_bad_count_or_project_is_one_sentence_and_changes_nothing(tmp_path, args, sentence):
    home = tmp_path / "home"
    home.mkdir()
    proc = run(home, "--project", "badinput", *args) if args[0] != "--project" else run(home, *args)
    assert proc.returncode == 1, proc
    assert proc.stderr.startswith("pgha-lab: " + sentence) and proc.stderr.count("\n") == 1, proc.stderr
    assert list(home.iterdir()) == [], "nothing is written for a refused command"
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


def test_help_lists_every_command_without_importing_a_command_module():
    probe = ("import sys; from pgha_lab import cli\n"
             "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith('pgha_lab.commands.')))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    listed, imported = proc.stdout.rsplit("\n", 2)[0], proc.stdout.strip().splitlines()[-1]
    assert imported == "[]", imported
    for name, (_, text) in COMMANDS.items():
        assert name in listed and text.split()[0] in listed, name


def test_a_command_imports_its_own_module_only():
    probe = ("import sys; from pgha_lab import cli\n"
             "try:\n    cli.main(['status', '--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith('pgha_lab.commands.') or m.startswith('pgha_lab.drill')))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "['pgha_lab.commands._common', 'pgha_lab.commands.status']"


def test_every_listed_command_is_registered_by_its_module_with_the_listed_help():
    parser = cli.build_parser()   # every module
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, (module, text) in COMMANDS.items():
        assert helps[name] == text, name
        # A placeholder (the listing of a command whose module is not imported) has no -h of its own.
        assert sub.choices[name].add_help, f"{module} does not register {name}"
        chosen = cli.build_parser(["--project", "p", name])
        chosen_sub = next(a for a in chosen._actions if a.dest == "command")
        assert chosen_sub.choices[name].add_help, f"{name}: its module was not imported to parse it"


def test_the_chosen_command_is_found_past_global_options():
    assert cli.chosen_command(["--home", "status", "--project", "up", "lesson", "check"]) == "lesson"
    assert cli.chosen_command(["--home=/x", "up"]) == "up"
    assert cli.chosen_command(["--version"]) is None
