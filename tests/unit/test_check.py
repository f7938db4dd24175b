"""The independent history checker: each violation kind found on a synthetic history built to hold
it, a clean history passing, the format's loader and writer, and the command line's exit codes."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pgha_lab.check import checker
from pgha_lab.check.checker import check
from pgha_lab.check.history import (FinalState, History, HistoryError, HistoryWriter, Operation, load_finals,
                                    load_history, write_finals, write_history)

REPO = Path(__file__).resolve().parents[2]


# -- building histories --------------------------------------------------------------------------
def write(client: str, value: int, start: float, end: float, result: str = "ok", server: str = "n1") -> Operation:
    """A register write: each client writes its own key, named after it."""
    return Operation("write", client, client, value, start, end, result,
                     server if result == "ok" else "", port="primary")


def append(client: str, key: str, value: int, start: float, end: float, result: str = "ok",
           server: str = "n1") -> Operation:
    return Operation("append", client, key, value, start, end, result, server if result == "ok" else "", port="primary")


def read(client: str, key: str, value, start: float, end: float, port: str = "replica", server: str = "n2",
         result: str = "ok") -> Operation:
    return Operation("read", client, key, value, start, end, result, server, port=port)


def primary(**rows: list[int]) -> FinalState:
    return FinalState("primary", rows)


def replica(name: str, **rows: list[int]) -> FinalState:
    return FinalState(name, rows)


def clean_history() -> tuple[list[Operation], list[FinalState]]:
    """Two register writers, two list appenders and readers on both ports, all consistent: writes
    on n1, a failover, writes on n2; one write failed before sending, one is unknown and lost."""
    ops = [
        write("c1", 1, 0.0, 0.1), write("c2", 1, 0.05, 0.15), write("c1", 2, 0.2, 0.3),
        write("c1", 3, 0.4, 5.0, result="fail"),
        write("c2", 2, 0.3, 4.0, result="unknown"),
        write("c1", 4, 5.1, 5.2, server="n2"), write("c2", 3, 5.15, 5.25, server="n2"),
        append("a1", "L", 10, 0.0, 0.1), append("a2", "L", 20, 0.05, 0.12), append("a1", "L", 11, 0.2, 0.3),
        append("a1", "L", 12, 5.3, 5.4, server="n2"),
        read("r1", "c1", 2, 0.35, 0.36, port="primary", server="n1"),
        read("r2", "L", [10, 20, 11], 0.4, 0.45, server="n2"),
        read("r2", "c2", None, 0.0, 0.01, server="n2"),
        read("r1", "L", [10, 20, 11, 12], 5.5, 5.6, port="primary", server="n2"),
    ]
    rows = {"c1": [1, 2, 4], "c2": [1, 3], "L": [10, 20, 11, 12]}
    return ops, [primary(**rows), replica("n1", **rows), replica("n3", **rows)]


def only(verdict: checker.Verdict, kind: checker.Kind) -> int:
    """The kind's count, after asserting no other violation kind showed up."""
    others = [f.kind.name for f in verdict.violations if f.kind is not kind]
    assert not others, f"unexpected violations {others}: {verdict.summary}"
    return verdict.count(kind)


# -- the verdict -------------------------------------------------------------------------------
def test_a_clean_history_passes_with_every_count_zero_but_the_allowed_one():
    ops, finals = clean_history()
    verdict = check(ops, finals)
    assert verdict.clean, verdict.table()
    assert [f.kind for f in verdict.findings] == list(checker.KINDS)
    assert {f.kind.name: f.count for f in verdict.findings if f.count} == {}
    assert verdict.summary == f"clean: no violation in {len(ops)} operations"


def test_lost_counts_acknowledged_writes_and_appends_absent_from_the_primary():
    ops = [op for op in clean_history()[0] if op.op != "read"]   # reads of the lost values would vanish too
    verdict = check(ops, [primary(c1=[1, 4], c2=[1, 3], L=[10, 20, 12])])   # c1=2 and L=11 gone
    assert only(verdict, checker.LOST) == 2
    assert not verdict.clean
    assert any("c1 write c1=2" in e for e in verdict.finding(checker.LOST).examples)


def test_a_failed_or_unknown_write_absent_is_not_lost():
    ops = [write("c1", 1, 0, 1, result="fail"), write("c1", 2, 1, 2, result="unknown")]
    assert check(ops, [primary()]).clean


def test_phantom_is_a_write_told_failed_yet_present():
    ops = [write("c1", 1, 0, 1), write("c1", 2, 1, 2, result="fail"), write("c1", 3, 2, 3, result="fail")]
    verdict = check(ops, [primary(c1=[1, 2])])
    assert only(verdict, checker.PHANTOM) == 1
    assert not verdict.clean


