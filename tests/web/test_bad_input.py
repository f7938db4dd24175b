"""Bad input to `pgha-lab dashboard`: a lab that is down gets a page saying so and how to start it,
a port in use gets one sentence and a non-zero exit."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import yaml
from playwright.sync_api import expect

from pgha_lab.paths import LabPaths
from pgha_lab.topology import Topology
from pgha_lab.web.server import Dashboard, Settings


@pytest.fixture()
def board_for(tmp_path):
    boards = []

    def start(project: str) -> Dashboard:
        board = Dashboard(tmp_path, project, Settings(port=0))
        board.start_in_thread()
        boards.append(board)
        return board
    yield start
    for board in boards:
        board.stop()


def test_a_lab_never_created_gets_a_page_saying_how_to_start_it(board_for, page):
    board = board_for("nolab")
    page.goto(board.settings.url)
    banner = page.locator("#banner")
    expect(banner).to_be_visible(timeout=30_000)
    expect(banner).to_contain_text("there is no lab 'nolab' here yet; start it with pgha-lab --project nolab up")
    expect(page.locator("#health")).to_have_text("lab down")


@pytest.mark.docker
def test_a_lab_whose_nodes_are_not_running_gets_a_page_saying_how_to_start_it(tmp_path, board_for, page, docker_client):
    paths = LabPaths(home=tmp_path, project="stopped-lab")   # a topology on disk, no container behind it
    paths.state.mkdir(parents=True)
    paths.topology_file.write_text(yaml.safe_dump(Topology.build(project="stopped-lab", subnet="10.99.0.0/24").to_dict()))
    board = board_for("stopped-lab")
    page.goto(board.settings.url)
    expect(page.locator("#banner")).to_contain_text("lab 'stopped-lab' is not running (no node container runs); "
                                                    "start it with pgha-lab --project stopped-lab up", timeout=30_000)
    for name in ("etcd1", "dbnode1", "haproxy"):
        expect(page.locator(f"#map g.node[data-node='{name}']")).to_have_attribute("data-state", "missing")


def test_a_port_in_use_is_one_sentence(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(tmp_path), "--project", "x",
                               "dashboard", "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"pgha-lab: port {port} on 127.0.0.1 is already in use; choose another with --port."
    assert "Traceback" not in proc.stderr and proc.stdout == ""
