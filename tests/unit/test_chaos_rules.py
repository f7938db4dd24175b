"""Patroni's failover rules as pure functions of a cluster state: synthetic states in, plans out."""
from __future__ import annotations

import pytest

from pgha_lab import profiles
from pgha_lab.chaos import cluster_state, rules
from pgha_lab.chaos.actions import parse_rate, slow_rate
from pgha_lab.chaos.cluster_state import ClusterState, impairments
from pgha_lab.chaos.nodes import Inside
from pgha_lab.errors import LabError
from pgha_lab.gateway import ContainerState
from pgha_lab.probes import Cluster, Member

FAST = profiles.get("fast")


def member(name: str, role: str, state: str, timeline: int | None = None, lag: int | None = None, **tags) -> Member:
    """A member as the rules read it (tags: nofailover, failover_priority)."""
    return Member(name, "", role, state, timeline, lag=lag, tags=tags)


def two_nodes(*, sync: tuple[str, ...] = ("dbnode2",), replica_state: str = "streaming", lag: int | None = 0,
              leader: str | None = "dbnode1", down: frozenset[str] = frozenset(), **settings) -> ClusterState:
    members = (member("dbnode1", "leader" if leader == "dbnode1" else "replica", "running" if "dbnode1" not in down else "stopped", 3),
               member("dbnode2", "sync_standby" if "dbnode2" in sync else "replica", replica_state, 3, lag,
                           nofailover=settings.pop("nofailover", False),
                           failover_priority=settings.pop("failover_priority", None)))
    return ClusterState(members=members, leader=leader, sync_key=True, sync_leader="dbnode1", sync_standbys=sync,
                        synchronous_mode=settings.pop("synchronous_mode", True), timeline=3, down=down, **settings)


def test_the_sync_standby_takes_over_when_the_leader_dies():
    plan = rules.leader_lost(two_nodes(), "dbnode1", FAST)
    assert plan.kind == rules.NEW_LEADER and plan.candidates == ("dbnode2",)
    assert "synchronous standby in /sync" in plan.text


def test_issue_case_1_replica_restarted_not_yet_sync_when_the_leader_dies():
    # dbnode2 had been restarted 2 s earlier: it streams again but /sync does not name it yet.
    st = two_nodes(sync=())
    plan = rules.leader_lost(st, "dbnode1", FAST, how="lost power")
    assert plan.kind == rules.NO_LEADER
    assert plan.text.startswith("No failover")
    assert "dbnode2 is not the synchronous standby in /sync (sync_standby: none)" in plan.text
    assert "protects acknowledged writes" in plan.text
    assert plan.hold_s >= FAST.ttl


def test_issue_case_2_the_old_leader_returns_when_nobody_could_take_the_key():
    # After case 1: nobody leads, /sync still names dbnode1 as leader and no sync standby.
    st = two_nodes(sync=(), leader=None, down=frozenset())
    plan = rules.node_returns(st, "dbnode1", FAST)
    assert plan.kind == rules.TAKES_KEY and plan.node == "dbnode1"
    assert "last primary named in /sync" in plan.text


def test_a_returning_old_leader_steps_down_when_another_leads():
    st = two_nodes(leader=None)
    st = ClusterState(members=st.members, leader="dbnode2", sync_key=True, sync_leader="dbnode2",
                      sync_standbys=(), synchronous_mode=True, timeline=4)
    plan = rules.node_returns(st, "dbnode1", FAST)
    assert plan.kind == rules.STREAMS and "held by dbnode2" in plan.text


def test_a_member_not_in_sync_cannot_take_a_free_key_back():
    st = two_nodes(sync=(), leader=None)
    st = ClusterState(members=st.members, leader=None, sync_key=True, sync_leader="dbnode1", sync_standbys=(),
                      synchronous_mode=True, timeline=3)
    assert rules.node_returns(st, "dbnode2", FAST).kind == rules.NO_LEADER