def test_unknown_but_present_is_counted_and_allowed():
    ops = [write("c1", 1, 0, 1, result="unknown"), append("a", "L", 5, 0, 1, result="unknown"),
           write("c2", 1, 0, 1, result="unknown")]
    verdict = check(ops, [primary(c1=[1], L=[5])])
    assert verdict.count(checker.UNKNOWN_PRESENT) == 2
    assert verdict.clean
    assert verdict.summary == "clean: no violation in 3 operations (allowed: unknown-present 2)"


def test_single_acker_counts_overlapping_acknowledgements_from_two_servers():
    ops = [write("c1", 1, 0.0, 10.0, server="n1"),
           write("c2", 1, 1.0, 2.0, server="n2"), write("c2", 2, 3.0, 4.0, server="n2")]
    verdict = check(ops, [primary(c1=[1], c2=[1, 2])])
    assert only(verdict, checker.SINGLE_ACKER) == 2
    assert "overlaps" in verdict.finding(checker.SINGLE_ACKER).examples[0]


def test_single_acker_ignores_touching_intervals_one_server_failures_and_replica_reads():
    ops = [write("c1", 1, 0.0, 1.0, server="n1"), write("c2", 1, 1.0, 2.0, server="n2"),   # touching
           write("c1", 2, 1.5, 1.8, server="n2"),                                            # same server
           write("c3", 1, 1.2, 1.9, result="unknown"),                                       # no acker
           read("r", "c1", 1, 1.1, 1.7, port="replica", server="n3")]                         # replica read
    assert check(ops, [primary(c1=[1, 2], c2=[1])]).clean


def test_single_acker_counts_a_read_through_the_primary_port():
    ops = [write("c1", 1, 0.0, 1.0, server="n1"), read("r", "c1", 1, 0.5, 0.7, port="primary", server="n2")]
    assert only(check(ops, [primary(c1=[1])]), checker.SINGLE_ACKER) == 1


def test_duplicate_counts_each_value_stored_more_than_once_under_a_key():
    ops = [write("c1", 1, 0, 1), write("c1", 2, 1, 2), append("a", "L", 7, 0, 1)]
    verdict = check(ops, [primary(c1=[1, 2, 1, 1], L=[7, 7])])
    assert only(verdict, checker.DUPLICATE) == 2
    assert "c1=1 stored 3 times" in verdict.finding(checker.DUPLICATE).examples


def test_reordered_finds_an_element_stored_before_one_acknowledged_before_it_started():
    ops = [append("a1", "L", 1, 0.0, 1.0), append("a2", "L", 2, 2.0, 3.0), append("a3", "L", 3, 4.0, 5.0)]
    verdict = check(ops, [primary(L=[3, 1, 2])])
    assert only(verdict, checker.REORDERED) == 1
    assert verdict.finding(checker.REORDERED).examples[0].startswith("L: 3 stored before 1")
    assert only(check(ops, [primary(L=[3, 2, 1])]), checker.REORDERED) == 2


def test_reordered_allows_concurrent_appends_in_either_order():
    ops = [append("a1", "L", 1, 0.0, 2.0), append("a2", "L", 2, 1.0, 3.0)]
    assert check(ops, [primary(L=[2, 1])]).clean
    assert check(ops, [primary(L=[1, 2])]).clean


def test_reordered_judges_an_unknown_append_that_committed_but_never_by_its_end():
    before = append("a1", "L", 1, 0.0, 1.0)
    late_unknown = append("a2", "L", 2, 2.0, 3.0, result="unknown")
    assert check([before, late_unknown], [primary(L=[2, 1])]).count(checker.REORDERED) == 1
    # an unknown append may commit after its end: nothing follows from it ending early
    early_unknown = append("a1", "L", 1, 0.0, 1.0, result="unknown")
    assert check([early_unknown, append("a2", "L", 2, 2.0, 3.0)], [primary(L=[2, 1])]).clean


def test_vanished_read_counts_reads_of_values_the_primary_no_longer_holds():
    ops = [write("c1", 1, 0, 1), write("c1", 2, 1, 2, server="n9"), append("a", "L", 5, 0, 1),
           append("a", "L", 6, 1, 2, server="n9", result="unknown"),
           read("r", "c1", 2, 2.5, 2.6, port="primary", server="n9"),
           read("r", "L", [5, 6, 8], 2.5, 2.6, server="n3"),
           read("r", "c1", 1, 2.7, 2.8),                                 # still there
           read("r", "c1", None, 3.0, 3.1, result="fail", server="")]   # saw nothing
    verdict = check(ops, [primary(c1=[1], L=[5])])
    assert verdict.count(checker.VANISHED_READ) == 2
    assert verdict.count(checker.LOST) == 1
    assert any("6, 8 not on the primary" in e for e in verdict.finding(checker.VANISHED_READ).examples)


