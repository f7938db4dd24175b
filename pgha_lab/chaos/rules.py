"""Patroni's rules as pure functions: from a ClusterState and a fault to the outcome Patroni will
choose and why, one function per kind of fault. No I/O: expectations.py turns a Plan into a check.

What the rules encode (Patroni 4.1):
- a replica may take an expired leader key only when it runs and streams (or runs), is not tagged
  nofailover or failover_priority 0, lags at most maximum_lag_on_failover, is not behind the
  cluster's timeline, and, with synchronous_mode on, is named as sync_standby in the /sync key;
- with nobody eligible the key stays free: no leader, HAProxy's 5432 has no server, which is what
  protects acknowledged writes in synchronous mode;
- a member coming back while the key is free takes it only if the same rules allow it (in
  synchronous mode: it is the /sync leader or a /sync standby);
- losing the synchronous standby: non-strict mode drops it from synchronous_standby_names once its
  member key expires, strict mode keeps commits waiting until a standby is back;
- a leader whose PostgreSQL is still starting keeps renewing its key until primary_start_timeout,
  even when the start hangs;
- a full disk is not a lost node: the primary keeps running and renewing its key while every write
  that needs new space fails; only when it must also start a WAL segment does it PANIC, fail its
  crash recovery for the same reason, and then Patroni gives the key up after one failed start;
  a replica whose WAL replay cannot extend a file stops, which is a lost replica;
- losing the etcd quorum demotes the primary unless failsafe_mode is on and it reaches every member;
- so does a leader cut off from etcd alone: with failsafe_mode on and every member reachable it keeps
  running as primary without the key (POST /failsafe to each member), and the members it calls do
  not race for the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pgha_lab.chaos.cluster_state import ClusterState
from pgha_lab.probes import Member, MemberRole
from pgha_lab.profiles import Profile

NO_SPACE_TEXT = "No space left on device"
# The WARNING of a commit whose wait for a synchronous standby was cancelled (it stays committed locally).
SYNC_CANCEL_TEXT = "canceling wait for synchronous replication"
# What the check of a plan looks for (expectations.py maps each to a probe of the cluster).
NEW_LEADER = "new-leader"        # someone other than `node` leads and HAProxy routes 5432 to it
SAME_LEADER = "same-leader"      # `leader` still leads (on the same timeline)
COMMITS_FLOW = "commits-flow"    # SAME_LEADER, Patroni no longer lists `node` as synchronous standby,
                                 # and a commit through HAProxy does not wait for a standby
COMMITS_WAIT = "commits-wait"    # SAME_LEADER, and a commit through HAProxy waits for a synchronous standby
NO_LEADER = "no-leader"          # nobody leads for `hold_s`: the cluster stays read-only
KEEPS_KEY = "keeps-key"          # `node` keeps the leader key for `hold_s` and nobody else leads
FAILSAFE_PRIMARY = "failsafe-primary"   # `node` stays the only primary for `hold_s`, the key free or its own
TAKES_KEY = "takes-key"          # `node` becomes the leader
STREAMS = "streams"              # `node` streams as a replica
FULL_DISK_LEADER = "full-disk-leader"   # `node` keeps the key for `hold_s`; writes needing space fail on it
NO_PRIMARY = "no-primary"        # no node answers as primary, HAProxy's 5432 has no server
HEALTHY = "healthy"              # the lab's health verdict
NOTHING = "nothing"              # nothing to check


@dataclass(frozen=True)
class Plan:
    """What Patroni will do, why, and what to check."""
    text: str
    kind: str
    node: str | None = None            # the node the check is about (old leader, returning node...);
                                       # NO_LEADER: the lost leader, whose key may live on until its ttl
    leader: str | None = None          # SAME_LEADER, COMMITS_*: who keeps leading
    timeline: int | None = None        # SAME_LEADER, COMMITS_*: on which timeline (None: any)
    via_haproxy: bool = True
    deadline_s: float = 60.0
    hold_s: float = 0.0                # NO_LEADER: how long nobody may lead
    candidates: tuple[str, ...] = field(default_factory=tuple)


def why_not(state: ClusterState, m: Member, lost: str | None) -> str | None:
    """Why `m` cannot take the leader key now (None: it can)."""
    impaired = state.impairment(m.name)
    if impaired:
        return impaired
    if m.name in state.down:
        return f"{m.name} is down"
    if m.nofailover:
        return f"{m.name} is tagged nofailover"
    if m.failover_priority == 0:
        return f"{m.name} has failover_priority 0"
    if m.state not in ("streaming", "running"):
        return f"{m.name} is {m.state or 'not running'}"
    if state.synchronous_mode and state.sync_key and m.name not in state.sync_standbys and m.name != state.sync_leader:
        named = ", ".join(state.sync_standbys) or "none"
        return f"{m.name} is not the synchronous standby in /sync (sync_standby: {named})"
    if m.lag_bytes is not None and m.lag_bytes > state.maximum_lag_on_failover:
        return f"{m.name} lags {m.lag_bytes} bytes, over maximum_lag_on_failover ({state.maximum_lag_on_failover})"
    if state.timeline is not None and m.timeline is not None and m.timeline < state.timeline:
        return f"{m.name} is on timeline {m.timeline}, behind the cluster's {state.timeline}"
    return None


def candidates(state: ClusterState, lost: str) -> tuple[list[str], list[str]]:
    """(members that may take the key once `lost` gives it up, reasons the others may not)."""
    ok, reasons = [], []
    for m in state.members:
        if m.name == lost:
            continue
        reason = why_not(state, m, lost)
        if reason is None:
            ok.append(m.name)
        else:
            reasons.append(reason)
    # The sync standby first: it is the one Patroni prefers (and in sync mode the only one allowed).
    ok.sort(key=lambda n: (n not in state.sync_standbys, n))
    return ok, reasons


def _mode(state: ClusterState) -> str:
    if not state.synchronous_mode:
        return "asynchronous replication"
    return "synchronous_mode " + ("strict" if state.synchronous_mode_strict else "on (not strict)")


def _hold_s(profile: Profile) -> float:
    """How long a plan that expects nothing to change watches: past the key's ttl, two more loops and
    HAProxy marking a server down, plus a margin."""
    return profile.ttl + 2 * profile.loop_wait + profile.haproxy_mark_down_s + 5


def leader_lost(state: ClusterState, node: str, profile: Profile, *, how: str = "is gone",
                reaches_members: bool = False) -> Plan:
    """The leader stops renewing its key (killed, frozen, cut off from etcd, or its Patroni frozen);
    `reaches_members`: it still reaches every other member's REST API (cut off from etcd alone)."""
    bound = profile.failover_bound_s()
    if state.failsafe_mode and reaches_members:
        hold = _hold_s(profile)
        return Plan(f"No failover: {node} was the leader and {how}, but failsafe_mode is on and it still reaches "
                    f"every member. It cannot renew its key, so each HA loop it calls every member's REST API "
                    f"(POST /failsafe); while all of them answer it keeps running as primary without the key, and "
                    f"the members it called do not race for it. Writes go on through HAProxy (no member holds the "
                    f"key: a drill counts them as keyless acks, failsafe's design); the key stays free until etcd "
                    f"is back.", FAILSAFE_PRIMARY, node=node, hold_s=hold, deadline_s=hold + 15)
    who, why = candidates(state, node)
    if who:
        new = who[0]
        because = ("it is the synchronous standby in /sync" if new in state.sync_standbys
                   else "it is a healthy replica within maximum_lag_on_failover")
        return Plan(f"{node} was the leader and {how}. Its leader key expires within ttl ({profile.ttl}s); {new} "
                    f"takes it because {because}, promotes, and HAProxy moves 5432 to it (bound ~{bound:.0f}s).",
                    NEW_LEADER, node=node, deadline_s=bound + 30, candidates=tuple(who))
    hold = _hold_s(profile)
    reasons = "; ".join(why) or "no other member"
    protects = (", which protects acknowledged writes: only a synchronous standby is sure to hold them"
                if state.synchronous_mode else "")
    if node in state.down and all(m.name in state.down for m in state.members):
        # Nothing runs PostgreSQL: there is no replica left to serve reads, so "read-only" would be false.
        only_old = ""
        if state.synchronous_mode and not any(m.name in state.sync_standbys for m in state.members if m.name != node):
            only_old = (f" Booting another db node does not bring writes back: /sync names no other member as "
                        f"synchronous standby, so only {node} may take the key{protects}.")
        return Plan(f"No failover: {node} was the leader and {how}, and no db node runs: the cluster is down. "
                    f"No PostgreSQL answers, HAProxy has no server on 5432 or 5433, until a db node boots "
                    f"(`pgha-lab chaos start {node}`).{only_old}", NO_LEADER, node=node, hold_s=hold,
                    deadline_s=hold + 15)
    return Plan(f"No failover: {node} was the leader and {how}, and no replica may take the key ({reasons}). "
                f"The cluster stays without a leader, read-only, HAProxy's 5432 without a server, until {node} "
                f"returns{protects}.", NO_LEADER, node=node, hold_s=hold, deadline_s=hold + 15)