def test_tags_lag_state_and_timeline_each_block_a_failover():
    cases = {
        "tagged nofailover": two_nodes(nofailover=True),
        "failover_priority 0": two_nodes(failover_priority=0),
        "over maximum_lag_on_failover": two_nodes(lag=50_000_000),
        "is starting": two_nodes(replica_state="starting"),
        "is down": two_nodes(down=frozenset({"dbnode2"})),
    }
    for why, st in cases.items():
        plan = rules.leader_lost(st, "dbnode1", FAST)
        assert plan.kind == rules.NO_LEADER, why
        assert why in plan.text, (why, plan.text)
    behind = two_nodes()
    behind = ClusterState(members=(behind.members[0], member("dbnode2", "sync_standby", "streaming", 2, 0)),
                          leader="dbnode1", sync_key=True, sync_leader="dbnode1", sync_standbys=("dbnode2",),
                          synchronous_mode=True, timeline=3)
    assert "behind the cluster's 3" in rules.leader_lost(behind, "dbnode1", FAST).text


def test_asynchronous_mode_lets_any_healthy_replica_take_over():
    st = two_nodes(sync=(), synchronous_mode=False)
    assert rules.leader_lost(st, "dbnode1", FAST).kind == rules.NEW_LEADER


def test_losing_the_sync_standby_strict_and_not_strict():
    plain = rules.replica_lost(two_nodes(), "dbnode2", FAST)
    assert plain.kind == rules.COMMITS_FLOW and "drops dbnode2 from synchronous_standby_names" in plain.text
    assert (plain.node, plain.leader) == ("dbnode2", "dbnode1")   # the whole outcome is checked, not the leader alone
    strict = rules.replica_lost(two_nodes(synchronous_mode_strict=True), "dbnode2", FAST)
    assert "writes block" in strict.text and strict.kind == rules.COMMITS_WAIT


def test_etcd_quorum_loss_with_and_without_failsafe():
    assert rules.etcd_lost(two_nodes(), 1, 3, FAST).kind == rules.NO_PRIMARY
    kept = rules.etcd_lost(two_nodes(failsafe_mode=True), 1, 3, FAST)
    assert kept.kind == rules.SAME_LEADER and "failsafe_mode is on" in kept.text
    assert rules.etcd_lost(two_nodes(), 2, 3, FAST).kind == rules.SAME_LEADER


def test_a_leader_cut_off_from_etcd_alone_keeps_writing_with_failsafe_if_it_reaches_every_member():
    kept = rules.leader_lost(two_nodes(failsafe_mode=True), "dbnode1", FAST, how="was cut off from etcd",
                             reaches_members=True)
    assert kept.kind == rules.FAILSAFE_PRIMARY and kept.node == "dbnode1" and kept.hold_s >= FAST.ttl
    assert "POST /failsafe" in kept.text
    # Without failsafe, or when it cannot reach the other member (a pulled cable), the usual failover.
    assert rules.leader_lost(two_nodes(), "dbnode1", FAST, reaches_members=True).kind == rules.NEW_LEADER
    assert rules.leader_lost(two_nodes(failsafe_mode=True), "dbnode1", FAST).kind == rules.NEW_LEADER


def test_freezing_patroni_or_hanging_postgres_on_the_leader_follow_the_failover_rules():
    assert rules.patroni_frozen(two_nodes(), "dbnode1", FAST).kind == rules.NEW_LEADER
    assert rules.patroni_frozen(two_nodes(sync=()), "dbnode1", FAST).kind == rules.NO_LEADER
    assert rules.postgres_hung(two_nodes(), "dbnode1", FAST).kind == rules.NEW_LEADER
    assert rules.postgres_hung(two_nodes(), "dbnode2", FAST).kind == rules.COMMITS_FLOW


def test_a_leader_hung_while_its_postgres_was_still_starting_keeps_its_key():
    # Seen in a campaign: kill-postgres on the leader, then hang-postgres 4 s later, while Patroni was
    # still starting PostgreSQL again: it kept renewing the key (handle_starting_instance), no failover.
    st = two_nodes()
    starting = ClusterState(members=(member("dbnode1", "leader", "starting", 3), st.members[1]),
                            leader="dbnode1", sync_key=True, sync_leader="dbnode1", sync_standbys=("dbnode2",),
                            synchronous_mode=True, timeline=3)
    plan = rules.postgres_hung(starting, "dbnode1", FAST)
    assert plan.kind == rules.KEEPS_KEY and plan.node == "dbnode1" and plan.hold_s >= FAST.ttl
    assert "primary_start_timeout" in plan.text


