"""The fault catalogue: every fault defined once (its name, targets, refusals, injection, heal,
expected outcome, and the front ends that offer it). `pgha-lab chaos`, the drills, the campaign and
the dashboard all read it; adding a fault is adding one entry here (or `register` from elsewhere).

VM failures are simulated with Docker and iptables: kill = power cut, pause = frozen VM,
stop/start = clean shutdown and boot, isolate/heal = the cable pulled and plugged back,
kill-postgres = the postmaster dies while Patroni lives, partition = a partial cut with iptables
inside the node, degrade = packet loss, a slow link or delay (chaos/network.py),
freeze-patroni/thaw-patroni = SIGSTOP/SIGCONT to Patroni alone, hang-postgres/release-postgres =
SIGSTOP/SIGCONT to the postmaster and every backend, kill-haproxy/start-haproxy = the single entry
point down and back (with two HAProxy nodes, either one, and the VIP moves to the other: vip/),
flap = a partition toggled every N seconds for M seconds, fill-disk/free-disk = a db node's own
data disk filled by a file and freed (disks.py), cancel-sync-wait and block-switchover = the two
experiments of chaos/experiments.py. The drills' and the campaign's faults are these on a chosen
target (kill-leader), or composites over them (etcd-quorum-loss, isolate-leader-lagging)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from pgha_lab import disks, roles, vip
from pgha_lab.chaos import expectations, experiments, rules, sql
from pgha_lab.chaos.expectations import Expectation
from pgha_lab.chaos.fault import (
    DB_NODE,
    HAPROXY_NODE,
    NO_NODE,
    NOTHING,
    Act,
    Button,
    Campaign,
    Done,
    Drill,
    Fault,
    MatrixOutcome,
)
from pgha_lab.chaos.nodes import MIN_RATE, human_rate
from pgha_lab.context import LabContext
from pgha_lab.errors import LabError
from pgha_lab.profiles import PROMOTE_S, Profile
from pgha_lab.render.keepalived import failover_bound_s as vip_failover_bound_s
from pgha_lab.rows import one_row
from pgha_lab.topology import Node, Role

NO_OWN_DISK = ("this lab's db nodes keep their data in Docker volumes on the host's disk, so filling one would fill "
               "the host's; give each db node its own disk: `pgha-lab down --volumes`, then "
               "`pgha-lab up --disk-size 2G`")
HEAL_ALL = "heal-all"


# -- expected outcomes ---------------------------------------------------------------------------
def _haproxy_expectation(act: Act, *, losing: bool) -> Expectation:
    ctx, node = act.ctx, act.n
    if ctx.topology.haproxy2 is not None:
        return expectations.vip_expectation(ctx, node, act.role, losing=losing)
    if losing:
        cluster = act.cluster or ctx.cluster()
        leader = cluster.leader_name
        return Expectation("Clients lose 5432 and 5433 until HAProxy is back (it is the single entry point: "
                           "this lab has no second HAProxy); the cluster itself does not change.",
                           expectations.same_leader(ctx, leader, cluster.timeline, via_haproxy=False)
                           if leader else None,
                           30)
    return Expectation("HAProxy routes 5432 to the leader and 5433 to the replicas again.",
                       expectations.healthy(ctx), 60)


def _leader_name(act: Act) -> str | None:
    return act.cluster.leader_name if act.cluster else None


def lost(how: str) -> Callable[[Act], Expectation]:
    """A node gone (power, frozen, shut down, cable): who takes over, derived from the state."""
    def expect(act: Act) -> Expectation:
        node, p = act.n, act.ctx.profile
        if node.role is Role.DB:
            if act.role == "leader":
                return expectations.from_plan(
                    act.ctx, rules.leader_lost(act.now(), node.name, p, how=how, reaches_members=False))
            if _leader_name(act):
                return expectations.from_plan(act.ctx, rules.replica_lost(act.now(), node.name, p, how=how))
            return Expectation(NOTHING)
        if node.role is Role.ETCD:
            running, total = expectations.etcd_running(act.ctx), len(act.ctx.topology.etcd)
            return expectations.from_plan(act.ctx, rules.etcd_lost(act.now(), running, total, p))
        return _haproxy_expectation(act, losing=True)
    return expect


def returned(act: Act) -> Expectation:
    """A node back (booted, thawed, plugged in, uncut): what it rejoins as."""
    node, p = act.n, act.ctx.profile
    if node.role is Role.DB:
        return expectations.from_plan(act.ctx, rules.node_returns(act.now(), node.name, p))
    if node.role is Role.ETCD:
        return Expectation(f"{node.name} rejoins etcd; with a quorum Patroni holds or elects a leader and "
                           f"HAProxy routes 5432 again.", expectations.healthy(act.ctx), p.failover_bound_s() + 60)
    return _haproxy_expectation(act, losing=False)


def _db_plan(plan: Callable[..., rules.Plan]) -> Callable[[Act], Expectation]:
    """A db node's fault whose outcome is one rule over the state (rules.py)."""
    def expect(act: Act) -> Expectation:
        if act.n.role is not Role.DB:
            return Expectation(NOTHING)
        return expectations.from_plan(act.ctx, plan(act.now(), act.n.name, act.ctx.profile))
    return expect