def replica_lost(state: ClusterState, node: str, profile: Profile, *, how: str = "is gone") -> Plan:
    leader = state.leader
    if leader is None:
        return Plan(f"{node} {how}; there is no leader to carry on.", NOTHING)
    is_sync = node in state.sync_standbys
    if is_sync and state.synchronous_mode and state.synchronous_mode_strict:
        text = (f"{node} was the synchronous standby and {how}. {leader} stays leader, but synchronous_mode_strict "
                f"keeps every commit waiting until a synchronous standby is back: writes block, nothing is lost.")
        return Plan(text, COMMITS_WAIT, node=node, leader=leader, timeline=state.timeline,
                    deadline_s=profile.failover_bound_s() + 30)
    if is_sync and state.synchronous_mode:
        text = (f"{node} was the synchronous standby and {how}. {leader} stays leader; commits wait until "
                f"Patroni drops {node} from synchronous_standby_names (non-strict mode), at the latest once its "
                f"member key expires (ttl {profile.ttl}s), then writes resume without a synchronous copy.")
    else:
        text = f"{node} was a replica and {how}. {leader} stays leader; no commit waits on {node}."
    return Plan(text, COMMITS_FLOW, node=node, leader=leader, timeline=state.timeline,
                deadline_s=profile.failover_bound_s() + 30)


