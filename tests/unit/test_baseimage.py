"""The base-image decision: local ubuntu:24.04, reuse of an earlier bootstrap, pull, debootstrap."""
import pytest

from pgha_lab.imaging.baseimage import BOOTSTRAPPED_REF, UBUNTU_REF, Choice, Facts, Source, decide
from pgha_lab.errors import LabError


def facts(local=False, boot=False, registry=False, deboot=False) -> Facts:
    return Facts(local_ubuntu=local, bootstrapped=boot, registry=registry, can_debootstrap=deboot)


def test_local_ubuntu_wins_over_everything():
    choice = decide(facts(local=True, boot=True, registry=True, deboot=True))
    assert (choice.source, choice.ref) == (Source.LOCAL, UBUNTU_REF)


def test_earlier_bootstrap_is_reused_before_asking_a_registry():
    choice = decide(facts(boot=True, registry=True, deboot=True))
    assert (choice.source, choice.ref) == (Source.BOOTSTRAPPED, BOOTSTRAPPED_REF)


def test_registry_pull_when_nothing_is_local():
    choice = decide(facts(registry=True, deboot=True))
    assert (choice.source, choice.ref) == (Source.PULL, UBUNTU_REF)


@pytest.mark.parametrize("registry", [False, None])
def test_debootstrap_without_a_registry(registry):
    choice = decide(facts(registry=registry, deboot=True))
    assert (choice.source, choice.ref) == (Source.DEBOOTSTRAP, BOOTSTRAPPED_REF)
    assert "debootstrap" in choice.reason


def test_no_way_to_a_base_names_the_fix():
    with pytest.raises(LabError) as err:
        decide(facts())
    message = str(err.value)
    assert "setup-host.sh" in message and "docker load" in message
    assert "\n" not in message


def test_choice_is_plain_data():
    assert isinstance(decide(facts(local=True)), Choice)
