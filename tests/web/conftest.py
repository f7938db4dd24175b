"""The dashboard under test: served in-process on a free port against the suite's lab, and a real
headless Chromium (Debian's package) driven by Playwright."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pgha_lab.chaos.actions import Chaos
from pgha_lab.wait import wait_until
from pgha_lab.web.server import Dashboard, Settings
from tests.labkit import PROJECT, REPO

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"
EXPECT_TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def dashboard(test_lab):
    test_lab.ensure_healthy()   # the dashboard reads the lab's saved topology when it starts, so the lab comes first
    board = Dashboard(REPO, PROJECT, Settings(port=0, interval_s=0.5))
    board.start_in_thread()
    yield board
    board.stop()


@pytest.fixture(scope="session")
def browser():
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"the browser tests need Debian's chromium at {CHROMIUM}; `bash scripts/test.sh` installs it.",
                    pytrace=False)
    from playwright.sync_api import expect, sync_playwright
    # Playwright's 5 s default assumes an idle machine; the page redraws from a reading every 0.5 s
    # taken on a host the other workers' labs share, where one reading of the lab can take seconds.
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture()
def restored_lab(healthy_lab):
    """A healthy lab, and after the test every fault healed and the lab healthy again."""
    yield healthy_lab
    ctx = healthy_lab.ctx
    Chaos(ctx).heal_all()
    verdict = wait_until(ctx.health, 300)
    assert verdict.ok, f"the lab did not return to health after the test: {verdict.reason}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