def node_returns(state: ClusterState, node: str, profile: Profile) -> Plan:
    """A db node comes back (started, thawed, reconnected): what it finds decides its role."""
    rejoin = 120.0
    if state.leader == node:
        return Plan(f"{node} still holds the leader key and carries on as leader.", SAME_LEADER, leader=node,
                    deadline_s=60)
    if state.leader is None:
        m = state.member(node) or Member(node, "", MemberRole.UNKNOWN, "starting")
        blocked = m.nofailover or m.failover_priority == 0 or (
            state.synchronous_mode and state.sync_key and node != state.sync_leader and node not in state.sync_standbys)
        if not blocked:
            why = (f"it is the last primary named in /sync (leader: {state.sync_leader})"
                   if state.synchronous_mode and state.sync_key and node == state.sync_leader
                   else "no other member may take it")
            return Plan(f"Nobody holds the leader key and {node} may take it: {why}. It takes the key back and runs "
                        f"as primary again (no failover happened, so nothing has to rejoin).", TAKES_KEY, node=node,
                        deadline_s=rejoin)
        return Plan(f"Nobody holds the leader key and {node} may not take it either; it starts as a replica and "
                    f"the cluster stays without a leader until the last primary returns.", NO_LEADER,
                    hold_s=profile.ttl, deadline_s=profile.ttl + 15)   # node unset: it must not lead either
    return Plan(f"{node} comes back and finds the leader key held by {state.leader}: if it led before, it steps "
                f"down and rejoins as a replica (pg_rewind where its timeline diverged), so no write reaches it; "
                f"otherwise Patroni starts it as a replica. Either way it streams again.", STREAMS, node=node,
                deadline_s=rejoin)


def postgres_killed(state: ClusterState, node: str, profile: Profile) -> Plan:
    if state.leader == node:
        return Plan(f"{node} still holds the leader key, so Patroni restarts PostgreSQL in place as primary "
                    f"('starting primary after failure', primary_start_timeout 300s): no failover, same timeline.",
                    SAME_LEADER, leader=node, timeline=state.timeline, deadline_s=60)
    return Plan(f"Patroni restarts PostgreSQL on {node} as a replica; it streams again.", STREAMS, node=node,
                deadline_s=60)


def patroni_frozen(state: ClusterState, node: str, profile: Profile) -> Plan:
    """SIGSTOP to Patroni only: PostgreSQL keeps running, unmanaged."""
    if state.leader == node:
        plan = leader_lost(state, node, profile, how="its Patroni is frozen (PostgreSQL still runs)")
        extra = (" Its REST API stops answering, so HAProxy marks it down at once; its PostgreSQL keeps "
                 "running as a primary nobody routes to"
                 + (", and in synchronous mode its commits wait for a standby that no longer follows it"
                    if state.synchronous_mode else "")
                 + ". On thaw Patroni finds the key lost and demotes it.")
        return Plan(plan.text + extra, plan.kind, node=plan.node, hold_s=plan.hold_s, deadline_s=plan.deadline_s,
                    candidates=plan.candidates)
    return replica_lost(state, node, profile, how="its Patroni is frozen (its PostgreSQL keeps streaming)")


