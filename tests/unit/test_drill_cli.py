"""`pgha-lab drill` refuses bad input with one sentence and exit 1, before touching anything."""
from __future__ import annotations

import yaml

from pgha_lab import cli
from pgha_lab.topology import Topology


def fake_lab(home, project="drilltest", profile="fast"):
    state = home / "labs" / project
    state.mkdir(parents=True)
    (state / "topology.yaml").write_text(yaml.safe_dump(Topology.build(project=project).to_dict()))
    (state / "profile").write_text(profile + "\n")
    return state


def run(home, *args):
    return cli.main(["--home", str(home), "--project", "drilltest", "drill", *args])


def test_an_unknown_scenario_is_refused(tmp_path, capsys):
    fake_lab(tmp_path)
    assert run(tmp_path, "kill-everything") == 1
    err = capsys.readouterr().err
    assert "unknown drill 'kill-everything'; choose one of: switchover, kill-leader" in err
    assert not (tmp_path / "labs" / "drilltest" / "drills").exists()


def test_a_repeat_below_one_is_refused(tmp_path, capsys):
    fake_lab(tmp_path)
    assert run(tmp_path, "switchover", "--repeat", "0") == 1
    assert "--repeat takes a count of 1 or more" in capsys.readouterr().err


def test_a_profile_other_than_the_labs_is_refused(tmp_path, capsys):
    state = fake_lab(tmp_path, profile="fast")
    assert run(tmp_path, "kill-leader", "--profile", "seed") == 1
    err = capsys.readouterr().err
    assert "runs the fast profile, not seed" in err and "pgha-lab up --profile seed" in err
    assert not (state / "drills").exists()
    assert run(tmp_path, "kill-leader", "--profile", "slow") == 1
    assert "unknown timing profile 'slow'" in capsys.readouterr().err


def test_no_lab_is_refused(tmp_path, capsys):
    assert run(tmp_path, "switchover") == 1
    assert "there is no lab 'drilltest' here" in capsys.readouterr().err


def test_an_occupied_output_folder_is_refused(tmp_path, capsys):
    fake_lab(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run(tmp_path, "switchover", "--out", str(out)) == 1
    assert "not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_the_exit_code_follows_the_reports_problems(tmp_path, capsys, monkeypatch):
    # A drill whose findings are clean but that never recovered: report.md and the exit code agree.
    from pgha_lab.drill import launch   # the start sequence the CLI calls
    from test_drill_report import synthetic_result
    fake_lab(tmp_path)
    results = {"recovered": synthetic_result(), "stuck": synthetic_result()}
    results["stuck"].recovered = False
    results["stuck"].recovery_note = "did not recover within 85s; healed anyway"
    for name, code in (("recovered", 0), ("stuck", 3)):
        monkeypatch.setattr(launch, "run_drill", lambda *a, r=results[name], **k: r)
        monkeypatch.setattr(launch, "require_healthy", lambda *a, **k: None)   # no lab here: the report is the point
        out = tmp_path / name
        assert run(tmp_path, "switchover", "--out", str(out)) == code
        verdict = (out / "report.md").read_text().splitlines()[0]
        assert verdict.endswith("no problem found" if code == 0 else "1 problem(s)")
    assert "problem: no recovery before healing" in capsys.readouterr().out


def test_a_repeat_prints_whole_medians_of_whole_figures(tmp_path, capsys, monkeypatch):
    from pgha_lab.drill import launch   # the start sequence the CLI calls
    from test_drill_report import varied_runs
    fake_lab(tmp_path)
    runs = iter(varied_runs())
    monkeypatch.setattr(launch, "run_drill", lambda *a, **k: next(runs))
    monkeypatch.setattr(launch, "require_healthy", lambda *a, **k: None)
    assert run(tmp_path, "switchover", "--repeat", "4", "--out", str(tmp_path / "out")) == 3
    table = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert table["write_downtime_s"] == ["0.65", "0.85", "1.15"]
    assert table["lost_writes"] == ["0", "2", "4"]
    assert table["split_brain_intervals"] == ["0", "0", "0"]
