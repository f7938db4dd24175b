from pgha_lab.gateway import ContainerState
from pgha_lab.health import assess_etcd, assess_haproxy, assess_patroni, assess_standby_roles
from pgha_lab.probes import Backend, Cluster, EtcdEndpoint, Member, parse_haproxy_csv
from pgha_lab.wait import Verdict


def ep(name, id_, leader=False, error=""):
    return EtcdEndpoint(name=name, endpoint=f"https://{name}:2379", id=id_, is_leader=leader, error=error)


def test_etcd_needs_distinct_ids_and_one_leader():
    assert assess_etcd([ep("etcd1", "a", True), ep("etcd2", "b"), ep("etcd3", "c")]).ok
    cloned = assess_etcd([ep("etcd1", "a", True), ep("etcd2", "a"), ep("etcd3", "c")])
    assert not cloned.ok and "share a member ID" in cloned.reason
    assert not assess_etcd([ep("etcd1", "a"), ep("etcd2", "b"), ep("etcd3", "c")]).ok
    down = assess_etcd([ep("etcd1", "a", True), ep("etcd2", "", error="unreachable"), ep("etcd3", "c")])
    assert not down.ok and down.culprit == "etcd2"


def m(name, role, state):
    return Member(name=name, host="", role=role, state=state)


def test_patroni_needs_a_leader_streaming_replicas_and_a_sync_standby():
    names = ["dbnode1", "dbnode2", "dbnode3"]
    good = [m("dbnode1", "leader", "running"), m("dbnode2", "sync_standby", "streaming"), m("dbnode3", "replica", "streaming")]
    assert assess_patroni(good, names).ok
    missing = assess_patroni(good[:2], names)
    assert not missing.ok and missing.culprit == "dbnode3"
    not_streaming = assess_patroni([good[0], good[1], m("dbnode3", "replica", "starting")], names)
    assert not not_streaming.ok and not_streaming.culprit == "dbnode3"
    no_sync = assess_patroni([good[0], m("dbnode2", "replica", "streaming"), good[2]], names)
    assert not no_sync.ok and "synchronous" in no_sync.reason
    two_leaders = assess_patroni([good[0], m("dbnode2", "leader", "running"), good[2]], names)
    assert not two_leaders.ok


def b(backend, server, status):
    return Backend(backend=backend, server=server, status=status)


def test_haproxy_must_route_primary_to_the_leader_and_replicas_to_the_rest():
    rows = [b("primary", "dbnode1", "UP"), b("primary", "dbnode2", "DOWN"),
            b("replicas", "dbnode1", "DOWN"), b("replicas", "dbnode2", "UP")]
    assert assess_haproxy(rows, "dbnode1", ["dbnode2"]).ok
    assert not assess_haproxy(rows, "dbnode2", ["dbnode1"]).ok
    both = rows[:1] + [b("primary", "dbnode2", "UP")] + rows[2:]
    assert not assess_haproxy(both, "dbnode1", ["dbnode2"]).ok
    assert not assess_haproxy([], "dbnode1", ["dbnode2"]).ok


def test_haproxy_stats_csv_keeps_server_rows_only():
    text = ("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,"
            "weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,"
            "rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,last_chk\n"
            "primary,FRONTEND,,,0,0,100,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,0,,,,,\n"
            "primary,dbnode1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,42,0,,1,2,1,,0,,2,0,,0,L7OK,200,3,,OK\n"
            "primary,dbnode2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,40,40,,1,2,2,,0,,2,0,,0,L7STS,503,2,,Service Unavailable\n"
            "primary,BACKEND,0,0,0,0,10,0,0,0,0,0,,0,0,0,0,UP,1,1,0,,0,42,0,,1,2,0,,0,,1,0,,0,,,,,\n")
    rows = parse_haproxy_csv(text)
    assert [(r.backend, r.server, r.status, r.check_status, r.since_change_s) for r in rows] == [
        ("primary", "dbnode1", "UP", "L7OK", 42), ("primary", "dbnode2", "DOWN", "L7STS", 40)]