def _expect_partition(act: Act) -> Expectation:
    if act.opts.clear:
        return returned(act)
    node, p, topo, peers = act.n, act.ctx.profile, act.ctx.topology, act.opts.peers
    how = "was cut off from etcd"
    if node.role is Role.DB:
        if act.role == "leader" and expectations.cuts_every_etcd_member(topo, peers):
            return expectations.from_plan(act.ctx, rules.leader_lost(act.now(), node.name, p, how=how,
                                                           reaches_members=not expectations.cuts_db_node(topo, peers)))
        if act.role == "leader":   # a partition that leaves it etcd
            # Unable to renew, it would have demoted within a loop and retry_timeout: watch past that.
            hold = p.loop_wait + p.retry_timeout + 5
            return Expectation(f"{node.name} still reaches etcd, so it keeps renewing the leader key and stays "
                               f"leader (watched for {hold}s: a leader that cannot renew gives up within loop_wait "
                               f"+ retry_timeout); only the links cut are lost (a replica cut off from it stops "
                               f"streaming).", expectations.keeps_key(act.ctx, node.name, hold), hold + 15, holds=True)
        if not expectations.cuts_every_etcd_member(topo, peers) and not expectations.cuts_db_node(topo, peers):
            hold = p.loop_wait + p.retry_timeout + 5
            left = [n.name for n in topo.etcd if n.name not in expectations.cut_names(peers)]
            return Expectation(f"{node.name} still reaches etcd ({', '.join(left)}): Patroni's etcd client tries "
                               f"the members in turn, so it keeps its member key and streams on; nothing changes "
                               f"(watched for {hold}s).",
                               expectations.streams_on(act.ctx, node.name, _leader_name(act), hold),
                               hold + 15, holds=True)
        if _leader_name(act):
            if expectations.cuts_every_etcd_member(topo, peers):
                return expectations.from_plan(act.ctx, rules.replica_lost(act.now(), node.name, p, how=how))
            # It keeps etcd, so its member key never expires: the leader lets it go once its walsender
            # gives up on it (no RST through a DROP), up to wal_sender_timeout, and Patroni's next loop.
            plan = rules.replica_lost(act.now(), node.name, p,
                                      how=f"was cut off from {', '.join(expectations.cut_names(peers))}")
            return expectations.from_plan(act.ctx, replace(
                plan, deadline_s=max(plan.deadline_s, WAL_SENDER_TIMEOUT_S + p.loop_wait + 15)))
        return Expectation(NOTHING)
    return lost(how)(act)


def _expect_degrade(act: Act) -> Expectation:
    node, leader = act.n, _leader_name(act)
    if node.role is not Role.DB:
        return Expectation(NOTHING)
    if act.opts.clear and leader != node.name:
        return Expectation(f"{node.name}'s link is whole again: it catches up with the leader and keeps streaming.",
                           expectations.streams_as_replica(act.ctx, node.name), 120)
    if leader == node.name:
        return Expectation(f"{node.name} still holds the leader key and carries on as leader.",
                           expectations.same_leader(act.ctx, node.name), 60)
    return Expectation(f"{node.name} keeps working through the degraded link (TCP retransmits) and keeps "
                       f"streaming, behind the leader when writes outpace a slow link.",
                       expectations.streams_as_replica(act.ctx, node.name), 120)


def _expect_kill_postgres(act: Act) -> Expectation:
    killed_at = datetime.now(UTC)   # the kill has just run: a restart must come after it
    planned = expectations.from_plan(act.ctx, rules.postgres_killed(act.now(), act.n.name, act.ctx.profile))
    # Until Patroni's next loop the killed PostgreSQL still looks as it was: a restart comes first.
    if not planned.check:
        return planned
    return replace(planned, check=expectations.restarted_since(act.ctx, act.n, killed_at, planned.check))


def _expect_free_disk(act: Act) -> Expectation:
    planned = expectations.from_plan(act.ctx, rules.disk_freed(act.now(), act.n.name, act.ctx.profile))
    if _leader_name(act) == act.n.name and planned.check is not None:
        return replace(planned, check=expectations.writes_land(act.ctx, act.n.name, planned.check))
    return planned


# -- injections ----------------------------------------------------------------------------------
def _kill(act: Act) -> Done:
    n, st = act.n, act.st
    act.need(st.status in ("running", "paused"), f"{n.name} is {st.status}; there is nothing to power off")
    act.ctx.docker.kill(n)
    return Done(f"{n.name} powered off (SIGKILL to every process, no clean shutdown)")


def _pause(act: Act) -> Done:
    n, st = act.n, act.st
    act.need(st.running, f"{n.name} is {st.status}, not running; only a running node can freeze")
    act.ctx.docker.pause(n)
    return Done(f"{n.name} frozen (every process stopped, connections left hanging)")


