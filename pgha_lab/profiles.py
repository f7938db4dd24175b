"""Timing profiles: Patroni's HA timings and HAProxy's health-check cadence, plus the bounds they imply.

`seed` keeps what a production guide ships (Patroni's defaults, HAProxy `inter 3s fall 3 rise 2`);
`fast` uses Patroni's smallest ttl and loop_wait, so drills on a laptop finish sooner, with a
retry_timeout that outlasts an etcd leader election.
Drills derive their expected downtime from the same numbers that render the configs.
"""
from __future__ import annotations

from dataclasses import dataclass

from pgha_lab.errors import LabError

# Patroni 4's validator (bootstrap.dcs) refuses anything lower, and its docs add the rule
# loop_wait + 2 * retry_timeout <= ttl so a leader can retry the DCS twice before its key expires.
PATRONI_MIN_TTL = 20
PATRONI_MIN_LOOP_WAIT = 1
PATRONI_MIN_RETRY_TIMEOUT = 3

# Patroni splits retry_timeout across the etcd members it tries, at least 1 s each (its etcd client's
# _calculate_timeouts). When etcd's raft leader dies, the others answer no write until they elect a
# new one, after an election timeout randomized between 1 and 2 s by default. Patroni's minimum of
# 3 s gives each of three members 1 s, so one etcd member's power cut could cost the primary its
# key (seen in CI: a failover on etcd-minority-loss); 6 s gives each 2 s.
ETCD_WORST_ELECTION_S = 2.0
FAST_RETRY_TIMEOUT = 6

# Seconds every downtime bound allows PostgreSQL itself: a promotion, or a restart after a crash.
PROMOTE_S = 5.0


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    ttl: int                 # seconds the leader key lives without renewal
    loop_wait: int           # seconds between HA loop runs
    retry_timeout: int       # seconds Patroni retries the DCS and PostgreSQL before acting
    check_inter_ms: int      # HAProxy health-check interval
    check_fall: int          # failed checks before a server is marked down
    check_rise: int          # passed checks before a server is marked up
    check_timeout_ms: int    # one health check's deadline
    stats_refresh_s: int     # the stats page's auto refresh
    # HAProxy checks a server in transition every fastinter, a server that is down every downinter
    # (0: both as inter); `runtime_api` opens HAProxy's admin API to the lab network, so Patroni's
    # on_role_change callback can switch 5432 at once instead of waiting for the checks.
    check_fastinter_ms: int = 0
    check_downinter_ms: int = 0
    runtime_api: bool = False
    # Patroni answers 200 on /primary while it holds the leader key, whatever PostgreSQL does (a
    # switchover keeps the key ~1 s after the shutdown; a new leader holds it before its promotion
    # ends): also require "state": "running" and "role": "primary" in the answer.
    check_running: bool = False

    def validate(self) -> None:
        if (self.ttl < PATRONI_MIN_TTL or self.loop_wait < PATRONI_MIN_LOOP_WAIT
                or self.retry_timeout < PATRONI_MIN_RETRY_TIMEOUT):
            raise LabError(f"profile {self.name}: Patroni needs ttl >= "
                           f"{PATRONI_MIN_TTL}, loop_wait >= {PATRONI_MIN_LOOP_WAIT} "
                           f"and retry_timeout >= {PATRONI_MIN_RETRY_TIMEOUT}.")
        if self.loop_wait + 2 * self.retry_timeout > self.ttl:
            raise LabError(f"profile {self.name}: loop_wait + 2 * retry_timeout "
                           f"({self.loop_wait + 2 * self.retry_timeout}) "
                           f"must not exceed ttl ({self.ttl}).")
        if min(self.check_inter_ms, self.check_fall, self.check_rise, self.check_timeout_ms) < 1:
            raise LabError(f"profile {self.name}: HAProxy's check interval, fall, rise and timeout must be positive.")

    # -- bounds the drills compare against -------------------------------------------------
    @property
    def haproxy_mark_down_s(self) -> float:
        """Worst case for HAProxy to stop sending to a server whose check started failing with an
        answer (Patroni's REST API saying 503). A server that vanished fails each check only at
        its timeout, so there it is fall * (inter + timeout); no bound here relies on that case."""
        return (self.check_inter_ms + (self.check_fall - 1) * self.fastinter_ms + self.check_timeout_ms) / 1000

    @property
    def haproxy_mark_up_s(self) -> float:
        """Worst case for HAProxy to start sending to a server whose check started passing
        (one interval may pass before the first check, then `rise` passes)."""
        return (self.downinter_ms + self.check_rise * self.fastinter_ms) / 1000

    @property
    def fastinter_ms(self) -> int:
        return self.check_fastinter_ms or self.check_inter_ms

    @property
    def downinter_ms(self) -> int:
        return self.check_downinter_ms or self.check_inter_ms

    def failover_bound_s(self, promote_s: float = PROMOTE_S) -> float:
        """Upper bound on write downtime after the primary dies without a word (power cut):
        its leader key lives up to ttl, a replica notices within one loop, promotes, and
        HAProxy then needs its rise checks. `promote_s` covers PostgreSQL's promotion itself."""
        return self.ttl + self.loop_wait + promote_s + self.haproxy_mark_up_s

    def switchover_bound_s(self, promote_s: float = PROMOTE_S) -> float:
        """Upper bound on write downtime for a planned switchover: the old primary steps down
        (its check fails at once, nothing waits for ttl), the candidate promotes within a loop or two."""
        return 2 * self.loop_wait + promote_s + self.haproxy_mark_up_s

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "description": self.description, "ttl": self.ttl,
                "loop_wait": self.loop_wait, "retry_timeout": self.retry_timeout,
                "check_inter_ms": self.check_inter_ms, "check_fall": self.check_fall,
                "check_rise": self.check_rise, "check_timeout_ms": self.check_timeout_ms,
                "check_fastinter_ms": self.fastinter_ms, "check_downinter_ms": self.downinter_ms,
                "runtime_api": self.runtime_api, "check_running": self.check_running,
                "failover_bound_s": self.failover_bound_s(), "switchover_bound_s": self.switchover_bound_s()}