def test_a_mode_switch_is_settled_only_when_the_standby_roles_are_that_modes():
    # A matrix run switched a 3-node lab from quorum to sync: the wait passed while Patroni still
    # showed quorum standbys, and the drill right after found no synchronous standby at all.
    leader = m("dbnode1", "leader", "running")
    quorum = Cluster.of([leader, m("dbnode2", "quorum_standby", "streaming"), m("dbnode3", "quorum_standby", "streaming")])
    sync = Cluster.of([leader, m("dbnode2", "sync_standby", "streaming"), m("dbnode3", "replica", "streaming")])
    bare = Cluster.of([leader, m("dbnode2", "replica", "streaming"), m("dbnode3", "replica", "streaming")])
    switching = assess_standby_roles(quorum, "sync")
    assert not switching.ok and "no sync standby yet" in switching.reason
    assert not assess_standby_roles(bare, "sync").ok and not assess_standby_roles(bare, "strict").ok
    assert assess_standby_roles(sync, "sync").ok and assess_standby_roles(sync, "strict").ok
    assert assess_standby_roles(quorum, "quorum").ok and not assess_standby_roles(sync, "quorum").ok
    assert assess_standby_roles(bare, "async").ok
    assert "in async mode" in assess_standby_roles(sync, "async").reason


# -- who takes writes, said plainly ---------------------------------------------------------------
def running():
    return ContainerState("running", True)


def test_with_no_leader_writes_are_said_to_be_refused_and_why():
    from pgha_lab.health import NO_LEADER, write_path
    up = {"dbnode1": running(), "dbnode2": running()}
    routed = [b("primary", "dbnode1", "UP"), b("primary", "dbnode2", "DOWN")]
    healthy = Cluster.of([m("dbnode1", "leader", "running"), m("dbnode2", "sync_standby", "streaming")])
    assert write_path(healthy, up, routed) == Verdict(True, "dbnode1 leads and takes writes through HAProxy's 5432")

    none = write_path(Cluster.of([m("dbnode2", "replica", "streaming")]), up, routed)
    assert not none.ok and none.reason == f"{NO_LEADER} (Patroni lists no leader)"
    silent = write_path(Cluster.of([]), up, [], answered=False)
    assert silent.reason == f"{NO_LEADER} (no db node's Patroni answers its REST API)"
    # A powered-off leader's key outlives it by up to ttl: Patroni still names it, Docker knows better.
    killed = write_path(healthy, {**up, "dbnode1": ContainerState("exited", False, exit_code=137)}, routed)
    assert not killed.ok and killed.culprit == "dbnode1"
    assert killed.reason.startswith(f"{NO_LEADER} (the leader key still names dbnode1, which is stopped")
    frozen = write_path(healthy, {**up, "dbnode1": ContainerState("paused", True)}, routed)
    assert "which is paused" in frozen.reason
    lagging = write_path(healthy, up, [b("primary", "dbnode1", "DOWN"), b("primary", "dbnode2", "DOWN")])
    assert not lagging.ok and "HAProxy's 5432 routes to no server, not the leader dbnode1" in lagging.reason


def test_every_member_is_listed_with_dockers_state_where_patroni_cannot_say():
    from pgha_lab.health import member_rows
    db = [("dbnode1", "10.0.0.10"), ("dbnode2", "10.0.0.20"), ("dbnode3", "10.0.0.40")]
    stale = Member("dbnode1", "10.0.0.10", "replica", "streaming", 3, lag=8464)   # frozen at its last loop
    cluster = Cluster.of([stale, m("dbnode2", "leader", "running")])
    states = {"dbnode1": ContainerState("exited", False, exit_code=137), "dbnode2": running(),
              "dbnode3": running()}
    rows = member_rows(db, cluster, states, answered={"dbnode2"})
    assert [r.name for r in rows] == ["dbnode1", "dbnode2", "dbnode3"]
    assert (rows[0].state, rows[0].role.value, rows[0].lag, rows[0].timeline) == \
        ("stopped (Docker: exited 137)", "unknown", None, None)
    assert rows[1] is cluster.member("dbnode2")
    assert rows[2].state == "running; its Patroni does not answer its REST API"
    isolated = member_rows(db[:1], cluster, {"dbnode1": ContainerState("running", False)})
    assert isolated[0].state == "isolated (off the lab network)"