def _resume(act: Act) -> Done:
    n, st = act.n, act.st
    act.need(st.status == "paused", f"{n.name} is not paused (it is {st.status}); nothing to resume")
    act.ctx.docker.unpause(n)
    return Done(f"{n.name} thawed")


def _stop(act: Act) -> Done:
    n, st = act.n, act.st
    act.need(st.running, f"{n.name} is {st.status}, not running; nothing to shut down")
    act.ctx.docker.stop(n)
    return Done(f"{n.name} shut down cleanly: systemd stopped every unit in order" if act.ctx.topology.bare
                else f"{n.name} shut down cleanly (SIGTERM, then the grace period)")


def _start(act: Act) -> Done:
    n, st = act.n, act.st
    act.need(st.status in ("exited", "created"), f"{n.name} is {st.status}; only a stopped or killed node can boot")
    act.ctx.docker.start(n)
    return Done(f"{n.name} booted")


def _isolate(act: Act) -> Done:
    n, st = act.n, act.st
    act.need(st.running, f"{n.name} is {st.status}; isolate needs a running node")
    act.need(st.on_lab_network, f"{n.name} is already isolated; `heal` plugs it back")
    act.ctx.docker.disconnect(n)
    return Done(f"{n.name}'s cable pulled: it is off the lab network")


def _heal(act: Act) -> Done:
    n, st = act.n, act.st
    act.need(st.status in ("running", "paused"), f"{n.name} is {st.status}; start it instead")
    act.need(not st.on_lab_network, f"{n.name} is not isolated; nothing to heal")
    act.ctx.docker.connect(n, str(n.address))
    return Done(f"{n.name}'s cable plugged back at {n.address}")


def _kill_postgres(act: Act) -> Done:
    n, st = act.n, act.st
    act.need(st.running, f"{n.name} is {st.status}, not running")
    pid = act.read.postmaster_pid(n)
    act.ctx.docker.exec(n, "kill", "-KILL", str(pid))
    return Done(f"{n.name}'s postmaster (pid {pid}) killed; Patroni keeps running")


def _partition(act: Act) -> Done:
    n, st = act.n, act.st
    act.need(st.running, f"{n.name} is {st.status}; a partition needs a running node")
    if act.opts.clear:
        act.net.uncut(n)
        return Done(f"{n.name}'s partition cleared")
    cut = act.peers_of(n, act.opts.peers)
    act.net.cut(n, cut)
    return Done(f"{n.name} cut off from {', '.join(p.name for p in cut)} (iptables DROP both ways)")


def _degrade(act: Act) -> Done:
    n, st, o = act.n, act.st, act.opts
    act.need(st.running, f"{n.name} is {st.status}; degrade needs a running node")
    return Done(act.net.degrade(n, o.loss, o.delay, o.rate, o.clear))


def _patroni_signal(freeze: bool) -> Callable[[Act], Done]:
    def inject(act: Act) -> Done:
        n, st = act.n, act.st
        act.need(st.running, f"{n.name} is {st.status}, not running")
        pid = act.read.patroni_pid(n)
        frozen = act.read.stopped(n, [pid])
        if not freeze:
            act.need(frozen, f"Patroni on {n.name} is not frozen; nothing to thaw")
            act.ctx.docker.exec(n, "kill", "-CONT", str(pid))
            return Done(f"Patroni on {n.name} (pid {pid}) thawed with SIGCONT")
        act.need(not frozen, f"Patroni on {n.name} is already frozen; `thaw-patroni {n.name}` thaws it")
        expectation = act.expectation()   # read while Patroni still answers
        act.ctx.docker.exec(n, "kill", "-STOP", str(pid))
        return Done(f"Patroni on {n.name} (pid {pid}) frozen with SIGSTOP; PostgreSQL keeps running",
                    expectation=expectation)
    return inject


def _postgres_signal(hang: bool) -> Callable[[Act], Done]:
    def inject(act: Act) -> Done:
        n, st = act.n, act.st
        act.need(st.running, f"{n.name} is {st.status}, not running")
        pids = act.read.postgres_pids(n)
        hung = act.read.stopped(n, pids[:1])
        if not hang:
            act.need(hung, f"PostgreSQL on {n.name} does not hang; nothing to release")
            act.ctx.docker.exec(n, "kill", "-CONT", *map(str, pids))
            return Done(f"PostgreSQL on {n.name} released: SIGCONT to the postmaster and its {len(pids) - 1} children")
        act.need(not hung, f"PostgreSQL on {n.name} already hangs; `release-postgres {n.name}` releases it")
        expectation = act.expectation()   # read while PostgreSQL still answers
        act.ctx.docker.exec(n, "kill", "-STOP", *map(str, pids))
        return Done(f"PostgreSQL on {n.name} hung: SIGSTOP to the postmaster (pid {pids[0]}) and its "
                    f"{len(pids) - 1} children; Patroni keeps running", expectation=expectation)
    return inject


def _kill_haproxy(act: Act) -> Done:
    n, st = act.n, act.st
    act.need(st.running, f"{n.name} is {st.status}; there is no HAProxy to kill")
    act.ctx.docker.kill(n)
    return Done(f"{n.name} killed: 5432 and 5433 have no listener (the lab's single entry point)"
                if act.ctx.topology.haproxy2 is None else f"{n.name} ({act.role}) killed, keepalived with it")