def test_a_read_of_an_unknown_write_the_failover_discarded_is_counted_apart_and_allowed():
    # As the campaign saw it (CI, hang-postgres-leader): a write whose commit the old primary made locally
    # ended 'unknown' for its client; after the failover and the heal, the old primary, demoted and not
    # yet rewound, served it on the replica port for two seconds; the new primary never had it.
    ops = [write("w2", 91, 18.5, 18.5), write("w2", 115, 21.0, 26.9, result="unknown"),
           write("w2", 389, 55.0, 55.1, server="n2"),
           read("r2", "w2", 115, 57.8, 57.8, server="n1"), read("r2", "w2", 115, 58.3, 58.3, server="n1")]
    verdict = check(ops, [primary(w2=[91, 389])])
    assert verdict.count(checker.DISCARDED_READ) == 2 and verdict.count(checker.VANISHED_READ) == 0
    assert verdict.clean, verdict.summary
    assert "115 not on the primary" in verdict.finding(checker.DISCARDED_READ).examples[0]
    # A value no client was left unsure of stays a violation: an acknowledged one (lost too), or one never sent.
    for gone in (write("w2", 115, 21.0, 21.1), write("w2", 115, 21.0, 21.1, result="fail")):
        judged = check([gone, *ops[2:]], [primary(w2=[389])])
        assert judged.count(checker.VANISHED_READ) == 2 and not judged.clean


def test_divergent_replica_counts_each_replica_key_that_differs():
    ops, _ = clean_history()
    rows = {"c1": [1, 2, 4], "c2": [1, 3], "L": [10, 20, 11, 12]}
    finals = [primary(**rows), replica("n1", **{**rows, "c1": [1, 2], "L": [10, 11, 20, 12]}),
              replica("n3", **{**rows, "c2": [1, 3, 99]}), replica("n4", **rows)]
    verdict = check(ops, finals)
    assert only(verdict, checker.DIVERGENT_REPLICA) == 3
    assert set(verdict.finding(checker.DIVERGENT_REPLICA).examples) == {
        "n1 L: same values in another order", "n1 c1: missing [4]", "n3 c2: extra [99]"}


def test_examples_are_capped_while_the_count_is_not():
    ops = [write("c1", v, v, v + 0.5) for v in range(20)]
    finding = check(ops, [primary()]).finding(checker.LOST)
    assert finding.count == 20 and len(finding.examples) == checker.MAX_EXAMPLES


def test_check_needs_one_final_state_per_source_and_one_from_the_primary():
    with pytest.raises(HistoryError, match="no final state for source 'primary'"):
        check([], [replica("n1")])
    with pytest.raises(HistoryError, match="source 'n1' has more than one final state"):
        check([], [primary(), replica("n1"), replica("n1")])


def test_as_dict_is_plain_json():
    ops, finals = clean_history()
    verdict = check(ops + [write("c9", 1, 0, 1)], finals)
    document = json.loads(json.dumps(verdict.as_dict()))
    assert document["clean"] is False
    assert document["findings"]["lost"]["count"] == 1 and document["findings"]["lost"]["allowed"] is False
    assert list(document["findings"]) == [kind.name for kind in checker.KINDS]


# -- the format ----------------------------------------------------------------------------------
def test_history_and_finals_round_trip(tmp_path):
    ops, finals = clean_history()
    write_history(tmp_path / "h.jsonl", ops, finals)
    assert load_history(tmp_path / "h.jsonl") == History(tuple(ops), tuple(finals))
    write_finals(tmp_path / "f.json", finals)
    assert load_finals(tmp_path / "f.json") == tuple(finals)


