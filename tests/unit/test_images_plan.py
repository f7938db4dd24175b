"""Build decisions that need no engine: names, the PostgreSQL install choice, contexts, steps."""
import io
import tarfile

import pytest

from pgha_lab import images
from pgha_lab.build_progress import Lines, shorten
from pgha_lab.errors import LabError


def test_image_names_are_the_published_contract():
    assert images.BASE_IMAGE == "pgha-lab/base:noble"
    assert images.IMAGES == {"etcd": "pgha-lab/etcd:latest", "dbnode": "pgha-lab/dbnode:latest",
                             "haproxy": "pgha-lab/haproxy:latest"}


def never():
    raise AssertionError("an explicit choice must not probe")


@pytest.mark.parametrize("method", ["pgdg", "source"])
def test_explicit_pg_install_never_probes(method):
    assert images.choose_pg_install(method, never)[0] == method


@pytest.mark.parametrize("reachable,method", [(True, "pgdg"), (False, "source")])
def test_auto_follows_the_probe_and_says_so(reachable, method):
    chosen, reason = images.choose_pg_install("auto", lambda: reachable)
    assert chosen == method
    assert reason.startswith("auto:")


def test_unknown_pg_install_is_refused():
    with pytest.raises(LabError):
        images.choose_pg_install("brew", never)


def test_context_is_normalised_and_includes_extras(tmp_path):
    folder = tmp_path / "role"
    folder.mkdir()
    (folder / "Dockerfile").write_text("FROM scratch\n")
    (folder / ".hidden").write_text("x")
    wheels = tmp_path / "wh"
    wheels.mkdir()
    (wheels / "a-1-py3-none-any.whl").write_bytes(b"PK")
    first = images.context_tar(folder, {"wheelhouse": wheels}).getvalue()
    (folder / "Dockerfile").touch()   # a new mtime alone must not change the context
    assert images.context_tar(folder, {"wheelhouse": wheels}).getvalue() == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        names = tar.getnames()
        assert all(m.uid == 0 and m.mtime == 0 for m in tar.getmembers())
    assert names == ["Dockerfile", "wheelhouse", "wheelhouse/a-1-py3-none-any.whl"]


def test_progress_lines_without_a_terminal_have_no_colour(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    progress = Lines(stream=out)
    progress.done("etcd", "[4/9] RUN apt-get install etcd-server", 6.1)
    progress.done("etcd", "[5/9] COPY entrypoint", 0.1, cached=True)
    progress.fail("dbnode", "[9/28] RUN build", 3.0, "make: *** Error 2")
    progress.close()
    text = out.getvalue()
    assert "\x1b[" not in text
    assert "6.1s" in text and "cached" in text and "make: *** Error 2" in text


def test_no_color_wins_on_a_terminal(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    progress = Lines(stream=io.StringIO(), tty=False)
    assert progress.color is False


def test_long_step_titles_are_shortened():
    assert len(shorten("RUN " + "x" * 200)) == 64


def test_failed_step_tail_starts_at_the_failing_step():
    log = "Step 1/3 : FROM x\n ---> abc\nStep 2/3 : RUN make\n ---> Running in 1\ncc: error\nThe command returned 2\n"
    assert images.failed_step_tail(log) == "Step 2/3 : RUN make\n ---> Running in 1\ncc: error\nThe command returned 2"
    assert images.failed_step_tail("only\nlines\n", lines=1) == "lines"