def _start_haproxy(act: Act) -> Done:
    n, st = act.n, act.st
    act.need(st.status in ("exited", "created"), f"{n.name} is {st.status}; only a killed HAProxy can start")
    act.ctx.docker.start(n)
    return Done(f"{n.name} started")


def _experiment(run: Callable[[LabContext, Node], experiments.Result], running: bool) -> Callable[[Act], Done]:
    def inject(act: Act) -> Done:
        n, st = act.n, act.st
        if running:
            act.need(st.running, f"{n.name} is {st.status}, not running")
        act.need(act.role == "leader", f"{n.name} is {act.role}; {act.fault.name} takes the leader (try `leader`)")
        result = run(act.ctx, n)
        return Done(result.done, figures=result.figures, expectation=result.expectation)
    return inject


def _flap(act: Act) -> Done:
    n, st, o = act.n, act.st, act.opts
    act.need(st.running, f"{n.name} is {st.status}; a flap needs a running node")
    every_s, for_s = experiments.flap_timing(o.every, o.duration)
    cut = act.peers_of(n, o.peers or "etcd")
    expectation = act.expectation()   # read before the first cut
    toggles = experiments.flap(lambda: act.net.cut(n, cut), lambda: act.net.uncut(n), every_s, for_s)
    return Done(f"{n.name} cut off from {', '.join(p.name for p in cut)} and reconnected every {every_s:g}s "
                f"for {for_s:g}s ({toggles} cuts); its links are restored",
                figures={"every_s": every_s, "for_s": for_s, "cuts": toggles}, expectation=expectation)


def _disk(act: Act) -> disks.Disk:
    d = disks.disk(act.ctx.paths, act.n.name)
    act.need(d.mounted, f"{act.n.name}'s disk is not mounted; `pgha-lab up` mounts it")
    return d


def _fill_disk(act: Act) -> Done:
    n, d = act.n, _disk(act)
    leave_bytes = disks.parse_size(act.opts.leave, "--leave") if act.opts.leave else 0
    act.need(d.filler_size() == 0, f"{n.name}'s disk already carries a filler; `free-disk {n.name}` removes it")
    taken = disks.fill(d, leave_bytes)
    left, size = d.usage()
    return Done(f"{n.name}'s disk filled: {disks.FILLER} took {disks.human(taken)}, {disks.human(left)} of "
                f"{disks.human(size)} left for PostgreSQL",
                figures={"filled_bytes": taken, "free_bytes": left, "disk_bytes": size})


def _free_disk(act: Act) -> Done:
    n, d = act.n, _disk(act)
    act.need(d.filler_size() > 0, f"{n.name}'s disk carries no filler; nothing to free")
    freed = disks.free(d)
    return Done(f"{n.name}'s disk freed: the {disks.human(freed)} filler removed", figures={"freed_bytes": freed})


def _via(act: Act) -> Done:
    """A fault offered on a chosen target: its base fault run there."""
    fault = act.fault
    options = {k: v for k, v in vars(act.opts).items() if v is not None and v is not False}
    out = act.run(fault.base, act.target, **options)
    return Done(out.done, figures=out.figures, expectation=out.expectation, node=out.node, role=out.role_before,
                extra_targets=out.extra_targets)


# -- composites: the drills' own situations ------------------------------------------------------
def _switchover(act: Act) -> Done:
    change = roles.request_change(act.ctx, "switchover", None)
    old = change.old_leader or ""
    expected = Expectation("the leader stops PostgreSQL cleanly and releases the key; the synchronous standby "
                           "promotes and HAProxy moves 5432 to it", expectations.new_leader(act.ctx, old))
    return Done(f"switchover requested through {old}'s REST API (Patroni picks the candidate)",
                expectation=expected, node=old, role="leader")


def _etcd_leader(ctx: LabContext) -> str:
    leaders = [e.name for e in ctx.probe.etcd() if e.is_leader]
    if not leaders:
        raise LabError("etcd has no leader right now; `pgha-lab status` shows the lab.")
    return leaders[0]


def _etcd_majority(ctx: LabContext) -> int:
    return len(ctx.topology.etcd) // 2 + 1


def _etcd_kill(how_many: Callable[[LabContext], int]) -> Callable[[Act], Done]:
    def inject(act: Act) -> Done:
        # The raft leader first: losing it also forces an etcd election, the harder case.
        first = _etcd_leader(act.ctx)
        others = sorted(n.name for n in act.ctx.topology.etcd if n.name != first)
        victims = [first, *others][:how_many(act.ctx)]
        outcomes = [act.run("kill", name) for name in victims]
        return Done("; ".join(o.done for o in outcomes), expectation=outcomes[-1].expectation, node=victims[0],
                    role="etcd leader", extra_targets=victims[1:])
    return inject


def _quorum(ctx: LabContext) -> int:
    # Keep one member fewer than a majority running.
    return len(ctx.topology.etcd) - _etcd_majority(ctx) + 1


