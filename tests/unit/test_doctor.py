"""doctor's verdict: only required checks decide readiness."""
from pgha_lab.doctor import Check, healthy


def test_optional_failures_are_notes_not_failures():
    checks = [Check("engine", True, "20.10"), Check("registry", False, "no answer", required=False)]
    assert healthy(checks)


def test_a_required_failure_makes_the_host_not_ready():
    assert not healthy([Check("engine", False, "cannot reach the Docker engine"), Check("disk", True, "80 GB")])


def test_checks_serialise_for_json():
    assert Check("disk", True, "80 GB").as_dict() == {"name": "disk", "ok": True, "detail": "80 GB", "required": True}


def test_inotify_below_what_several_bare_labs_need_is_a_note_that_says_how_to_raise_it():
    from pgha_lab.doctor import inotify_check
    low = inotify_check(128)
    assert not low.ok and not low.required
    assert "fs.inotify.max_user_instances=128" in low.detail and "sysctl -w fs.inotify.max_user_instances=1024" in low.detail
    assert inotify_check(1024).ok and inotify_check(8192).ok
    assert inotify_check(None).ok   # not Linux: nothing to say