SEED = Profile(
    name="seed", description="production defaults: Patroni ttl 30 / loop_wait 10 "
                             "/ retry_timeout 10, HAProxy inter 3s fall 3 rise 2",
    ttl=30, loop_wait=10, retry_timeout=10,
    check_inter_ms=3000, check_fall=3, check_rise=2, check_timeout_ms=3000, stats_refresh_s=5)

FAST = Profile(
    name="fast", description="Patroni's smallest ttl and loop_wait (ttl 20 / "
                             "loop_wait 1 / retry_timeout 6) and 1 s HAProxy checks",
    ttl=PATRONI_MIN_TTL, loop_wait=PATRONI_MIN_LOOP_WAIT, retry_timeout=FAST_RETRY_TIMEOUT,
    check_inter_ms=1000, check_fall=3, check_rise=2, check_timeout_ms=1000, stats_refresh_s=1)

# Clients on the new primary as fast as HAProxy and Patroni allow: Patroni's fast timings, checks
# every 500 ms (100 ms while a server changes state, rise 1), and on_role_change telling HAProxy's
# runtime API to take the new primary at once and drop every other server (and Patroni's before_stop
# hook dropping a primary about to stop). A lost callback leaves the checks in charge, which is the
# `fast` behaviour with quicker checks that also want PostgreSQL running.
INSTANT = Profile(
    name="instant", description="fast's Patroni timings, HAProxy checks every 500 ms (fastinter 100 ms, rise 1) "
                                "and Patroni's on_role_change callback and before_stop hook switching 5432 through "
                                "HAProxy's runtime API",
    ttl=PATRONI_MIN_TTL, loop_wait=PATRONI_MIN_LOOP_WAIT, retry_timeout=FAST_RETRY_TIMEOUT,
    check_inter_ms=500, check_fall=2, check_rise=1, check_timeout_ms=500, stats_refresh_s=1,
    check_fastinter_ms=100, check_downinter_ms=250, runtime_api=True, check_running=True)

PROFILES: dict[str, Profile] = {p.name: p for p in (SEED, FAST, INSTANT)}
DEFAULT = SEED.name


def get(name: str) -> Profile:
    """The profile called `name`, or LabError naming the valid ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise LabError(f"unknown timing profile {name!r}; choose one of: {', '.join(PROFILES)}.") from None
