"""doctor's verdict: only required checks decide readiness."""
from pgha_lab.doctor import Check, healthy


def test_optional_failures_are_notes_not_failures():
    checks = [Check("engine", True, "20.10"), Check("registry", False, "no answer", required=False)]
    assert healthy(checks)


def test_a_required_failure_makes_the_host_not_ready():
    assert not healthy([Check("engine", False, "cannot reach the Docker engine"), Check("disk", True, "80 GB")])


def test_checks_serialise_for_json():
    assert Check("disk", True, "80 GB").as_dict() == {"name": "disk", "ok": True, "detail": "80 GB", "required": True}