# PostgreSQL's default, which the lab keeps: a primary's fast shutdown waits this long for a walsender
# whose standby stopped replying (seen on a quiet host: demotion began 15 s after the cut, the
# shutdown ended 60 s after it).
WAL_SENDER_TIMEOUT_S = 60.0


def _quorum_loss_member_cut(act: Act) -> Done:
    # failsafe_mode keeps a primary up through a DCS outage only while it reaches every member:
    # cut a replica off as well, and even failsafe must demote.
    replica = next((m.name for m in act.ctx.cluster().replicas), None)
    if replica is None:
        raise LabError("there is no replica to cut off; `pgha-lab status` shows the lab.")
    cut = act.run("isolate", replica)
    lost_etcd = _etcd_kill(_quorum)(act)
    # The etcd kill's own check expects failsafe to keep the primary when it is on; not with a member cut.
    expected = Expectation(
        "no etcd quorum and a member unreachable: the primary cannot confirm every member, so it demotes even with "
        "failsafe_mode on; its fast shutdown waits for the walsender to the cut-off standby, up to "
        f"wal_sender_timeout ({WAL_SENDER_TIMEOUT_S:g} s) after that standby's last reply",
        expectations.no_primary(act.ctx), lost_etcd.expectation.deadline_s if lost_etcd.expectation else 60.0,
        holds=lost_etcd.expectation.holds if lost_etcd.expectation else False)
    return replace(lost_etcd, text=f"{cut.done}; {lost_etcd.text}", expectation=expected,
                   extra_targets=[*lost_etcd.extra_targets, replica])


# The standby's lag when the leader is cut off: half of Patroni's default maximum_lag_on_failover
# (1 MiB), so with the default the lagging standby is still promoted and, in async mode, what it
# never received is lost. A lab with `up --max-lag` below it shows the other side: no leader at all.
LAG_TARGET_BYTES = 512 * 1024
LAG_WAIT_S = 20.0   # sync and strict keep the standby close (commits wait for it): cut anyway after this
SLOW_LINK_SHARE = 0.5   # the standby's link carries half of the WAL the leader writes


def _isolate_leader_lagging(act: Act) -> Done:
    lab = act.ctx
    cluster = lab.cluster()
    if cluster.leader_name is None or not [m for m in cluster.replicas if m.state == "streaming"]:
        raise LabError("a lagging-standby drill needs a leader and a streaming standby; `pgha-lab status` shows "
                       "the lab.")
    leader = lab.topology.node(cluster.leader_name)
    standby = next(m.name for m in cluster.replicas if m.state == "streaming")
    p, max_lag = lab.profile, lab.settings.max_lag
    lag_sql = ("select coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn), 0)::bigint "
               "from pg_stat_replication where application_name = %s")
    with sql.connect(lab, leader) as conn:
        def wal_now() -> int:
            return int(one_row(conn.execute("select pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"))[0])
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
        act.run("degrade", standby, rate=f"{bits // 1000}kbit")
        deadline = time.monotonic() + LAG_WAIT_S
        lag = 0
        while time.monotonic() < deadline:
            row = conn.execute(lag_sql, (standby,)).fetchone()
            lag = int(row[0]) if row else lag
            if lag >= target:
                break
            time.sleep(0.05)
    cut = act.run("isolate", leader.name)
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
    return Done(f"{standby}'s link slowed to {human_rate(bits)} (half the {wal_bytes_s / 1e6:.2f} MB/s of WAL "
                f"written); {cut.done} with {standby} {lag / 1024:.0f} KiB behind",
                expectation=expectations.from_plan(lab, plan), node=leader.name, role="leader", extra_targets=[standby],
                figures={"standby_lag_at_cut_bytes": lag, "slow_link_bits": bits, "wal_bytes_s": round(wal_bytes_s)})


def _require_disks(lab: LabContext) -> None:
    if lab.topology.db_disk_size is None:
        raise LabError(NO_OWN_DISK + ".")


# -- the catalogue -------------------------------------------------------------------------------
FAILOVER_TEXT = f"ttl + loop_wait + promotion ({PROMOTE_S:g} s) + HAProxy rise checks"
# A fault that takes the leader away lasts past the fast profile's failover bound (~29 s), so the
# expected failover can happen before the heal undoes the fault.
LEADER_LOST_S = (32.0, 45.0)


def _failover(cuts_leader: bool = False, **kw) -> Drill:
    return Drill(bound_s=lambda p: p.failover_bound_s(), bound_text=FAILOVER_TEXT, cuts_leader=cuts_leader, **kw)


def _leader_cut_from_etcd(failsafe: bool, replication: str, p: Profile) -> MatrixOutcome | None:
    if not failsafe:
        return None
    return MatrixOutcome("failsafe on: the leader cut off from etcd still reaches every member, so it keeps running "
                         "as primary without the leader key (its writes are keyless acks: nobody holds the key) and "
                         "no member takes over (write downtime at most 3 s)", "flow")


