"""A failed `up` opens with one sentence: which node, which check, the likely cause and the fix; and
`psql` picks a db node that can reach HAProxy. The node control underneath is a stand-in: what is
tested is the sentence and the choice, not Docker."""
from __future__ import annotations

from pathlib import Path

from pgha_lab import lifecycle, profiles, render
from pgha_lab.context import LabContext
from pgha_lab.gateway import ContainerState, LabDocker
from pgha_lab.wait import Verdict


class StandIn(LabDocker):
    def __init__(self, status: str, log: str, digests: dict[str, str] | None) -> None:
        super().__init__("pgha-lab", Path("compose.yaml"))
        self.status, self.log, self.digests = status, log, digests

    def state(self, node) -> ContainerState:
        return ContainerState(self.status, True)

    def logs_tail(self, node, lines: int = 30) -> str:
        return self.log

    def running_image(self, node):
        return None

    def file_digests(self, node, paths):
        return self.digests if self.digests is not None else {}


def lab(tmp_path, docker: StandIn) -> LabContext:
    ctx = LabContext.open(tmp_path)
    render.write_lab(ctx.paths, ctx.topology, profiles.FAST)
    ctx.__dict__["docker"] = docker   # the cached_property's slot
    return ctx


VERDICT = Verdict(False, "etcd2 does not answer (TLS error)", "etcd2")


def test_a_node_on_older_files_is_named_with_the_fix(tmp_path):
    ctx = lab(tmp_path, StandIn("running", "", {}))
    text = lifecycle.failure_sentence(ctx, "Waiting for etcd", VERDICT, 240)
    assert text.startswith('the lab did not become healthy in 240s: etcd2 failed the check "Waiting for etcd" '
                           "(etcd2 does not answer (TLS error)); likely cause: etcd2 runs older certificates, config")
    assert text.endswith("fix: `pgha-lab roll --stale` applies them one node at a time.")
    assert "\n" not in text


def test_tls_errors_in_the_log_point_at_a_mismatch_and_a_stopped_node_at_its_log(tmp_path):
    from pgha_lab.rolling import staleness
    ctx = lab(tmp_path, StandIn("running", "... remote error: tls: bad record MAC", None))
    current = {path: digest for path, (_, digest) in staleness.expected_files(ctx, ctx.topology.node("etcd2")).items()}
    ctx.docker.digests = current
    text = lifecycle.failure_sentence(ctx, "Waiting for etcd", VERDICT, 240)
    assert "likely cause: a TLS mismatch between etcd2 and its peers" in text
    ctx.docker.status, ctx.docker.log = "exited", "panic"
    assert "likely cause: etcd2 is exited" in lifecycle.failure_sentence(ctx, "Waiting for etcd", VERDICT, 240)


# Lines from a real run: an old leader, isolated under a bulk writer, whose own shutdown checkpoint had
# recycled the WAL pg_rewind needed.
REWIND_FAILED = """2026-11-26 23:50:19,448 INFO:  stderr=pg_rewind: servers diverged at WAL location 0/106CD7B0 on timeline 3
pg_rewind: error: could not open file "/var/lib/postgresql/18/main/pg_wal/000000030000000000000007": No such file or directory
pg_rewind: error: could not find previous WAL record at 0/7FFFE80
2026-11-26 23:50:19,470 ERROR: Failed to rewind from healthy primary: dbnode1
2026-11-26 23:54:53,045 INFO: starting as a secondary"""


def test_a_former_leader_that_pg_rewind_could_not_bring_back_is_named_with_reinit(tmp_path):
    ctx = lab(tmp_path, StandIn("running", REWIND_FAILED, None))
    from pgha_lab.rolling import staleness
    ctx.docker.digests = {path: digest for path, (_, digest)
                          in staleness.expected_files(ctx, ctx.topology.node("dbnode2")).items()}
    verdict = Verdict(False, "dbnode2 is start failed, not streaming", "dbnode2")
    text = lifecycle.failure_sentence(ctx, "Waiting for Patroni", verdict, 240)
    assert "likely cause: dbnode2 left the leader's timeline and pg_rewind could not bring it back" in text
    assert "(its log: 2026-11-26 23:50:19,470 ERROR: Failed to rewind from healthy primary: dbnode1)" in text
    assert text.endswith("`pgha-lab exec dbnode2 -- patronictl -c /etc/patroni/config.yml reinit 18/main dbnode2 "
                         "--force --wait`.")
    ctx.docker.log = "2026-11-26 23:54:53,045 INFO: starting as a secondary"
    assert "pg_rewind" not in lifecycle.failure_sentence(ctx, "Waiting for Patroni", verdict, 240)


class Cabled(StandIn):
    """dbnode1 runs with its cable pulled (`chaos isolate`); dbnode2 runs on the lab network."""
    def __init__(self) -> None:
        super().__init__("running", "", None)
        self.ran_on = None

    def states(self, nodes):
        return {n.name: ContainerState("running", n.name != "dbnode1") for n in nodes}

    def exec_interactive(self, node, cmd, *, user=None, tty=False) -> int:
        self.ran_on = node.name
        return 0


def test_psql_runs_its_client_in_a_db_node_that_is_still_on_the_lab_network(tmp_path, monkeypatch):
    # Lesson 6 has the learner record an answer with `pgha-lab psql` while the old leader's cable is
    # pulled: a client started inside that node reaches no HAProxy ("Network is unreachable").
    import argparse
    from pgha_lab.commands import nodes
    docker = Cabled()
    ctx = lab(tmp_path, docker)
    monkeypatch.setattr(nodes, "lab_context", lambda args: ctx)
    # The replicas port: for the primary port psql first asks Patroni and HAProxy, which this stand-in lab lacks.
    assert nodes.cmd_psql(argparse.Namespace(replica=True, psql_args=["-c", "select 1"])) == 0
    assert docker.ran_on == "dbnode2"