def test_a_full_disk_on_the_leader_is_no_failover_and_names_who_would_take_over_after_a_wal_panic():
    plan = rules.disk_full(two_nodes(), "dbnode1", FAST)
    assert plan.kind == rules.FULL_DISK_LEADER and plan.node == "dbnode1" and plan.hold_s >= FAST.ttl
    assert plan.text.startswith("No failover: a full disk is not a lost node.")
    assert "gives up the key after one failed start: dbnode2 takes over" in plan.text
    blocked = rules.disk_full(two_nodes(sync=()), "dbnode1", FAST)
    assert "nobody may take over (dbnode2 is not the synchronous standby in /sync" in blocked.text


def test_a_full_disk_on_a_replica_is_a_lost_replica_and_freeing_it_returns_the_node():
    for strict, words in ((False, "commits wait until Patroni drops dbnode2"), (True, "writes block")):
        plan = rules.disk_full(two_nodes(synchronous_mode_strict=strict), "dbnode2", FAST)
        kind = rules.COMMITS_WAIT if strict else rules.COMMITS_FLOW
        assert plan.kind == kind and plan.leader == "dbnode1" and words in plan.text
        assert "its disk is full" in plan.text
    assert rules.disk_freed(two_nodes(), "dbnode1", FAST).kind == rules.SAME_LEADER
    # After a WAL PANIC the old leader lost its key: once freed it rejoins like any returning node.
    st = two_nodes(leader="dbnode2", sync=())
    assert rules.disk_freed(st, "dbnode1", FAST).kind == rules.STREAMS


def test_snapshot_reads_the_sync_key_tags_and_config():
    cluster = Cluster.of([Member("dbnode1", "", "leader", "running", 5),
                          Member("dbnode2", "", "replica", "streaming", 5, lag="unknown",
                                 tags={"nofailover": True})])
    st = cluster_state.snapshot(cluster, '{"leader":"dbnode1","quorum":0,"sync_standby":null}',
                        {"synchronous_mode": True, "failsafe_mode": True, "maximum_lag_on_failover": 10})
    assert st.sync_key and st.sync_leader == "dbnode1" and st.sync_standbys == ()
    assert st.failsafe_mode and st.maximum_lag_on_failover == 10 and st.timeline == 5
    assert st.member("dbnode2").nofailover and st.member("dbnode2").lag is None
    assert cluster_state.snapshot(cluster, None, {}).sync_key is False


def test_a_partition_loses_etcd_only_when_every_member_is_cut():
    from pgha_lab.chaos.expectations import cuts_db_node, cuts_every_etcd_member
    from pgha_lab.topology import Topology
    topo = Topology.build()
    assert cuts_every_etcd_member(topo, "etcd") and cuts_every_etcd_member(topo, "etcd1, etcd2,etcd3")
    # One etcd member still reachable renews the key for it: that leader stays leader.
    assert not cuts_every_etcd_member(topo, "etcd1") and not cuts_every_etcd_member(topo, "etcd1,etcd2,dbnode2")
    assert cuts_db_node(topo, "etcd,dbnode2") and cuts_db_node(topo, "replica") and not cuts_db_node(topo, "etcd")


@pytest.mark.parametrize("text, bits", [("2mbit", 2_000_000), ("512kbit", 512_000), ("1.5Mbit", 1_500_000),
                                        ("1gbit", 1_000_000_000), (" 64kbit ", 64_000)])
def test_a_slow_link_takes_tcs_spelling(text, bits):
    assert parse_rate(text) == bits


@pytest.mark.parametrize("text", ["2mb", "10kbit", "2 gbit", "fast", "", "-1mbit"])
def test_a_bad_link_speed_is_one_sentence(text):
    with pytest.raises(LabError, match="--rate takes a link speed from 64kbit to 1gbit"):
        parse_rate(text)