def _quorum_lost(failsafe: bool, replication: str, p: Profile) -> MatrixOutcome:
    if failsafe:
        return MatrixOutcome("failsafe on: the primary keeps accepting writes through the etcd outage while it "
                             "reaches every member (write downtime at most 3 s)", "flow")
    return MatrixOutcome(f"failsafe off: without an etcd quorum the primary demotes within ttl ({p.ttl} s); writes "
                         "stop until etcd returns", "stop")


def _quorum_lost_member_cut(failsafe: bool, replication: str, p: Profile) -> MatrixOutcome:
    return MatrixOutcome(f"etcd quorum lost and a replica cut off: the primary cannot reach every member, so even "
                         f"with failsafe {'on' if failsafe else 'off'} it demotes (writes stop for at least "
                         f"retry_timeout {p.retry_timeout} s)", "stop")


def _replica_lost(failsafe: bool, replication: str, p: Profile) -> MatrixOutcome | None:
    if replication != "strict":
        return None
    return MatrixOutcome("strict: with the synchronous standby gone commits wait (hang) until it is back", "hang")


def on(base: str, name: str, summary: str, target: str | None, **kw) -> Fault:
    """`base` offered on a chosen target (kill on the leader: kill-leader); its heal is the base's."""
    options = kw.pop("options", {})
    return Fault(name, summary, _via, base=base, takes=NO_NODE, target=target, options=options, **kw)


CATALOGUE: dict[str, Fault] = {}


def register(fault: Fault) -> Fault:
    """Add a fault; its name must be new, and its campaign spellings new among the campaign's (a campaign
    alias may be a chaos action's name: `--faults freeze-patroni` means the leader's)."""
    campaign = {n for f in CATALOGUE.values() if f.campaign for n in (f.name, *f.campaign.aliases)}
    if fault.name in CATALOGUE or fault.name == HEAL_ALL:
        raise ValueError(f"fault name {fault.name!r} is already taken")
    if fault.campaign:
        clash = next((n for n in (fault.name, *fault.campaign.aliases) if n in campaign), None)
        if clash:
            raise ValueError(f"campaign fault name {clash!r} is already taken")
        if fault.campaign.draw in {f.campaign.draw for f in CATALOGUE.values() if f.campaign}:
            raise ValueError(f"campaign draw {fault.campaign.draw} is already taken")
    CATALOGUE[fault.name] = fault
    return fault


def unregister(name: str) -> None:
    CATALOGUE.pop(name, None)


