"""The track's refusals: one sentence, exit 1, nothing written (no progress record), before any node is asked."""
from __future__ import annotations

import json

import yaml

from pgha_lab import cli
from pgha_lab.topology import Topology
from pgha_lab.track import course


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = cli.main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_check_on_a_ready_lab_names_what_grades_it(tmp_path, capsys):
    state = tmp_path / "labs" / "ready1"
    state.mkdir(parents=True)
    (state / "topology.yaml").write_text(yaml.safe_dump(Topology.build(project="ready1").to_dict()))
    rc, out, err = run(capsys, "--home", str(tmp_path), "--project", "ready1", "track", "check")
    assert rc == 1 and out == ""
    assert err.strip().splitlines() == [
        "pgha-lab: lab 'ready1' is a ready lab that pgha-lab configured itself, so there is nothing of yours for the "
        "track to grade; its work is graded with `pgha-lab lesson check`, and the track runs on a bare lab "
        "(`pgha-lab --project NAME up --bare`)."]
    assert not (state / course.PROGRESS_FILE).exists()


def test_an_unknown_step_and_a_lab_never_made(tmp_path, capsys):
    rc, _, err = run(capsys, "--home", str(tmp_path), "--project", "nolab", "track", "check", "8")
    assert rc == 1 and err.startswith("pgha-lab: there is no step '8'; the track's steps are 1 (hosts), 2 (tls)")
    rc, _, err = run(capsys, "--home", str(tmp_path), "--project", "nolab", "track", "show", "etcd3")
    assert rc == 1 and "there is no step 'etcd3'" in err
    rc, _, err = run(capsys, "--home", str(tmp_path), "--project", "nolab", "track", "check")
    assert rc == 1 and err.startswith("pgha-lab: there is no lab 'nolab' yet; `pgha-lab --project nolab up --bare`")
    assert not (tmp_path / "labs" / "nolab" / course.PROGRESS_FILE).exists()


def test_show_names_the_step_by_number_or_tag(capsys):
    rc, out, _ = run(capsys, "track", "show", "etcd")
    assert rc == 0 and out.startswith("Step 3: etcd: a three-member cluster over TLS")
    assert "On etcd1, etcd2, etcd3:" in out


def test_solve_apply_refuses_a_ready_lab_an_unknown_step_and_a_lab_never_made(tmp_path, capsys):
    state = tmp_path / "labs" / "ready1"
    state.mkdir(parents=True)
    (state / "topology.yaml").write_text(yaml.safe_dump(Topology.build(project="ready1").to_dict()))
    rc, out, err = run(capsys, "--home", str(tmp_path), "--project", "ready1", "track", "solve", "3", "--apply")
    assert rc == 1 and out == ""
    assert err.startswith("pgha-lab: lab 'ready1' is a ready lab that pgha-lab configured itself") and \
        "`pgha-lab lesson check`" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run(capsys, "--home", str(tmp_path), "--project", "ready1", "track", "solve", "8", "--apply")
    assert rc == 1 and err.startswith("pgha-lab: there is no step '8'; the track's steps are 1 (hosts)")
    rc, _, err = run(capsys, "--home", str(tmp_path), "--project", "nolab", "track", "solve", "1", "--apply")
    assert rc == 1 and err.startswith("pgha-lab: there is no lab 'nolab' yet; `pgha-lab --project nolab up --bare`")
    assert not (state / course.PROGRESS_FILE).exists() and not (state / "ansible").exists()
    assert not (tmp_path / "labs" / "nolab").exists()


def test_solve_shows_each_steps_tag_and_step_sevens_commands_without_a_lab(tmp_path, capsys):
    from pgha_lab.deploy.run import TAGS
    from pgha_lab.track import catalogue, solve
    # The steps are site.yml's tags in its order; all but `verify` are applied as the playbook's tag.
    assert tuple(s.slug for s in catalogue.STEPS) == TAGS
    assert [solve.tag_of(s) for s in catalogue.STEPS] == [*TAGS[:6], None]
    rc, out, _ = run(capsys, "--home", str(tmp_path), "--project", "b1", "track", "solve", "etcd")
    assert rc == 0 and out.startswith("Reference solution of step 3 (etcd: a three-member cluster over TLS): the "
                                      "exported playbook's `etcd` tag.")
    assert (f"cd {tmp_path}/labs/b1/ansible && ansible-playbook -i inventory/lab.yml site.yml --tags etcd" in out
            and "pgha-lab --project b1 export ansible" in out)
    assert "  etcd: the members, client and peer TLS with client certificates, one cluster\n    - Configuration" in out
    assert "`pgha-lab track solve 3 --apply` runs it" in out
    rc, out, _ = run(capsys, "track", "solve", "7", "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["tag"] is None and doc["plays"] == [] and doc["apply"] == "pgha-lab track solve 7 --apply"
    lines = [a["line"] for a in doc["actions"]]
    assert "sudo patronictl -c /etc/patroni/config.yml switchover --leader LEADER --candidate STANDBY --force" in lines
    assert lines.index("sudo systemctl stop patroni") < lines.index("sudo systemctl start patroni")
    assert not (tmp_path / "labs" / "b1").exists()
