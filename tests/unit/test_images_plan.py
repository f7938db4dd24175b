"""Build decisions that need no engine: names, the PostgreSQL install choice, contexts, steps."""
import io
import os
import tarfile

import pytest

from pgha_lab import gateway
from pgha_lab.imaging import images, pg_install, recipes, steps
from pgha_lab.imaging.progress import Lines, shorten
from pgha_lab.errors import LabError
from pgha_lab.gateway import ImageInfo
from pgha_lab.paths import LabPaths


def test_image_names_are_the_published_contract():
    assert gateway.image_refs("") == ("pgha-lab/base:noble", {
        "etcd": "pgha-lab/etcd:latest", "dbnode": "pgha-lab/dbnode:latest", "haproxy": "pgha-lab/haproxy:latest"})


def test_a_developer_tag_gives_every_image_its_own_name():
    base, nodes = gateway.image_refs("bare")
    assert base == "pgha-lab/base:noble-bare"
    assert nodes == {"etcd": "pgha-lab/etcd:bare", "dbnode": "pgha-lab/dbnode:bare", "haproxy": "pgha-lab/haproxy:bare"}


def never():
    raise AssertionError("an explicit choice must not probe")


@pytest.mark.parametrize("method", ["pgdg", "source"])
def test_explicit_pg_install_never_probes(method):
    assert pg_install.choose_pg_install(method, never)[0] == method


@pytest.mark.parametrize("reachable,method", [(True, "pgdg"), (False, "source")])
def test_auto_follows_the_probe_and_says_so(reachable, method):
    chosen, reason = pg_install.choose_pg_install("auto", lambda: reachable)
    assert chosen == method
    assert reason.startswith("auto:")


def test_unknown_pg_install_is_refused():
    with pytest.raises(LabError):
        pg_install.choose_pg_install("brew", never)


def test_context_is_normalised_and_includes_extras(tmp_path):
    folder = tmp_path / "role"
    folder.mkdir()
    (folder / "Dockerfile").write_text("FROM scratch\n")
    (folder / ".hidden").write_text("x")
    wheels = tmp_path / "wh"
    wheels.mkdir()
    (wheels / "a-1-py3-none-any.whl").write_bytes(b"PK")
    first = recipes.context_tar(folder, {"wheelhouse": wheels}).getvalue()
    (folder / "Dockerfile").touch()   # a new mtime alone must not change the context
    assert recipes.context_tar(folder, {"wheelhouse": wheels}).getvalue() == first
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
    progress = Lines(stream=io.StringIO(), tty=True)
    try:
        assert progress.color is False
    finally:
        progress.close()


def test_long_step_titles_are_shortened():
    assert len(shorten("RUN " + "x" * 200)) == 64


def test_failed_step_tail_starts_at_the_failing_step():
    log = "Step 1/3 : FROM x\n ---> abc\nStep 2/3 : RUN make\n ---> Running in 1\ncc: error\nThe command returned 2\n"
    assert steps.failed_step_tail(log) == "Step 2/3 : RUN make\n ---> Running in 1\ncc: error\nThe command returned 2"
    assert steps.failed_step_tail("only\nlines\n", lines=1) == "lines"


def recipe_tree(home):
    for role in ("base", *recipes.ROLES):
        folder = home / "images" / role
        folder.mkdir(parents=True)
        (folder / "Dockerfile").write_text(f"FROM scratch\n# {role}\n")
    return LabPaths(home=home)


class Engine:
    """Just enough of the gateway's image lookup for the label comparison."""
    def __init__(self, labels_by_ref):
        self.labels_by_ref = labels_by_ref

    def image(self, ref):
        if ref not in self.labels_by_ref:
            return None
        return ImageInfo(ref, ref, 0, "", self.labels_by_ref[ref])


def built_from(paths):
    refs = {"base": gateway.BASE_IMAGE, **gateway.IMAGES}
    return {ref: {f"{gateway.IMAGE_LABEL}.recipe": recipes.recipe_digest(paths, role)} for role, ref in refs.items()}


def test_recipe_digest_follows_content_not_file_times(tmp_path):
    paths = recipe_tree(tmp_path)
    before = recipes.recipe_digest(paths, "etcd")
    dockerfile = tmp_path / "images" / "etcd" / "Dockerfile"
    os.utime(dockerfile, (1, 1))
    assert recipes.recipe_digest(paths, "etcd") == before
    dockerfile.write_text("FROM scratch\n# changed\n")
    assert recipes.recipe_digest(paths, "etcd") != before


def test_images_built_from_this_checkout_are_current(tmp_path):
    paths = recipe_tree(tmp_path)
    assert recipes.outdated(Engine(built_from(paths)), paths) == []


def test_a_missing_image_or_a_changed_recipe_is_outdated(tmp_path):
    paths = recipe_tree(tmp_path)
    labels = built_from(paths)
    del labels[gateway.IMAGES["haproxy"]]
    (tmp_path / "images" / "etcd" / "ectl").write_text("#!/bin/sh\n")
    assert recipes.outdated(Engine(labels), paths) == ["etcd", "haproxy"]


def test_an_image_without_a_recipe_label_is_outdated(tmp_path):
    paths = recipe_tree(tmp_path)
    labels = built_from(paths)
    labels[gateway.BASE_IMAGE] = {}
    assert recipes.outdated(Engine(labels), paths) == ["base"]


def test_only_images_of_other_recipes_are_superseded(tmp_path):
    paths = recipe_tree(tmp_path)
    label = f"{gateway.IMAGE_LABEL}"

    def image(role, recipe):
        labels = {f"{label}.role": role, **({f"{label}.recipe": recipe} if recipe else {})}
        return type("Image", (), {"id": f"{role}-{recipe}", "labels": labels})()

    current_stage = image("base", recipes.recipe_digest(paths, "base"))   # a build stage: the cache
    old_dbnode = image("dbnode", "0" * 16)
    unlabelled_etcd = image("etcd", None)
    found = recipes.superseded([current_stage, old_dbnode, unlabelled_etcd], paths)
    assert found == [old_dbnode, unlabelled_etcd]


def test_a_tarball_url_with_the_apt_repository_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(LabError, match="--pg-source-url is for --pg-install source"):
        images.build(LabPaths(home=tmp_path), pg_install="pgdg", pg_source_url="http://example.invalid/pg.tar.bz2")