for _fault in (
    Fault("switchover", "planned switchover through Patroni's REST API", _switchover, takes=NO_NODE,
          drill=Drill(bound_s=lambda p: p.switchover_bound_s(),
                      bound_text=f"2 x loop_wait + promotion ({PROMOTE_S:g} s) + HAProxy rise checks"),
          campaign=Campaign(8, (0, 0), summary="a planned switchover")),
    Fault("kill", "power cut (docker kill)", _kill, lost("lost power"), heal="start", chaos=True,
          buttons=(Button("kill", 1, danger=True),)),
    on("kill", "kill-leader", "power cut on the leader (docker kill)", "leader",
       drill=_failover(cuts_leader=True),
       campaign=Campaign(1, LEADER_LOST_S, summary="power cut on the leader, booted again at its heal")),
    Fault("pause", "the VM freezes (docker pause)", _pause, lost("froze"), heal="resume", chaos=True,
          buttons=(Button("pause", 1, danger=True),)),
    Fault("resume", "the frozen VM thaws", _resume, returned, chaos=True, buttons=(Button("resume", 2),)),
    on("pause", "pause-leader", "the leader's VM freezes (docker pause)", "leader",
       drill=_failover(cuts_leader=True),
       campaign=Campaign(3, LEADER_LOST_S, summary="the leader's VM frozen, thawed at its heal")),
    Fault("stop", "clean shutdown (docker stop)", _stop, lost("was shut down"), heal="start", chaos=True,
          buttons=(Button("stop", 1, danger=True),)),
    Fault("start", "boot a stopped or killed node", _start, returned, boots=True, chaos=True,
          buttons=(Button("start", 2),)),
    on("stop", "stop-leader", "clean shutdown of the leader's VM (docker stop)", "leader",
       drill=_failover(cuts_leader=True)),
    Fault("isolate", "the cable pulled (docker network disconnect)", _isolate, lost("lost its network"), heal="heal",
          chaos=True, buttons=(Button("isolate", 1, danger=True),)),
    Fault("heal", "the cable plugged back", _heal, returned, chaos=True, buttons=(Button("heal", 2),)),
    on("isolate", "isolate-leader", "the leader's cable pulled (docker network disconnect)", "leader",
       drill=_failover(cuts_leader=True)),
    Fault("isolate-leader-lagging", "the standby on a slow link (half the WAL rate), the leader's cable pulled "
          f"once the standby is {LAG_TARGET_BYTES // 1024} KiB behind, or past a smaller max lag (needs --bulk-rate)",
          _isolate_leader_lagging, takes=NO_NODE,
          drill=Drill(bound_s=lambda p: p.failover_bound_s() + LAG_WAIT_S, needs_bulk=True, cuts_leader=True,
                      reports_figures=True,
                      bound_text=FAILOVER_TEXT + f" + up to {LAG_WAIT_S:g} s for the lag to build")),
    on("partition", "partition-leader-from-etcd", "the leader cut off from every etcd member (iptables)", "leader",
       options={"peers": "etcd"}, drill=_failover(cuts_leader=True, in_matrix=_leader_cut_from_etcd),
       campaign=Campaign(6, LEADER_LOST_S, summary="the leader cut off from etcd, reconnected at its heal",
                         aliases=("partition-leader",))),
    on("kill", "kill-replica", "power cut on the synchronous standby", "replica",
       # Patroni drops a standby from synchronous_standby_names once its member key expires.
       drill=Drill(observe_s=lambda p: p.ttl + 2 * p.loop_wait, leader_changes=False, in_matrix=_replica_lost),
       campaign=Campaign(2, (15, 30), summary="power cut on a replica, booted again at its heal", overlaps=True)),
    Fault("kill-postgres", "the leader's postmaster killed, Patroni left running", _kill_postgres,
          _expect_kill_postgres, takes=DB_NODE, target="leader", chaos=True,
          buttons=(Button("kill-postgres", 2, danger=True, kinds=("dbnode",)),),
          drill=Drill(observe_s=lambda p: 2 * p.loop_wait + p.haproxy_mark_down_s, leader_changes=False,
                      bound_s=lambda p: p.haproxy_mark_down_s + p.loop_wait + PROMOTE_S + p.haproxy_mark_up_s,
                      bound_text=f"HAProxy fall checks + loop_wait + restart ({PROMOTE_S:g} s) + HAProxy rise checks"),
          campaign=Campaign(7, (0, 0), summary="the leader's postmaster killed (Patroni restarts it)", overlaps=True)),
    Fault("partition", "a partial cut with iptables inside the node", _partition, _expect_partition,
          in_node_network=True, heal="partition", heal_options={"clear": True}, chaos=True,
          buttons=(Button("partition", 3, danger=True, option="peers", input_id="partition-from", input_label="from"),
                   Button("partition --clear", 3, clear=True))),
    Fault("degrade", "packet loss, a slow link or delay (iptables, tc)", _degrade, _expect_degrade,
          in_node_network=True, heal="degrade", heal_options={"clear": True}, chaos=True,
          buttons=(Button("degrade", 4, danger=True, option="loss", value="10%", input_id="degrade-loss",
                          input_label="loss"),
                   Button("degrade --clear", 4, clear=True),
                   Button("slow link", 5, danger=True, kinds=("dbnode", "etcd"), option="rate", value="2mbit",
                          input_id="degrade-rate", input_label="rate", tag="degrade-rate"))),
    Fault("etcd-minority-loss", "power cut on one etcd member (the raft leader)", _etcd_kill(lambda ctx: 1),
          takes=NO_NODE, drill=Drill(observe_s=lambda p: float(p.ttl), leader_changes=False)),
    Fault("etcd-quorum-loss", "power cut on a majority of etcd members", _etcd_kill(_quorum), takes=NO_NODE,
          drill=Drill(observe_s=lambda p: p.ttl + p.loop_wait + p.haproxy_mark_down_s + 5.0, hold=True,
                      in_matrix=_quorum_lost)),
    Fault("etcd-quorum-loss-member-cut", "a replica cut off, then a majority of etcd members lost",
          _quorum_loss_member_cut, takes=NO_NODE,
          drill=Drill(observe_s=lambda p: max(p.ttl + p.loop_wait + p.haproxy_mark_down_s, WAL_SENDER_TIMEOUT_S) + 5.0,
                      hold=True, in_matrix=_quorum_lost_member_cut)),
    Fault("freeze-patroni", "SIGSTOP to Patroni alone", _patroni_signal(True), _db_plan(rules.patroni_frozen),
          takes=DB_NODE, heal="thaw-patroni", chaos=True),
    Fault("thaw-patroni", "SIGCONT to a frozen Patroni", _patroni_signal(False), returned, takes=DB_NODE, chaos=True),
    on("freeze-patroni", "freeze-patroni-leader", "SIGSTOP to the leader's Patroni (PostgreSQL keeps running)",
       "leader", drill=_failover(),
       campaign=Campaign(4, LEADER_LOST_S, summary="SIGSTOP to the leader's Patroni, SIGCONT at its heal",
                         aliases=("freeze-patroni",))),
    Fault("hang-postgres", "SIGSTOP to the postmaster and every backend", _postgres_signal(True),
          _db_plan(rules.postgres_hung), takes=DB_NODE, heal="release-postgres", chaos=True),
    Fault("release-postgres", "SIGCONT to a hung PostgreSQL", _postgres_signal(False), returned, takes=DB_NODE,
          chaos=True),
    on("hang-postgres", "hang-postgres-leader", "SIGSTOP to the leader's postmaster and every backend", "leader",
       drill=_failover(),
       campaign=Campaign(5, LEADER_LOST_S, summary="SIGSTOP to the leader's PostgreSQL, SIGCONT at its heal",
                         aliases=("hang-postgres",))),
    Fault("kill-haproxy", "the single entry point killed, started at its heal", _kill_haproxy, lost("lost power"),
          takes=HAPROXY_NODE, heal="start-haproxy", chaos=True,
          drill=Drill(summary="the single entry point killed for 5 s, then started (heal)",
                      observe_s=lambda p: 5.0, hold=True, leader_changes=False),
          campaign=Campaign(10, (3, 10), overlaps=True, min_db=1)),
    Fault("start-haproxy", "a killed HAProxy started", _start_haproxy, returned, takes=HAPROXY_NODE, boots=True,
          chaos=True),
    on("kill-haproxy", "kill-haproxy-vip", "the HAProxy holding the virtual address killed; keepalived moves it to "
       "the other", None,
       drill=Drill(bound_s=lambda p: vip_failover_bound_s(), leader_changes=False, requires=vip.require_pair,
                   bound_text="3 x advert_int + the backup's skew time + 1 s for gratuitous ARP and a new connection")),
    Fault("cancel-sync-wait", "the sync standby frozen, waiting commits cancelled (pg_cancel_backend), standby thawed",
          _experiment(experiments.cancel_sync_wait, running=True), takes=DB_NODE, target="leader", chaos=True,
          drill=Drill(leader_changes=False),
          campaign=Campaign(9, (0, 0), summary="a commit's synchronous-replication wait cancelled", overlaps=True)),
    Fault("block-switchover", "a session holds a lock while a switchover is asked for",
          _experiment(experiments.block_switchover, running=False), takes=DB_NODE, target="leader", chaos=True),
    Fault("flap", "a partition toggled every N seconds for M seconds", _flap, _db_plan(rules.flapping),
          in_node_network=True, chaos=True),
    Fault("fill-disk", "a db node's own data disk filled by a file", _fill_disk, _db_plan(rules.disk_full),
          takes=DB_NODE, needs_disks=True, heal="free-disk", chaos=True),
    Fault("free-disk", "the filler removed", _free_disk, _expect_free_disk, takes=DB_NODE, needs_disks=True,
          chaos=True),
    # Until healed: Patroni fails over for a lost node, not for a full disk (while WAL still has room).
    on("fill-disk", "fill-disk-leader", "the leader's data disk filled to the last block, then freed (a lab made "
       "with `up --disk-size`)", "leader", drill=Drill(leader_changes=False, requires=_require_disks),
       campaign=Campaign(13, LEADER_LOST_S, summary="the leader's data disk filled, freed at its heal",
                         needs_disks=True, by_default=False)),
    on("flap", "flap-leader", "the leader cut off from etcd and back every 4 s for 16 s", "leader",
       options={"peers": "etcd", "every": 4, "duration": 16}, drill=Drill()),
    on("flap", "flap-replica", "a replica cut off from etcd and back every 3 s", "replica",
       options={"peers": "etcd", "every": 3}, campaign=Campaign(11, (9, 15), overlaps=True, timed=True)),
    on("kill", "kill-etcd", "power cut on one etcd member, booted at its heal", None,
       campaign=Campaign(12, (10, 25), overlaps=True, min_db=1, min_etcd=3, picks_etcd=True)),
):
    register(_fault)


