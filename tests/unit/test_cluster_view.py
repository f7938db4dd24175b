"""The typed cluster view: roles as an enum, and the questions every caller asks of a reading."""
from __future__ import annotations

import json

from pgha_lab.probes import Cluster, Member, MemberRole


def m(name, role, state="streaming", tl=3):
    return Member(name=name, host="", role=role, state=state, timeline=tl)


def test_roles_parse_to_the_enum_and_print_as_patroni_names():
    assert m("a", "sync_standby").role is MemberRole.SYNC_STANDBY
    assert m("a", "something new").role is MemberRole.UNKNOWN
    assert f"{MemberRole.LEADER}" == "leader" and json.dumps(MemberRole.REPLICA) == '"replica"'
    assert MemberRole.QUORUM_STANDBY.is_replica and not MemberRole.LEADER.is_replica


def test_leader_replicas_and_sync_standbys():
    c = Cluster.of([m("dbnode3", "replica"), m("dbnode1", "leader", "running", 4), m("dbnode2", "sync_standby")])
    assert c.leader_name == "dbnode1" and c.timeline == 4
    assert [r.name for r in c.replicas] == ["dbnode2", "dbnode3"]   # the synchronous standby first
    assert [s.name for s in c.sync_standbys] == ["dbnode2"]
    assert c.role_of("dbnode3") is MemberRole.REPLICA and c.role_of("nobody") is MemberRole.UNKNOWN


def test_no_leader_or_two_leaders_is_no_leader():
    assert Cluster.of([m("a", "replica"), m("b", "replica")]).leader is None
    assert Cluster.of([m("a", "leader", "running"), m("b", "leader", "running")]).leader_name is None
    assert not Cluster.of([])
