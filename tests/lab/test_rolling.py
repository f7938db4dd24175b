"""Rolling changes on the running test lab, each with a writer through HAProxy: a CA rotation, a
changed HAProxy setting and an image upgrade roll node by node, lose no acknowledged write and cost
no more write downtime than about one switchover; a stale certificate shows in `status`."""
from __future__ import annotations

import subprocess
import uuid
from contextlib import contextmanager

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pgha_lab import gateway, tls
from pgha_lab.rolling import staleness
from pgha_lab.rolling.measure import writes_during
from pgha_lab.wait import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.lab]

# A switchover's write downtime is the yardstick; a rolling change may add the writer's own
# reconnect rhythm and a busy 2-core machine's jitter on top of it. One measured switchover is a
# single draw and a roll makes several, so on saturated CPUs the fast profile's own switchover
# bound (2 x loop_wait 1 + promotion 5 + HAProxy rise 3 = 10 s) is the floor of the budget.
SLACK_S = 3.0
SWITCHOVER_BOUND_S = 10.0


def containers(lab) -> dict[str, str]:
    """node -> container id."""
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=pgha-lab.project={lab.topo.project}",
                          "--format", '{{.Label "pgha-lab.node"}} {{.ID}}'], capture_output=True, text=True).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


@contextmanager
def writer(lab):
    """A writer through HAProxy's 5432 for the length of the block (pgha_lab.rolling.measure)."""
    with writes_during(lab.ctx) as writes:
        yield writes
    assert writes.acknowledged > 20, "the writer hardly wrote: the check would prove nothing"


def switchover_downtime(lab) -> float:
    """The yardstick: write downtime of one plain switchover on this lab and profile."""
    with writer(lab) as writes:
        lab.cli("switchover")
    assert writes.lost == []
    # The switchover returns once writes land on the new leader; a roll wants the old one back in sync.
    assert wait_until(lab.ctx.health, 120).ok
    return writes.downtime()


def test_status_names_a_node_running_a_stale_certificate_and_roll_refuses_bad_input(healthy_lab):
    lab = healthy_lab
    assert "stale:" not in lab.cli("status").stdout
    replica = next(m.name for m in lab.probe().members() if m.role != "leader")
    # A certificate remade on the host while the node runs: what `certs` does when a leaf nears expiry.
    (lab.paths.certs / f"{replica}-restapi.crt").unlink()
    lab.cli("certs")
    out = lab.cli("status").stdout
    assert f"stale: {replica} runs older certificates than the host's" in out
    assert "pgha-lab roll --stale" in out

    before = containers(lab)
    bad = lab.cli("roll", "dbnode9", check=False)
    assert bad.returncode == 1 and "unknown node 'dbnode9'" in bad.stderr
    dry = lab.cli("roll", "--dry-run")
    assert "switchover away from" in dry.stderr and "restart haproxy" in dry.stderr
    certs_before = {p.name: p.read_bytes() for p in lab.paths.certs.iterdir()}
    dry = lab.cli("certs", "--rotate", "--dry-run")
    assert "stage 3/3" in dry.stderr
    paused = lab.topo.etcd[1]
    subprocess.run(["docker", "pause", lab.topo.container_name(paused)], check=True)
    try:
        refused = lab.cli("certs", "--rotate", check=False)
    finally:
        subprocess.run(["docker", "unpause", lab.topo.container_name(paused)], check=True)
    assert refused.returncode == 1
    assert f"{paused.name} is paused; resume it first" in refused.stderr
    assert {p.name: p.read_bytes() for p in lab.paths.certs.iterdir()} == certs_before
    assert containers(lab) == before

    assert wait_until(lab.ctx.health, 60).ok   # etcd got over the pause
    rolled = lab.cli("roll", "--stale")
    assert f"restart {replica}" in rolled.stderr and "switchover" not in rolled.stderr
    after = containers(lab)
    assert after[replica] != before[replica]
    assert {n: c for n, c in after.items() if n != replica} == {n: c for n, c in before.items() if n != replica}
    assert "stale:" not in lab.cli("status").stdout