def test_a_slow_link_is_read_back_from_tcs_own_listing():
    # `tc qdisc show` as the lab's nodes print it: the slowed node's tbf, a peer's htb, an untouched node.
    slowed = ("qdisc noqueue 0: dev lo root refcnt 2 \n"
              "qdisc tbf 8002: dev eth1 root refcnt 3 rate 7346Kbit burst 18365b lat 100ms \n")
    peer = "qdisc htb 1: dev eth0 root refcnt 3 r2q 10 default 0 direct_packets_stat 43 direct_qlen 1000\n"
    assert slow_rate(slowed) == 7_346_000
    assert slow_rate(peer) is None and slow_rate("qdisc noqueue 0: dev eth0 root refcnt 2\n") is None


# -- "demoted": what the no-primary check accepts as a node that no longer takes writes ----------
def test_a_stopped_postgres_is_not_a_demoted_one():
    from pgha_lab.chaos.expectations import RoleReading, judge_demoted
    read_only = RoleReading("dbnode2", "running", 200, "replica", "running")
    # Patroni answers (its /primary says 503) but PostgreSQL does not run: no reads on 5433 either.
    for state in ("stopped", "starting", "crashed", "start failed"):
        verdict = judge_demoted([RoleReading("dbnode1", "running", 200, "replica", state), read_only])
        assert not verdict.ok and verdict.culprit == "dbnode1" and state in verdict.reason, verdict
    assert judge_demoted([RoleReading("dbnode1", "running", 200, "replica", "running"), read_only]).ok


def test_demoted_needs_every_node_to_say_so_or_be_powered_off():
    from pgha_lab.chaos.expectations import RoleReading, judge_demoted
    read_only = RoleReading("dbnode2", "running", 200, "replica", "running")
    still = judge_demoted([RoleReading("dbnode1", "running", 200, "primary", "running"), read_only])
    assert not still.ok and "still answers as primary" in still.reason
    stopping = judge_demoted([RoleReading("dbnode1", "running", 200, "primary", "stopping"), read_only])
    assert not stopping.ok and "stopping PostgreSQL as primary" in stopping.reason and "wal_sender_timeout" in stopping.reason
    frozen = judge_demoted([RoleReading("dbnode1", "paused"), read_only])
    assert not frozen.ok and "does not answer" in frozen.reason
    assert judge_demoted([RoleReading("dbnode1", "exited"), read_only]).ok
    # Off the lab network: its console's answer decides.
    assert judge_demoted([RoleReading("dbnode1", "running", console_in_recovery="t"), read_only]).ok
    for answer in ("f", ""):
        cut = judge_demoted([RoleReading("dbnode1", "running", console_in_recovery=answer), read_only])
        assert not cut.ok and "console" in cut.reason, cut


def test_the_leader_lost_with_no_other_db_node_running_is_a_cluster_down_not_read_only():
    # Issue 26: the replica powered off first, then the leader: no PostgreSQL answers at all.
    st = two_nodes(down=frozenset({"dbnode1", "dbnode2"}), replica_state="stopped")
    plan = rules.leader_lost(st, "dbnode1", FAST, how="lost power")
    assert plan.kind == rules.NO_LEADER
    assert "read-only" not in plan.text
    assert "no db node runs: the cluster is down" in plan.text
    assert "HAProxy has no server on 5432 or 5433" in plan.text
    assert "only dbnode1 may take the key" not in plan.text   # dbnode2 is still the standby in /sync
    # The standby dropped from /sync before the leader went: only the old leader may lead again.
    emptied = rules.leader_lost(two_nodes(sync=(), down=frozenset({"dbnode1", "dbnode2"}), replica_state="stopped"),
                                "dbnode1", FAST, how="lost power")
    assert "the cluster is down" in emptied.text and "only dbnode1 may take the key" in emptied.text
    assert "protects acknowledged writes" in emptied.text
    # With the replica still running (only unable to take the key) the cluster stays read-only.
    blocked = rules.leader_lost(two_nodes(sync=(), down=frozenset({"dbnode1"})), "dbnode1", FAST, how="lost power")
    assert "read-only" in blocked.text and "the cluster is down" not in blocked.text