# -- what the front ends read --------------------------------------------------------------------
def get(name: str) -> Fault | None:
    return CATALOGUE.get(name)


def chaos_names() -> list[str]:
    """`pgha-lab chaos`'s actions, in catalogue order (heal-all is not a fault: it undoes them all)."""
    return [f.name for f in CATALOGUE.values() if f.chaos]


def needs_target(fault: Fault) -> bool:
    """Whether a front end must be told the node: not for HAProxy (the lab's one, or the pair's
    natural choice) nor for a fault that picks its own nodes."""
    return fault.takes not in (HAPROXY_NODE, NO_NODE)


def page_faults() -> list[Fault]:
    """The dashboard's: the chaos CLI's faults (its API takes each; the buttons draw those that have some)."""
    return [f for f in CATALOGUE.values() if f.chaos]


def drills() -> list[Fault]:
    return [f for f in CATALOGUE.values() if f.drill is not None]


def campaign_faults() -> list[Fault]:
    """The campaign's faults in draw order (a seed picks by position)."""
    return sorted((f for f in CATALOGUE.values() if f.campaign is not None),
                  key=lambda f: f.campaign.draw if f.campaign else 0)


def campaign_fault(name: str) -> Fault | None:
    """A campaign fault by its name or an earlier spelling."""
    return next((f for f in campaign_faults() if f.campaign and name in (f.name, *f.campaign.aliases)), None)


def heal_of(fault: Fault) -> tuple[str, dict] | None:
    """(the fault that undoes it, its options) on the same target: a chosen-target fault heals as its base."""
    while fault.heal is None and fault.base is not None:
        fault = CATALOGUE[fault.base]
    return (fault.heal, dict(fault.heal_options)) if fault.heal else None