def test_the_writer_keeps_lines_whole_across_threads(tmp_path):
    def client(name: str) -> None:
        for value in range(200):
            writer.record(write(name, value, value, value + 0.5))

    with HistoryWriter(tmp_path / "h.jsonl") as writer:
        threads = [threading.Thread(target=client, args=(f"c{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        writer.record_final(primary(c0=[0]))
    history = load_history(tmp_path / "h.jsonl")
    assert len(history.operations) == 800 and history.finals == (primary(c0=[0]),)


@pytest.mark.parametrize("line, problem", [
    ('{"op": "write"', "is not valid JSON"),
    ('[1, 2]', "is not a JSON object"),
    ('{"op": "write", "client": "c", "key": "k", "value": 1, "start": 0, "end": 1}', "missing field 'result'"),
    ('{"op": "write", "client": "c", "key": "k", "value": 1, "start": 0, "end": 1, "result": "ok", "sever": "x"}',
     "unknown field 'sever'"),
    ('{"op": "write", "client": "c", "key": "k", "value": true, "start": 0, "end": 1, "result": "ok"}',
     "field 'value' of a write must be an int"),
    ('{"op": "read", "client": "c", "key": "k", "value": [1, "2"], "start": 0, "end": 1, "result": "ok"}',
     "field 'value' of a read must be an int, null or a list of ints"),
    ('{"op": "write", "client": "c", "key": "k", "value": 1, "start": 2, "end": 1, "result": "ok"}',
     "field 'end' (1.0) is before field 'start' (2.0)"),
    ('{"op": "write", "client": "c", "key": "k", "value": 1, "start": 0, "end": 1, "result": "maybe"}',
     "field 'result' must be one of ok, fail, unknown"),
    ('{"op": "write", "client": "c", "key": "k", "value": 1, "start": 0, "end": 1, "result": "ok", "port": "x"}',
     "field 'port' must be one of primary, replica"),
    ('{"op": "write", "client": "c", "key": "k", "value": 7, "start": 0, "end": 1, "result": "ok"}',
     "value 7 for key 'k' was already written on line 1"),
    ('{"op": "final", "source": "primary", "rows": {"k": [1, null]}}', "key 'k' must hold a list of ints"),
])
def test_a_malformed_line_is_named_with_its_number(tmp_path, line, problem):
    good = '{"op": "write", "client": "c", "key": "k", "value": 7, "start": 0, "end": 1, "result": "ok"}'
    path = tmp_path / "h.jsonl"
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(HistoryError) as caught:
        load_history(path)
    assert str(caught.value).startswith(f"{path} line 3")
    assert problem in str(caught.value)


def test_a_final_file_must_be_an_array_of_source_records(tmp_path):
    path = tmp_path / "f.json"
    path.write_text('{"source": "primary", "rows": {}}')
    with pytest.raises(HistoryError, match="must hold a JSON array"):
        load_finals(path)
    path.write_text('[{"source": "primary", "rows": {}}, {"rows": {}}]')
    with pytest.raises(HistoryError, match="final state 2: missing field 'source'"):
        load_finals(path)


def test_the_checker_imports_only_the_standard_library_and_itself():
    for module in sorted((REPO / "pgha_lab" / "check").glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                assert not isinstance(node, ast.ImportFrom) or node.level == 1, f"{module.name} reaches outside check"
                continue
            for name in names:
                assert name.split(".")[0] in sys.stdlib_module_names, f"{module.name} imports {name}"


# -- the command line --------------------------------------------------------------------------
def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pgha_lab.check", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=60)


def test_cli_exits_0_on_a_clean_history_with_its_finals_inline(tmp_path):
    ops, finals = clean_history()
    write_history(tmp_path / "h.jsonl", ops, finals)
    done = run_cli(tmp_path / "h.jsonl")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split() == ["kind", "count", "allowed", "example"]
    assert done.stdout.rstrip().endswith(f"clean: no violation in {len(ops)} operations")


def test_cli_exits_1_on_a_violation_with_a_separate_final_file(tmp_path):
    ops, finals = clean_history()
    write_history(tmp_path / "h.jsonl", ops + [write("c9", 1, 0.0, 0.1)])
    write_finals(tmp_path / "f.json", finals)
    done = run_cli(tmp_path / "h.jsonl", "--final", tmp_path / "f.json")
    assert done.returncode == 1, done.stderr
    lost_row = next(line for line in done.stdout.splitlines() if line.startswith("lost "))
    assert lost_row.split()[1:3] == ["1", "no"] and "c9 write c9=1" in lost_row
    as_json = run_cli(tmp_path / "h.jsonl", "--final", tmp_path / "f.json", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["findings"]["lost"]["count"] == 1


def test_cli_exits_2_with_one_sentence_naming_the_bad_line_and_changes_nothing(tmp_path):
    good = write("c1", 1, 0.0, 0.1).as_dict()
    path = tmp_path / "h.jsonl"
    path.write_text(f"{json.dumps(good)}\n{{not json\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    done = run_cli(path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"pgha_lab.check: {path} line 2 is not valid JSON (Expecting property name enclosed in double quotes at column 2).\n"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_cli_exits_2_on_a_missing_file_or_a_missing_primary_state(tmp_path):
    missing = run_cli(tmp_path / "nope.jsonl")
    assert missing.returncode == 2
    assert missing.stderr == f"pgha_lab.check: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory.\n"
    write_history(tmp_path / "h.jsonl", [write("c1", 1, 0.0, 0.1)])
    no_primary = run_cli(tmp_path / "h.jsonl")
    assert no_primary.returncode == 2
    assert "no final state for source 'primary'" in no_primary.stderr
    missing_final = run_cli(tmp_path / "h.jsonl", "--final", tmp_path / "nope.json")
    assert missing_final.returncode == 2 and "cannot read" in missing_final.stderr
