"""Patroni's dynamic configuration: the two diffs a change is made of (pure)."""
from __future__ import annotations

from pgha_lab import dynamic_config
from pgha_lab.probes import Member


def test_a_merging_patch_sets_only_what_the_live_configuration_lacks():
    live = {"ttl": 30, "loop_wait": 10, "postgresql": {"use_pg_rewind": True, "parameters": {"x": "1"}}}
    wanted = {"ttl": 20, "loop_wait": 10, "postgresql": {"use_pg_rewind": False}}
    assert dynamic_config.patch_merging(live, wanted) == {"ttl": 20, "postgresql": {"use_pg_rewind": False}}
    # A key Patroni does not hold counts as its default: nothing to send for failsafe off.
    assert dynamic_config.patch_merging({}, {"failsafe_mode": False, "maximum_lag_on_failover": dynamic_config.DEFAULT_MAX_LAG}) == {}
    assert dynamic_config.patch_merging({}, {"failsafe_mode": True}) == {"failsafe_mode": True}


def test_a_replacing_patch_nulls_what_the_wanted_configuration_does_not_name():
    live = {"ttl": 30, "pause": True, "postgresql": {"parameters": {"a": "1", "b": "2"}}}
    wanted = {"ttl": 30, "postgresql": {"parameters": {"a": "1"}}}
    assert dynamic_config.patch_replacing(live, wanted) == {"pause": None, "postgresql": {"parameters": {"b": None}}}
    assert dynamic_config.patch_merging(live, wanted) == {}   # merging leaves the extra keys alone


def test_one_member_type_answers_the_rules_questions_from_its_tags_and_lag():
    m = Member("dbnode2", "", "replica", "streaming", 3, lag="unknown", tags={"failover_priority": 0})
    assert m.lag_bytes is None and not m.nofailover and m.failover_priority == 0 and not m.may_promote
    assert Member("dbnode2", "", "replica", "streaming", receive_lag=42).lag_bytes == 42


def config_reads(path) -> list[str]:
    """Where a file names Patroni's /config endpoint or key itself: "/config", or an f-string ending so."""
    import ast
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and node.value == "/config":
            found.append(f"{path.name}:{node.lineno}")
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[-1], ast.Constant) \
                and node.values[-1].value == "/config":   # f"/service/{scope}/config"
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_only_dynamic_config_reads_or_patches_patronis_configuration():
    from pathlib import Path
    package = Path(dynamic_config.__file__).parent
    readers = [hit for p in sorted(package.rglob("*.py")) if p.name != "dynamic_config.py" for hit in config_reads(p)]
    assert readers == [], f"Patroni's /config read by hand outside dynamic_config.py: {readers}"
