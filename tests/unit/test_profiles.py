"""Timing profiles: within Patroni's limits, and the bounds drills derive from them."""
from __future__ import annotations

from dataclasses import replace

import pytest

from pgha_lab import profiles
from pgha_lab.errors import LabError


def test_seed_is_patronis_defaults_and_a_production_haproxy_check():
    s = profiles.get("seed")
    assert (s.ttl, s.loop_wait, s.retry_timeout) == (30, 10, 10)
    assert (s.check_inter_ms, s.check_fall, s.check_rise) == (3000, 3, 2)


def test_fast_is_patronis_smallest_ttl_and_loop_wait_with_1s_checks():
    f = profiles.get("fast")
    assert (f.ttl, f.loop_wait, f.retry_timeout) == (20, 1, 6)
    assert f.check_inter_ms == 1000


@pytest.mark.parametrize("name", list(profiles.PROFILES))
def test_every_profile_keeps_patronis_rules(name):
    p = profiles.get(name)
    p.validate()
    assert p.loop_wait + 2 * p.retry_timeout <= p.ttl


@pytest.mark.parametrize("name", list(profiles.PROFILES))
def test_every_profile_lets_the_leader_outlast_an_etcd_election(name):
    # Patroni gives each of the three etcd members retry_timeout / 3 to answer; one of them must
    # outlive the election that follows the raft leader's death.
    assert profiles.get(name).retry_timeout / 3 >= profiles.ETCD_WORST_ELECTION_S


@pytest.mark.parametrize("change, fragment", [
    (dict(ttl=19), "ttl >= 20"),
    (dict(retry_timeout=2), "retry_timeout >= 3"),
    (dict(loop_wait=0), "loop_wait >= 1"),
    (dict(ttl=20, loop_wait=10, retry_timeout=10), "must not exceed ttl (20)"),
])
def test_values_patroni_would_refuse_are_refused(change, fragment):
    with pytest.raises(LabError) as exc:
        replace(profiles.SEED, **change).validate()
    assert fragment in str(exc.value)


def test_bounds_shrink_with_the_fast_profile():
    seed, fast = profiles.SEED, profiles.FAST
    assert fast.failover_bound_s() < seed.failover_bound_s()
    assert fast.switchover_bound_s() < seed.switchover_bound_s()
    # a power cut cannot be noticed before the leader key runs out
    assert seed.failover_bound_s() > seed.ttl
    assert seed.haproxy_mark_down_s == 12.0 and seed.haproxy_mark_up_s == 9.0


@pytest.mark.parametrize("name, failover_s, switchover_s, mark_down_s, mark_up_s", [
    # seed: ttl 30 + loop_wait 10 + promotion 5 + rise (2 + 1) x 3 s; switchover 2 x 10 + 5 + 9.
    ("seed", 54.0, 34.0, 12.0, 9.0),
    # fast: ttl 20 + loop_wait 1 + promotion 5 + rise (2 + 1) x 1 s; switchover 2 x 1 + 5 + 3.
    ("fast", 29.0, 10.0, 4.0, 3.0),
])
def test_bounds_are_pinned_to_numbers(name, failover_s, switchover_s, mark_down_s, mark_up_s):
    # Numbers worked out by hand, not the formula again: an inflated formula (a bound that lets
    # any drill pass) fails here, and so does a report that compares against a changed one.
    p = profiles.get(name)
    assert p.failover_bound_s() == failover_s
    assert p.switchover_bound_s() == switchover_s
    assert (p.haproxy_mark_down_s, p.haproxy_mark_up_s) == (mark_down_s, mark_up_s)
    assert p.as_dict()["failover_bound_s"] == failover_s and p.as_dict()["switchover_bound_s"] == switchover_s


def test_an_unknown_profile_gets_one_sentence():
    with pytest.raises(LabError) as exc:
        profiles.get("turbo")
    assert str(exc.value) == "unknown timing profile 'turbo'; choose one of: seed, fast, instant."
