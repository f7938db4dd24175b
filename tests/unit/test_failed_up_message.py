"""A failed `up` opens with one sentence: which node, which check, the likely cause and the fix.
The node control underneath is a stand-in: what is tested is the sentence, not Docker."""
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
