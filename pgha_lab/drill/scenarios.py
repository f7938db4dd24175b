"""What each drill breaks, how long it watches, what recovery means and how it puts things back.

Faults go through Chaos and roles (the same code paths as `pgha-lab chaos` and `switchover`), so a
drill measures exactly what a DBA can do by hand.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from pgha_lab import roles, vip
from pgha_lab.chaos import expectations as ex, rules, sql
from pgha_lab.chaos.actions import MIN_RATE, NO_OWN_DISK, Chaos, human_rate
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.profiles import PROMOTE_S, Profile
from pgha_lab.render.keepalived import failover_bound_s as vip_failover_bound_s
from pgha_lab.wait import Verdict


@dataclass
class Fault:
    """What was done, to whom, and what the cluster should do about it."""
    target: str
    role_before: str
    done: str
    expected: str
    check: Callable[[], Verdict] | None = None   # the expected outcome, read from the cluster
    extra_targets: list[str] = field(default_factory=list)
    holds: bool = False   # Patroni's rules say nothing recovers before healing (e.g. no sync standby to promote)
    figures: dict[str, float] = field(default_factory=dict)   # what the fault itself measured (the report's figures)


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    inject: Callable[[LabContext], Fault]
    # Minimum seconds to watch after the fault before healing: long enough for the effect the
    # scenario is about to show (e.g. a sync standby's member key expiring), whatever recovers first.
    observe_s: Callable[[Profile], float] = lambda p: 0.0
    # Heal after observe_s without waiting for recovery: for faults the cluster cannot recover
    # from by itself (no etcd quorum).
    hold: bool = False
    # Upper bound on write downtime implied by the profile; None where no downtime bound applies.
    bound_s: Callable[[Profile], float | None] = lambda p: None
    bound_text: str = ""
    leader_changes: bool = True
    # A refusal (LabError) for a lab whose shape cannot take the scenario, run before anything starts.
    requires: Callable[[LabContext], None] | None = None
    needs_bulk: bool = False   # only a bulk writer makes WAL faster than a slow link can carry


def _from_chaos(lab: LabContext, action: str, target: str | None, peers: str | None = None, **kw) -> Fault:
    out = Chaos(lab).run(action, target, peers=peers, **kw)
    return Fault(target=out.node, role_before=out.role_before, done=out.done, expected=out.expectation.text,
                 check=out.expectation.check, holds=out.expectation.holds)


def _switchover(lab: LabContext) -> Fault:
    change = roles.request_change(lab, "switchover", None)
    old = change.old_leader or ""
    return Fault(target=old, role_before="leader",
                 done=f"switchover requested through {old}'s REST API (Patroni picks the candidate)",
                 expected=("the leader stops PostgreSQL cleanly and releases the key; the synchronous standby "
                           "promotes and HAProxy moves 5432 to it"),
                 check=ex.new_leader(lab, old))


def _etcd_leader(lab: LabContext) -> str:
    leaders = [e.name for e in lab.probe.etcd() if e.is_leader]
    if not leaders:
        raise LabError("etcd has no leader right now; `pgha-lab status` shows the lab.")
    return leaders[0]


def _etcd_kill(lab: LabContext, how_many: int) -> Fault:
    # The raft leader first: losing it also forces an etcd election, the harder case.
    first = _etcd_leader(lab)
    others = sorted(n.name for n in lab.topology.etcd if n.name != first)
    victims = [first, *others][:how_many]
    chaos = Chaos(lab)
    outcomes = [chaos.run("kill", name) for name in victims]
    last = outcomes[-1]
    return Fault(target=victims[0], role_before="etcd leader", done="; ".join(o.done for o in outcomes),
                 expected=last.expectation.text, check=last.expectation.check, extra_targets=victims[1:])


def _etcd_majority(lab: LabContext) -> int:
    return len(lab.topology.etcd) // 2 + 1


def _quorum_loss(lab: LabContext) -> Fault:
    # Keep one member fewer than a majority running.
    return _etcd_kill(lab, len(lab.topology.etcd) - _etcd_majority(lab) + 1)


# PostgreSQL's default, which the lab keeps: a primary's fast shutdown waits this long for a walsender
# whose standby stopped replying (seen on a quiet host: demotion began 15 s after the cut, the
# shutdown ended 60 s after it).
WAL_SENDER_TIMEOUT_S = 60.0


def _quorum_loss_member_cut(lab: LabContext) -> Fault:
    # failsafe_mode keeps a primary up through a DCS outage only while it reaches every member:
    # cut a replica off as well, and even failsafe must demote.
    replica = next((m.name for m in lab.cluster().replicas), None)
    if replica is None:
        raise LabError("there is no replica to cut off; `pgha-lab status` shows the lab.")
    cut = Chaos(lab).run("isolate", replica)
    fault = _quorum_loss(lab)
    fault.done = f"{cut.done}; {fault.done}"
    fault.extra_targets.append(replica)
    fault.expected = ("no etcd quorum and a member unreachable: the primary cannot confirm every member, so it "
                      "demotes even with failsafe_mode on; its fast shutdown waits for the walsender to the cut-off "
                      f"standby, up to wal_sender_timeout ({WAL_SENDER_TIMEOUT_S:g} s) after that standby's last reply")
    # The etcd kill's own check expects failsafe to keep the primary when it is on; not with a member cut.
    fault.check = ex.no_primary(lab)
    return fault


# The standby's lag when the leader is cut off: half of Patroni's default maximum_lag_on_failover
# (1 MiB), so with the default the lagging standby is still promoted and, in async mode, what it
# never received is lost. A lab with `up --max-lag` below it shows the other side: no leader at all.
LAG_TARGET_BYTES = 512 * 1024
LAG_WAIT_S = 20.0   # sync and strict keep the standby close (commits wait for it): cut anyway after this
SLOW_LINK_SHARE = 0.5   # the standby's link carries half of the WAL the leader writes


def _isolate_leader_lagging(lab: LabContext) -> Fault:
    cluster = lab.cluster()
    if cluster.leader_name is None or not [m for m in cluster.replicas if m.state == "streaming"]:
        raise LabError("a lagging-standby drill needs a leader and a streaming standby; `pgha-lab status` shows the lab.")
    leader = lab.topology.node(cluster.leader_name)
    standby = next(m.name for m in cluster.replicas if m.state == "streaming")
    p, max_lag = lab.profile, lab.settings.max_lag
    lag_sql = ("select coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn), 0)::bigint "
               "from pg_stat_replication where application_name = %s")
    with sql.connect(lab, leader) as conn:
        def wal_now() -> int:
            return int(conn.execute("select pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint").fetchone()[0])
        start, t0 = wal_now(), time.monotonic()
        time.sleep(1.0)
        wal_bytes_s = (wal_now() - start) / (time.monotonic() - t0)
        bits = int(wal_bytes_s * 8 * SLOW_LINK_SHARE)
        if bits < MIN_RATE:
            raise LabError(f"the leader writes only {wal_bytes_s / 1024:.0f} KiB of WAL a second, which any link "
                           f"carries; give the drill a bulk writer (e.g. --bulk-rate 200).")
        # Patroni's failover check compares the standby with the leader's position as last written to
        # etcd, up to a loop before the cut. To be refused for sure, the standby must be behind by
        # max_lag plus a loop and a half of WAL; to be promoted for sure, well within max_lag.
        refuse = max_lag < LAG_TARGET_BYTES
        target = int(max_lag + 1.5 * p.loop_wait * wal_bytes_s) if refuse else LAG_TARGET_BYTES
        chaos = Chaos(lab)
        chaos.run("degrade", standby, rate=f"{bits // 1000}kbit")
        deadline = time.monotonic() + LAG_WAIT_S
        lag = 0
        while time.monotonic() < deadline:
            row = conn.execute(lag_sql, (standby,)).fetchone()
            lag = int(row[0]) if row else lag
            if lag >= target:
                break
            time.sleep(0.05)
    cut = chaos.run("isolate", leader.name)
    # Decided here, not by the rules: they read the lag Patroni reported a loop ago, and the slow link
    # has changed it since (seen both ways: a standby reported 1.6 MB behind was promoted).
    if lag >= target and refuse:
        plan = rules.Plan(
            f"{standby} is {lag} bytes behind, over maximum_lag_on_failover ({max_lag}) by more than a loop of WAL: "
            f"Patroni will not promote it, so the cluster stays without a leader, read-only, until {leader.name} "
            f"returns; nothing is lost", rules.NO_LEADER, node=leader.name, hold_s=p.ttl + 2 * p.loop_wait + 5,
            deadline_s=p.ttl + 2 * p.loop_wait + 20)
    else:
        plan = rules.Plan(
            f"{standby} is {lag} bytes behind, within maximum_lag_on_failover ({max_lag}): once {leader.name}'s key "
            f"expires (ttl {p.ttl} s) it is promoted and HAProxy moves 5432 to it. Asynchronous replication loses "
            f"the acknowledged writes it never received; synchronous replication had them all on it",
            rules.NEW_LEADER, node=leader.name, deadline_s=p.failover_bound_s() + 30)
    expected = ex.from_plan(lab, plan)
    return Fault(target=leader.name, role_before="leader",
                 done=(f"{standby}'s link slowed to {human_rate(bits)} (half the {wal_bytes_s / 1e6:.2f} MB/s of WAL "
                       f"written); {cut.done} with {standby} {lag / 1024:.0f} KiB behind"),
                 expected=expected.text, check=expected.check, holds=expected.holds,
                 extra_targets=[standby], figures={"standby_lag_at_cut_bytes": lag, "slow_link_bits": bits,
                                                   "wal_bytes_s": round(wal_bytes_s)})


def _require_disks(lab: LabContext) -> None:
    if lab.topology.db_disk_size is None:
        raise LabError(NO_OWN_DISK + ".")


FAILOVER_TEXT = f"ttl + loop_wait + promotion ({PROMOTE_S:g} s) + HAProxy rise checks"

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("switchover", "planned switchover through Patroni's REST API", _switchover,
             bound_s=lambda p: p.switchover_bound_s(),
             bound_text=f"2 x loop_wait + promotion ({PROMOTE_S:g} s) + HAProxy rise checks"),
    Scenario("kill-leader", "power cut on the leader (docker kill)", lambda lab: _from_chaos(lab, "kill", "leader"),
             bound_s=lambda p: p.failover_bound_s(), bound_text=FAILOVER_TEXT),
    Scenario("pause-leader", "the leader's VM freezes (docker pause)", lambda lab: _from_chaos(lab, "pause", "leader"),
             bound_s=lambda p: p.failover_bound_s(), bound_text=FAILOVER_TEXT),
    Scenario("stop-leader", "clean shutdown of the leader's VM (docker stop)", lambda lab: _from_chaos(lab, "stop", "leader"),
             bound_s=lambda p: p.failover_bound_s(), bound_text=FAILOVER_TEXT),
    Scenario("isolate-leader", "the leader's cable pulled (docker network disconnect)",
             lambda lab: _from_chaos(lab, "isolate", "leader"),
             bound_s=lambda p: p.failover_bound_s(), bound_text=FAILOVER_TEXT),
    Scenario("isolate-leader-lagging", "the standby on a slow link (half the WAL rate), the leader's cable pulled "
             f"once the standby is {LAG_TARGET_BYTES // 1024} KiB behind, or past a smaller max lag (needs --bulk-rate)",
             _isolate_leader_lagging,
             bound_s=lambda p: p.failover_bound_s() + LAG_WAIT_S, needs_bulk=True,
             bound_text=FAILOVER_TEXT + f" + up to {LAG_WAIT_S:g} s for the lag to build"),
    Scenario("partition-leader-from-etcd", "the leader cut off from every etcd member (iptables)",
             lambda lab: _from_chaos(lab, "partition", "leader", peers="etcd"),
             bound_s=lambda p: p.failover_bound_s(), bound_text=FAILOVER_TEXT),
    Scenario("kill-replica", "power cut on the synchronous standby", lambda lab: _from_chaos(lab, "kill", "replica"),
             # Patroni drops a standby from synchronous_standby_names once its member key expires.
             observe_s=lambda p: p.ttl + 2 * p.loop_wait, leader_changes=False),
    Scenario("kill-postgres", "the leader's postmaster killed, Patroni left running",
             lambda lab: _from_chaos(lab, "kill-postgres", "leader"),
             observe_s=lambda p: 2 * p.loop_wait + p.haproxy_mark_down_s, leader_changes=False,
             bound_s=lambda p: p.haproxy_mark_down_s + p.loop_wait + PROMOTE_S + p.haproxy_mark_up_s,
             bound_text=f"HAProxy fall checks + loop_wait + restart ({PROMOTE_S:g} s) + HAProxy rise checks"),
    Scenario("etcd-minority-loss", "power cut on one etcd member (the raft leader)", lambda lab: _etcd_kill(lab, 1),
             observe_s=lambda p: float(p.ttl), leader_changes=False),
    Scenario("etcd-quorum-loss", "power cut on a majority of etcd members", _quorum_loss,
             observe_s=lambda p: p.ttl + p.loop_wait + p.haproxy_mark_down_s + 5.0, hold=True),
    Scenario("etcd-quorum-loss-member-cut", "a replica cut off, then a majority of etcd members lost",
             _quorum_loss_member_cut,
             observe_s=lambda p: max(p.ttl + p.loop_wait + p.haproxy_mark_down_s, WAL_SENDER_TIMEOUT_S) + 5.0, hold=True),
    Scenario("freeze-patroni-leader", "SIGSTOP to the leader's Patroni (PostgreSQL keeps running)",
             lambda lab: _from_chaos(lab, "freeze-patroni", "leader"),
             bound_s=lambda p: p.failover_bound_s(), bound_text=FAILOVER_TEXT),
    Scenario("hang-postgres-leader", "SIGSTOP to the leader's postmaster and every backend",
             lambda lab: _from_chaos(lab, "hang-postgres", "leader"),
             bound_s=lambda p: p.failover_bound_s(), bound_text=FAILOVER_TEXT),
    Scenario("kill-haproxy", "the single entry point killed for 5 s, then started (heal)",
             lambda lab: _from_chaos(lab, "kill-haproxy", None),
             observe_s=lambda p: 5.0, hold=True, leader_changes=False),
    Scenario("kill-haproxy-vip", "the HAProxy holding the virtual address killed; keepalived moves it to the other",
             lambda lab: _from_chaos(lab, "kill-haproxy", None),
             bound_s=lambda p: vip_failover_bound_s(), leader_changes=False, requires=vip.require_pair,
             bound_text="3 x advert_int + the backup's skew time + 1 s for gratuitous ARP and a new connection"),
    Scenario("cancel-sync-wait", "the sync standby frozen, waiting commits cancelled (pg_cancel_backend), standby thawed",
             lambda lab: _from_chaos(lab, "cancel-sync-wait", "leader"), leader_changes=False),
    # Until healed: Patroni fails over for a lost node, not for a full disk (while WAL still has room).
    Scenario("fill-disk-leader", "the leader's data disk filled to the last block, then freed (a lab made with "
             "`up --disk-size`)", lambda lab: _from_chaos(lab, "fill-disk", "leader"), leader_changes=False,
             requires=_require_disks),
    Scenario("flap-leader", "the leader cut off from etcd and back every 4 s for 16 s",
             lambda lab: _from_chaos(lab, "flap", "leader", peers="etcd", every=4, duration=16)),
)}


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise LabError(f"unknown drill {name!r}; choose one of: {', '.join(SCENARIOS)}.") from None

