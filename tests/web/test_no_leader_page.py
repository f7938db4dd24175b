"""The page on a lab with no leader, and on its first load: the badge names the state ("no leader:
writes are refused"), a powered-off node shows no figures Patroni last recorded for it, no node says
"running" twice, the heading names the lab once, and a page opened before the server's first reading
gets that reading rather than an empty map under "connecting...". Real Chromium, real lab."""
from __future__ import annotations

import json

import pytest
import requests
from playwright.sync_api import expect

from pgha_lab import health
from pgha_lab.chaos.actions import Chaos
from pgha_lab.health import NO_LEADER
from pgha_lab.wait import Verdict, wait_until
from pgha_lab.web.server import Dashboard, Settings
from pgha_lab.web.state import page_title
from tests.labkit import PROJECT, REPO
from tests.web.test_dashboard import node, open_page

pytestmark = [pytest.mark.docker, pytest.mark.lab]


def test_the_first_message_of_a_page_opened_at_once_carries_a_reading(healthy_lab):
    board = Dashboard(REPO, PROJECT, Settings(port=0, interval_s=0.5))
    url = board.start_in_thread()   # the ticker's first reading has not come back yet
    try:
        http = requests.Session()
        http.trust_env = False
        with http.get(url + "api/stream", stream=True, timeout=30) as r:
            first = next(line for line in r.iter_lines(decode_unicode=True) if line.startswith("data:"))
        doc = json.loads(first.removeprefix("data:").strip())
        assert doc["view"] is not None and doc["view"]["up"] is True, doc["view"]
        assert doc["title"] == page_title(PROJECT) == f"pgha-lab: {PROJECT}"
    finally:
        board.stop()


def test_no_leader_is_named_in_the_badge_and_a_dead_node_shows_no_stale_figures(restored_lab, dashboard, page):
    ctx = restored_lab.ctx
    cluster = ctx.cluster()
    old, other = cluster.leader_name, cluster.replicas[0].name
    open_page(page, dashboard)
    expect(page.locator("#title")).to_have_text(page_title(PROJECT))
    for n in ctx.topology.nodes:   # "running" once: the VM's state; the leader's role line says Leader
        expect(node(page, n.name)).not_to_contain_text("running · running")
    expect(node(page, old).locator(".l2")).to_have_text("Leader")

    chaos = Chaos(ctx)
    chaos.run("freeze-patroni", other)   # nobody can take the key: the lab stays without a leader
    chaos.run("kill", old)
    assert wait_until(lambda: Verdict(not health.servers_up(ctx.probe.haproxy()), "5432 still routed"), 60).ok

    badge = page.locator("#health")
    expect(badge).to_contain_text(NO_LEADER, timeout=60_000)
    expect(badge).to_have_attribute("data-writes", "refused")
    expect(node(page, old)).to_have_attribute("data-state", "stopped")
    expect(node(page, old).locator(".l2")).to_have_text("powered off: no Patroni figures")
    expect(node(page, old).locator(".l3")).to_have_text("")
    expect(node(page, old)).not_to_contain_text("lag")
    expect(node(page, old)).to_have_attribute("data-role", "none")