def test_a_replica_the_lab_has_isolated_or_paused_is_no_candidate_though_patroni_still_lists_it():
    # Issue 26: the replica cut off first, the leader lost within ttl: Patroni still shows the replica
    # streaming, but it cannot reach etcd to take the key.
    containers = {"dbnode1": ContainerState("exited", True, exit_code=137),
                  "dbnode2": ContainerState("running", False)}
    st = two_nodes(down=frozenset({"dbnode1"}), impaired=impairments(containers))
    plan = rules.leader_lost(st, "dbnode1", FAST, how="lost power")
    assert plan.kind == rules.NO_LEADER, plan
    assert "dbnode2 is off the lab network (isolated): it cannot reach etcd" in plan.text
    paused = impairments({"dbnode2": ContainerState("paused", True)})
    assert paused == (("dbnode2", "dbnode2 is paused (frozen): it cannot reach etcd"),)
    assert impairments({"dbnode2": ContainerState("running", True)}) == ()
    # Nothing impaired: the same state fails over to the synchronous standby.
    assert rules.leader_lost(two_nodes(down=frozenset({"dbnode1"})), "dbnode1", FAST).kind == rules.NEW_LEADER


def test_a_replica_with_a_frozen_patroni_a_hung_postgres_or_cut_from_all_etcd_is_no_candidate():
    running = {"dbnode2": ContainerState("running", True)}
    etcd = {"10.0.0.11", "10.0.0.12", "10.0.0.13"}

    def why(procs, rules=()):
        return impairments(running, {"dbnode2": Inside(procs, list(rules), "")}, etcd)
    assert why([(1, 0, "S", "systemd"), (40, 1, "T", "python3")]) == (
        ("dbnode2", "dbnode2's Patroni is frozen: it cannot take the leader key"),)
    assert why([(40, 1, "S", "python3"), (50, 40, "T", "postgres")]) == (
        ("dbnode2", "dbnode2's PostgreSQL hangs: its Patroni cannot promote it"),)
    cut_all = [f"-A PGHA_CHAOS_IN -s {a}/32 -j DROP" for a in sorted(etcd)]
    assert why([(40, 1, "S", "python3")], cut_all) == (
        ("dbnode2", "dbnode2 is cut off from every etcd member: it cannot take the leader key"),)
    # One etcd member still reachable, or nothing stopped: Patroni's client carries on, no impairment.
    assert why([(40, 1, "S", "python3")], cut_all[:2]) == ()
    assert why([(40, 1, "S", "python3"), (50, 40, "S", "postgres")]) == ()
    frozen = two_nodes(down=frozenset({"dbnode1"}), impaired=why([(40, 1, "T", "python3")]))
    plan = rules.leader_lost(frozen, "dbnode1", FAST, how="lost power")
    assert plan.kind == rules.NO_LEADER and "dbnode2's Patroni is frozen" in plan.text


def test_one_reading_from_inside_parses_processes_rules_and_queues():
    # INSIDE's output as a db node prints it: /proc's records, then `iptables -S`, then `tc qdisc show`.
    text = ("1 0 S docker-init\n40 1 T python3\n52 40 S postgres\n"
            "@@pgha-rules@@\n-P INPUT ACCEPT\n-N PGHA_CHAOS_IN\n-A INPUT -j PGHA_CHAOS_IN\n"
            "-A PGHA_CHAOS_IN -s 10.0.0.11/32 -j DROP\n"
            "@@pgha-qdiscs@@\nqdisc noqueue 0: dev lo root refcnt 2\n"
            "qdisc tbf 8001: dev eth0 root refcnt 2 rate 2Mbit burst 32Kb lat 100ms\n")
    got = Inside.parse(text)
    assert got.procs == [(1, 0, "S", "docker-init"), (40, 1, "T", "python3"), (52, 40, "S", "postgres")]
    assert got.stopped_pids == [40]
    assert got.chain("PGHA_CHAOS_IN") == ["-A PGHA_CHAOS_IN -s 10.0.0.11/32 -j DROP"]
    assert got.has_chaos_rules and got.has_qdisc and slow_rate(got.qdiscs) == 2_000_000
    # A node with nothing on it: the jump into an empty chain is no chaos rule, noqueue no slow link.
    clean = Inside.parse("1 0 S docker-init\n@@pgha-rules@@\n-A INPUT -j PGHA_CHAOS_IN\n@@pgha-qdiscs@@\n"
                         "qdisc noqueue 0: dev eth0 root refcnt 2\n")
    assert not clean.has_chaos_rules and not clean.has_qdisc and clean.stopped_pids == []
