"""A fault is one entry in the catalogue: defined here, in the test, and nowhere else, it is offered by
the chaos CLI's help, the drills, the campaign's fault list and the dashboard, and each of them uses
its expected outcome. No lab: the test fault picks no node, so nothing is read before it runs."""
from __future__ import annotations

import pytest

from pgha_lab import cli
from pgha_lab import lab_settings
from pgha_lab.chaos import catalogue
from pgha_lab.chaos.actions import Chaos, wait
from pgha_lab.chaos.expectations import Expectation
from pgha_lab.chaos.fault import NO_NODE, Act, Button, Campaign, Done, Drill, Fault, MatrixOutcome
from pgha_lab.context import LabContext
from pgha_lab.drill import campaign, matrix, scenarios
from pgha_lab.wait import Verdict
from pgha_lab.web.controls import Controls
from pgha_lab.web.hub import Hub

NAME = "test-only-fault"


@pytest.fixture
def test_fault():
    struck: list[str] = []

    def inject(act: Act) -> Done:
        struck.append(act.fault.name)
        return Done("the test fault struck nothing")

    def expect(act: Act) -> Expectation:
        return Expectation("the test fault's own outcome", lambda: Verdict(True, "the test fault's check passed"), 5)

    fault = Fault(NAME, "a fault only this test defines", inject, expect, takes=NO_NODE, chaos=True,
                  buttons=(Button("test fault", 9, danger=True),),
                  drill=Drill(leader_changes=False, in_matrix=lambda failsafe, replication, p: (
                      MatrixOutcome("strict: the test fault hangs commits", "hang") if replication == "strict"
                      else None)),
                  campaign=Campaign(draw=1000, duration=(0, 0), by_default=False))
    catalogue.register(fault)
    yield struck
    catalogue.unregister(NAME)


def chaos_help(capsys) -> str:
    with pytest.raises(SystemExit):
        cli.build_parser(["chaos", "--help"]).parse_args(["chaos", "--help"])
    return capsys.readouterr().out


def test_a_fault_defined_once_is_offered_by_every_front_end_with_its_expectation(test_fault, tmp_path, capsys):
    ctx = LabContext.open(tmp_path, "plain")

    # The chaos CLI: in its help and its choices, and `chaos.run` injects it with its expectation.
    assert NAME in chaos_help(capsys)
    outcome = wait(Chaos(ctx).run(NAME, None))
    assert outcome.done == "the test fault struck nothing"
    assert outcome.expectation.text == "the test fault's own outcome"
    assert outcome.happened is True and outcome.verdict == "the test fault's check passed"

    # The drills: a scenario of its name whose fault carries the same expectation.
    assert NAME in scenarios.SCENARIOS
    drilled = scenarios.get(NAME).inject(ctx)
    assert drilled.expected == "the test fault's own outcome" and drilled.check is not None and drilled.check().ok
    assert scenarios.get(NAME).leader_changes is False

    # The settings matrix: where the fault says its course differs (strict), its outcome and its check.
    strict = matrix.expected(NAME, matrix.Cell(lab_settings.LabSettings(replication="strict"), "fast"), 2)
    assert strict.text.startswith("strict: the test fault hangs commits; 0 lost;")
    assert strict.judge([{"lost_writes": 0, "hung_writes": 2}])[0] is True
    assert strict.judge([{"lost_writes": 0, "hung_writes": 0}])[0] is False
    plain = matrix.expected(NAME, matrix.Cell(lab_settings.LabSettings(replication="sync"), "fast"), 2)
    assert "test fault" not in plain.text and plain.judge([{"lost_writes": 0, "hung_writes": 0}])[0] is True

    # The campaign: in its fault list (only when named, as by_default=False says), drawn, injected.
    assert NAME in campaign.CATALOGUE
    assert campaign.parse_faults(NAME) == (NAME,)
    assert NAME not in campaign.parse_faults(None)
    steps = campaign.schedule(1, 2, (NAME,))
    assert steps and {s.fault for s in steps} == {NAME}
    target, out, done = campaign._inject(ctx, steps[0])
    assert out is not None and out.expectation.text == "the test fault's own outcome" and done == outcome.done

    # The dashboard: in the catalogue the page is sent (its summary, the button the page draws from it).
    page = Controls(ctx, Hub()).catalogue()
    assert NAME in page["actions"] and page["faults"][NAME]["summary"] == "a fault only this test defines"
    assert [b["label"] for b in page["faults"][NAME]["buttons"]] == ["test fault"]
    assert NAME in page["scenarios"]

    assert test_fault == [NAME] * 3   # injected by chaos, the drill and the campaign: one definition


def test_an_unregistered_fault_is_offered_nowhere(capsys):
    assert NAME not in chaos_help(capsys)
    assert NAME not in scenarios.SCENARIOS and NAME not in campaign.CATALOGUE
    assert NAME not in catalogue.chaos_names()


def test_a_name_is_defined_once():
    kill = catalogue.get("kill")
    with pytest.raises(ValueError, match="fault name 'kill' is already taken"):
        catalogue.register(kill)
    # A campaign keeps its draw positions (a seed's schedule): a new fault takes a free one.
    clash = Fault("another", "x", kill.inject, campaign=Campaign(draw=1, duration=(0, 0)))
    with pytest.raises(ValueError, match="campaign draw 1 is already taken"):
        catalogue.register(clash)


def test_the_campaigns_earlier_spellings_name_the_catalogues_faults():
    assert campaign.parse_faults("partition-leader,freeze-patroni,hang-postgres") == (
        "partition-leader-from-etcd", "freeze-patroni-leader", "hang-postgres-leader")
    # The drill and the campaign say one name for one fault.
    assert set(campaign.CATALOGUE) - {"flap-replica", "kill-etcd"} <= set(scenarios.SCENARIOS)


def test_a_heal_is_the_base_faults():
    assert catalogue.heal_of(catalogue.get("kill-leader")) == ("start", {})
    assert catalogue.heal_of(catalogue.get("partition-leader-from-etcd")) == ("partition", {"clear": True})
    assert catalogue.heal_of(catalogue.get("kill-postgres")) is None
