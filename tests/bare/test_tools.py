"""The lab's own tools on a bare lab the playbook built: status and psql work as on the ready lab
(they read the cluster over the network with the lab's CA and client certificate), and a node's stop
and start go through systemd, which starts the units the playbook enabled."""
from __future__ import annotations

import json

import pytest

from pgha_lab.chaos.actions import Chaos
from pgha_lab.wait import wait_until
from tests.lab.test_chaos import chaos

pytestmark = pytest.mark.xdist_group("bare")


@pytest.fixture()
def built(configured_bare_lab):
    """The playbook-built lab before the test, every fault healed and the lab healthy after it."""
    yield configured_bare_lab
    Chaos(configured_bare_lab.ctx).heal_all()
    verdict = wait_until(configured_bare_lab.ctx.health, 300, interval_s=1.0)
    assert verdict.ok, f"the lab did not return to health after the test: {verdict.reason}"


def test_status_shows_each_node_s_service_and_the_cluster(built):
    out = built.cli("status").stdout
    assert "Leader" in out and "Sync Standby" in out and "not configured yet" not in out
    doc = json.loads(built.cli("status", "--json").stdout)
    assert all(n["configured"] and n["active"] == "active" and n["enabled"] == "enabled" for n in doc["nodes"])
    assert sorted(m["name"] for m in doc["members"]) == [n.name for n in built.ctx.topology.db]
    assert all(e["error"] == "" for e in doc["etcd"])


def test_psql_reaches_the_primary_through_haproxy_with_verify_full(built):
    out = built.cli("psql", "--", "-XAtc", "select pg_is_in_recovery(), current_setting('ssl')").stdout
    assert out.strip() == "f|on"
    out = built.cli("psql", "--replica", "--", "-XAtc", "select pg_is_in_recovery()").stdout
    assert out.strip() == "t"


def test_stop_and_start_go_through_systemd_which_starts_the_enabled_units(built):
    lab = built
    replica = next(m.name for m in lab.ctx.cluster().replicas)
    shutdowns = "journalctl --no-pager -q -o cat | grep -c 'Reached target shutdown.target' || true"
    before = int(lab.sh(replica, shutdowns).stdout.strip() or 0)
    since = lab.sh(replica, "date -u '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    out = chaos(lab, "stop", replica)
    assert out["done"] == f"{replica} shut down cleanly: systemd stopped every unit in order"
    back = chaos(lab, "start", replica, "--wait")
    assert back["expected"].startswith(f"systemd boots {replica} and starts the units enabled at boot (patroni.service")
    assert back["happened"] is True, back
    assert int(lab.sh(replica, shutdowns).stdout.strip()) == before + 1
    assert lab.sh(replica, "systemctl is-active patroni").stdout.strip() == "active"
    # Patroni stopped PostgreSQL itself before the node went down: a clean shutdown, no crash recovery.
    log = lab.sh(replica, f"TZ=UTC journalctl -u patroni --no-pager -o cat --since '{since}'").stdout
    assert "database system was shut down in recovery" in log and "was interrupted" not in log, log[-2000:]


def test_a_power_cut_of_the_leader_holds_its_expected_outcome(built):
    """`chaos kill leader --wait` on the playbook's cluster: the sync standby takes the key, HAProxy
    sends writes to it, and the old leader, booted again, rejoins through its enabled patroni.service."""
    lab = built
    old = lab.ctx.cluster().leader_name
    out = chaos(lab, "kill", "leader", "--wait")
    assert out["node"] == old and out["happened"] is True, out
    new = lab.ctx.cluster().leader_name
    assert new not in ("", None, old)
    took = lab.cli("psql", "--", "-XAtc", "select host(inet_server_addr())").stdout.strip()
    assert took == str(lab.ctx.topology.node(new).address)
    back = chaos(lab, "start", old, "--wait")
    assert back["happened"] is True, back