def postgres_hung(state: ClusterState, node: str, profile: Profile) -> Plan:
    """SIGSTOP to the postmaster and every backend: Patroni's queries and its REST checks hang."""
    leader = state.member(node) if state.leader == node else None
    if leader is not None and leader.state == "starting":
        # Patroni's handle_starting_instance renews the key while it waits for a primary to start,
        # and gives it up only after primary_start_timeout.
        hold = _hold_s(profile)
        return Plan(f"No failover: {node} leads, but its PostgreSQL was still starting (after a crash) when it hung. "
                    f"Patroni is not blocked on a query then: it waits for the start and keeps renewing the leader "
                    f"key, for up to primary_start_timeout (300s) before it gives the key up. Until the hang is "
                    f"released the cluster keeps a leader that serves no writes (HAProxy's 5432 has no server).",
                    KEEPS_KEY, node=node, hold_s=hold, deadline_s=hold + 15)
    if leader is not None:
        return leader_lost(state, node, profile,
                           how="its PostgreSQL hangs (Patroni's query to it "
                               "blocks, so the HA loop stops renewing the key)")
    return replica_lost(state, node, profile, how="its PostgreSQL hangs (it stops replaying and acknowledging WAL)")


def disk_full(state: ClusterState, node: str, profile: Profile) -> Plan:
    """The node's data disk filled up (WAL lives on it too)."""
    if state.leader != node:
        return replica_lost(state, node, profile,
                            how="its disk is full: as soon as WAL replay must extend a file its PostgreSQL stops, "
                                "and Patroni restarts it in a loop until there is space")
    who, why = candidates(state, node)
    then = (f"{who[0]} takes over" if who else f"nobody may take over ({'; '.join(why) or 'no other member'}), "
                                                 f"so the cluster stays without a leader")
    hold = _hold_s(profile)
    return Plan(f"No failover: a full disk is not a lost node. {node} keeps PostgreSQL running and renews the leader "
                f"key, and HAProxy keeps sending 5432 to it; every write that needs new space fails there ('could "
                f"not extend file ...: {NO_SPACE_TEXT}'), reads go on. Should PostgreSQL also need a new WAL "
                f"segment, it PANICs, its crash recovery fails for the same reason, and Patroni gives up the key "
                f"after one failed start: {then}. Freeing space (`chaos free-disk {node}`) ends it.",
                FULL_DISK_LEADER, node=node, hold_s=hold, deadline_s=hold + 15)


def disk_freed(state: ClusterState, node: str, profile: Profile) -> Plan:
    if state.leader == node:
        return Plan(f"{node} still leads and never stopped: writes that need space succeed on it again at once.",
                    SAME_LEADER, leader=node, timeline=state.timeline, deadline_s=60)
    return node_returns(state, node, profile)


def etcd_lost(state: ClusterState, left: int, total: int, profile: Profile) -> Plan:
    quorum = total // 2 + 1
    leader = state.leader
    if left >= quorum:
        keeps = f"{leader} stays leader." if leader else "it elects a leader as usual."
        return Plan(f"etcd keeps its quorum ({left} of {total} members, {quorum} needed); Patroni carries on and "
                    f"{keeps}", SAME_LEADER if leader else HEALTHY, leader=leader, timeline=state.timeline)
    if state.failsafe_mode and leader:
        return Plan(f"etcd has lost its quorum ({left} of {total}, {quorum} needed), but failsafe_mode is on: "
                    f"{leader} keeps running as primary while it reaches every member over the REST API.",
                    SAME_LEADER, leader=leader, timeline=state.timeline, deadline_s=profile.ttl + 30)
    return Plan(f"etcd has lost its quorum ({left} of {total}, {quorum} needed). Patroni cannot renew the leader "
                f"key, so within retry_timeout/ttl ({profile.retry_timeout}s/{profile.ttl}s) the primary demotes "
                f"itself to read-only (failsafe_mode is off) and HAProxy's 5432 has no server; reads on 5433 go on.",
                NO_PRIMARY, deadline_s=profile.ttl + 30)


def flapping(state: ClusterState, node: str, profile: Profile) -> Plan:
    """A partition from etcd that comes and goes; what counts is the state once it stops."""
    if state.leader == node:
        text = (f"{node} leads. Each cut longer than retry_timeout ({profile.retry_timeout}s) makes it demote to "
                f"read-only; when the link returns before its key expires (ttl {profile.ttl}s) it takes its own key "
                f"again and promotes, otherwise a replica allowed by /sync takes over. Writes stutter while it "
                f"flaps; once it stops the cluster settles with one leader and every replica streaming.")
    else:
        text = (f"{node} is a replica: while cut off it cannot refresh its member key; {state.leader or 'the leader'} "
                f"carries on. Once the flapping stops the cluster settles with one leader and every replica streaming.")
    return Plan(text, HEALTHY, node=node, deadline_s=profile.failover_bound_s() + 90)
