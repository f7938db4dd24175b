"""The dashboard's pure parts: the event log's diff of two readings, the write probe's downtime
counter, and the guard's decisions on Host, origin and token."""
from __future__ import annotations

from pgha_lab.drill.ledger import Attempt
from pgha_lab.web.server import Guard, allowed_hosts
from pgha_lab.web.state import LabView, NodeView, changes
from pgha_lab.web.writeprobe import summarize


def view(leader: str, replica: str, *, key: str | None = None, timeline: int = 1, leader_status: str = "running",
         primary_up: str | None = None) -> LabView:
    nodes = [NodeView(leader, "dbnode", "10.0.0.10", leader_status, True, patroni_role="leader" if leader_status == "running" else ""),
             NodeView(replica, "dbnode", "10.0.0.20", "running", True, patroni_role="sync_standby")]
    up = primary_up if primary_up is not None else leader
    backends = [{"backend": "primary", "server": n, "status": "UP" if n == up else "DOWN", "check": ""}
                for n in (leader, replica)]
    return LabView(at=0.0, project="p", up=True, nodes=nodes, leader=leader, leader_key=key if key is not None else leader,
                   leader_key_read=True, timeline=timeline, backends=backends)


def test_no_events_between_equal_readings():
    assert changes(view("db1", "db2"), view("db1", "db2")) == []


def test_a_killed_leader_reads_as_state_role_key_and_haproxy_events():
    before = view("db1", "db2")
    after = view("db1", "db2", key="", leader_status="exited", primary_up="")
    kinds = dict((k, t) for k, t in changes(before, after))
    assert kinds["node"] == "db1: running -> stopped"
    assert kinds["role"] == "db1: leader -> gone"
    assert kinds["leader-key"] == "leader key: db1 -> (none)"
    assert kinds["haproxy"] == "HAProxy 5432 (primary): db1 DOWN"


def test_a_promotion_reads_as_role_and_timeline_events():
    before = view("db1", "db2")
    after = view("db2", "db1", timeline=2)
    texts = [t for _, t in changes(before, after)]
    assert "db2: sync standby -> leader" in texts and "db1: leader -> sync standby" in texts
    assert "timeline 1 -> 2" in texts
    assert "HAProxy 5432 (primary): db2 UP" in texts


def attempts(pattern: str) -> list[Attempt]:
    """'a' acknowledged by db1, 'b' by db2, 'x' failed; one attempt a second."""
    server = {"a": "db1", "b": "db2"}
    return [Attempt(i, float(i), i + 0.1, c != "x", server.get(c, "")) for i, c in enumerate(pattern)]


def test_the_running_downtime_counts_from_the_last_acknowledged_write():
    st = summarize(attempts("aaxxx"), now_s=10.0)
    assert st.downtime_s == 8.9 and st.last_outage_s is None and st.last_server == "db1"


def test_an_ended_outage_runs_from_the_last_ack_before_to_the_first_ack_after():
    st = summarize(attempts("aaxxxbb"), now_s=10.0)
    assert st.downtime_s is None and st.last_outage_s == 4.0 and st.last_server == "db2"
    assert (st.acks, st.failures) == (4, 3)


def test_the_probe_the_drills_and_the_switchover_command_measure_one_interval():
    """The same attempts give the same downtime to the page's probe, to a drill's report and to
    `pgha-lab switchover` (drill/outage.py): last acknowledged write before, first after."""
    from pgha_lab.drill.outage import Outage
    from pgha_lab.drill.reconcile import longest_gap
    ledger = attempts("aaaxxxxbbb")
    drill = longest_gap(ledger, ending_after_s=2.5)
    assert (drill.start_s, drill.end_s) == (2.1, 7.1)
    assert summarize(ledger, now_s=20.0).last_outage_s == round(drill.seconds, 2) == 5.0
    cli = Outage(drill, ledger, 1.0, wall0=0.0)
    assert cli.seconds == drill.seconds
    assert cli.text("switchover").startswith("write downtime 5.00 s, from the last write acknowledged before the "
                                             "switchover to the first acknowledged after it: db1 at 00:00:02.100, "
                                             "then db2 at 00:00:07.100 UTC")