def test_rotating_the_ca_on_a_running_lab_rolls_with_overlapping_trust(healthy_lab):
    lab = healthy_lab
    yardstick = switchover_downtime(lab)
    old_ca = tls.trusted_cas(lab.paths)
    assert len(old_ca) == 1
    with writer(lab) as writes:
        proc = lab.cli("certs", "--rotate")
    assert "stage 3/3" in proc.stderr and "every node now trusts only the new CA" in proc.stdout
    # etcd members restart with Patroni in maintenance mode (a stopping member's gRPC error must
    # not demote the primary), and the roll takes the lab out of it again.
    assert "Patroni into maintenance mode" in proc.stderr and "Patroni out of maintenance mode" in proc.stderr
    code, config = lab.ctx.probe.rest(lab.topo.db[0], "/config")
    assert code == 200 and "pause" not in config, config
    assert writes.lost == []
    downtime = writes.downtime()
    print(f"\nCA rotation: write downtime {downtime:.2f}s (one switchover: {yardstick:.2f}s), {writes.seconds:.0f}s, "
          f"{len(writes.attempts)} attempts, {writes.acknowledged} acknowledged; worst gaps: {writes.worst_gaps()}")
    assert downtime <= max(yardstick + SLACK_S, SWITCHOVER_BOUND_S), f"worst gaps: {writes.worst_gaps()}"

    new_ca = tls.trusted_cas(lab.paths)
    assert len(new_ca) == 1 and new_ca[0] != old_ca[0]
    assert tls.rotation_stage(lab.paths) is None
    ctx = lab.ctx
    assert staleness.stale_nodes(ctx) == []   # every node runs the host's files: the new CA only
    for node in lab.topo.nodes:
        inside = subprocess.run(["docker", "exec", lab.topo.container_name(node), "cat",
                                 f"{staleness.TLS_DIRS[node.role]}/ca.crt"], capture_output=True).stdout
        assert x509.load_pem_x509_certificates(inside) == new_ca, node.name
    verdict = ctx.health()
    assert verdict.ok, verdict.reason
    # Every channel verifies against the new CA: psql through HAProxy with verify-full ...
    with psycopg.connect(ctx.dsn(), password=lab.password()) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    # ... and against the old one nothing does any more.
    old_file = lab.paths.state / "old-ca.crt"
    old_file.write_bytes(old_ca[0].public_bytes(serialization.Encoding.PEM))
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(ctx.dsn(ca=str(old_file)), password=lab.password(), connect_timeout=5).close()
    etcd = lab.topo.etcd[0]
    files = tls.host_client(lab.paths)
    probe = subprocess.run(["curl", "-sS", "--cacert", str(old_file), "--cert", str(files.cert), "--key", str(files.key),
                            f"https://{etcd.address}:{lab.topo.ports.etcd_client}/health"], capture_output=True, text=True)
    assert probe.returncode != 0
    old_file.unlink()


def test_a_changed_haproxy_setting_rolls_only_haproxy(healthy_lab):
    lab = healthy_lab
    before = containers(lab)
    try:
        with writer(lab) as writes:
            proc = lab.cli("up", "--profile", "seed")
        assert "haproxy runs older config than the host's" in proc.stderr
        assert "restart haproxy" in proc.stderr
        after = containers(lab)
        assert after["haproxy"] != before["haproxy"]
        assert {n: c for n, c in after.items() if n != "haproxy"} == {n: c for n, c in before.items() if n != "haproxy"}
        assert writes.lost == []
        print(f"\nHAProxy roll: write downtime {writes.downtime():.2f}s, {writes.seconds:.0f}s; worst gaps: {writes.worst_gaps()}")
    finally:
        lab.up()   # back to the fast profile


@contextmanager
def a_new_dbnode_image():
    """Tag a trivially different image as the db nodes' image (a new id, same contents), as a
    rebuild would; the original tag comes back however the block ends."""
    ref = gateway.IMAGES["dbnode"]
    backup = ref.split(":")[0] + ":rolling-test-original"
    original = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True,
                              text=True, check=True).stdout.strip()
    subprocess.run(["docker", "tag", original, backup], check=True)
    try:
        subprocess.run(["docker", "build", "-q", "-t", ref, "-"], input=f"FROM {original}\nLABEL org.pgha-lab.rolling-test={uuid.uuid4().hex}\n",
                       text=True, check=True, capture_output=True, env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin"})
        yield original
    finally:
        subprocess.run(["docker", "tag", original, ref], check=True)
        subprocess.run(["docker", "rmi", backup], capture_output=True)


# serial: it retags the db nodes' image, which every other lab alive would then run as stale
@pytest.mark.serial
def test_an_image_rebuild_then_up_rolls_the_db_nodes(healthy_lab):
    lab = healthy_lab
    before = containers(lab)
    with a_new_dbnode_image():
        with writer(lab) as writes:
            proc = lab.cli("up")
    assert "runs older image than the host's" in proc.stderr
    assert "switchover away from" in proc.stderr
    after = containers(lab)
    assert all(after[n.name] != before[n.name] for n in lab.topo.db)
    assert {n: c for n, c in after.items() if n.startswith(("etcd", "haproxy"))} == \
        {n: c for n, c in before.items() if n.startswith(("etcd", "haproxy"))}
    assert writes.lost == []
    print(f"\nimage roll: write downtime {writes.downtime():.2f}s, {writes.seconds:.0f}s; worst gaps: {writes.worst_gaps()}")
    lab.up()   # the original image again, rolled back the same way
    assert staleness.stale_nodes(lab.ctx) == []