def guard() -> Guard:
    return Guard(app=None, hosts=allowed_hosts("127.0.0.1", 8088), token="secret")


def test_guard_lets_reads_from_allowed_hosts_through_without_token():
    for host in ("127.0.0.1:8088", "localhost:8088"):
        assert guard().refusal("GET", {"host": host}) == ""


def test_guard_refuses_foreign_hosts_even_for_reads():
    for host in ("attacker.example:8088", "127.0.0.1:9999", "127.0.0.1", ""):
        assert guard().refusal("GET", {"host": host}).startswith("refused")


def test_guard_needs_the_token_and_the_same_origin_to_change_anything():
    ok = {"host": "127.0.0.1:8088", "x-pgha-token": "secret"}
    assert guard().refusal("POST", ok) == ""
    assert guard().refusal("POST", {**ok, "origin": "http://127.0.0.1:8088", "sec-fetch-site": "same-origin"}) == ""
    assert "token" in guard().refusal("POST", {"host": "127.0.0.1:8088"})
    assert "token" in guard().refusal("POST", {**ok, "x-pgha-token": "secreT"})
    assert "origin" in guard().refusal("POST", {**ok, "origin": "http://attacker.example"})
    assert "cross-site" in guard().refusal("POST", {**ok, "sec-fetch-site": "cross-site"})


def test_drill_reports_list_single_and_repeated_runs_and_serve_only_their_files(tmp_path):
    import json

    import pytest

    from pgha_lab.context import LabContext
    from pgha_lab.errors import LabError
    from pgha_lab.web.controls import Controls
    from pgha_lab.web.hub import Hub
    controls = Controls(LabContext.open(tmp_path, "x"), Hub())
    single = controls.drills_dir() / "20260101T000000Z-kill-leader"
    single.mkdir(parents=True)
    (single / "report.json").write_text(json.dumps({"scenario": "kill-leader", "figures": {"write_downtime_s": 12.3},
                                                    "problems": []}))
    (single / "report.md").write_text("# report")
    (single / "timeline.png").write_bytes(b"png")
    repeated = controls.drills_dir() / "20260102T000000Z-switchover"
    (repeated / "run-01").mkdir(parents=True)
    (repeated / "summary.json").write_text(json.dumps({"scenario": "switchover", "problems": {"r1": ["slow"]},
                                                       "summary": {"write_downtime_s": {"median": 2.0}}}))
    (repeated / "summary.md").write_text("# summary")
    (repeated / "run-01" / "timeline.png").write_bytes(b"png")

    newest, oldest = controls.drill_reports()
    assert (newest["scenario"], newest["figures"]["write_downtime_s"], newest["problems"]) == ("switchover", 2.0, ["r1: slow"])
    assert newest["timeline"] == "/drills/20260102T000000Z-switchover/run-01/timeline.png"
    assert (oldest["report"], oldest["figures"]["write_downtime_s"]) == ("/drills/20260101T000000Z-kill-leader/report.md", 12.3)
    assert controls.report_file("20260101T000000Z-kill-leader/report.md") == (single / "report.md").resolve()
    for outside in ("../../../etc/passwd", "/etc/passwd", "20260101T000000Z-kill-leader/missing.md",
                    "../x/labs/x/secrets.env"):
        with pytest.raises(LabError):
            controls.report_file(outside)


def test_the_heading_names_the_lab_once():
    from pgha_lab.web.state import page_title
    assert page_title("pgha-lab") == "pgha-lab"          # the default lab: not "pgha-lab pgha-lab"
    assert page_title("mylab") == "pgha-lab: mylab"
