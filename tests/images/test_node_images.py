"""The built node images hold what an Ubuntu 24.04 VM of that role would, and their
entrypoints run the services as the Ubuntu packages' own users."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker
LABEL = {"org.pgha-lab.test": "images"}


@dataclass
class Ran:
    code: int
    out: str


def run(client, image: str, *cmd: str, entrypoint: str | None = None, env: dict | None = None,
        volumes: dict | None = None) -> Ran:
    """Run a one-off container to completion; exit code and combined output."""
    ctr = client.containers.run(image, list(cmd) or None, entrypoint=entrypoint, environment=env or {},
                                volumes=volumes or {}, detach=True, labels=LABEL)
    try:
        code = ctr.wait(timeout=120)["StatusCode"]
        return Ran(code, ctr.logs().decode(errors="replace"))
    finally:
        ctr.remove(force=True)


def sh(client, image: str, script: str) -> Ran:
    """A root shell in the image, bypassing the entrypoint."""
    return run(client, image, "-c", script, entrypoint="/bin/sh")


def wait_for(client_ctr, cmd: list[str], deadline_s: float = 60.0) -> str:
    """Poll `cmd` inside a running container until it succeeds; its output, or fail at the deadline."""
    deadline = time.monotonic() + deadline_s
    last = ""
    while time.monotonic() < deadline:
        client_ctr.reload()
        if client_ctr.status == "exited":
            pytest.fail(f"container exited: {client_ctr.logs().decode(errors='replace')[-2000:]}")
        code, out = client_ctr.exec_run(cmd)
        last = out.decode(errors="replace")
        if code == 0:
            return last
        time.sleep(0.2)   # poll interval while waiting on a real signal
    pytest.fail(f"{cmd} never succeeded: {last}\n{client_ctr.logs().decode(errors='replace')[-2000:]}")


# pid, parent, name and real uid of every process, read from /proc (the images carry no
# procps, on purpose).
PROCS = r"""for p in /proc/[0-9]*; do
  [ -r "$p/status" ] || continue
  awk '/^Name:/ {n=$2} /^Pid:/ {p=$2} /^PPid:/ {pp=$2} /^Uid:/ {u=$2} END {print p, pp, n, u}' "$p/status"
done"""


def procs(ctr) -> list[tuple[str, int]]:
    """(name, uid) of PID 1 and its descendants: the service tree, without our exec'd probes."""
    _, out = ctr.exec_run(["sh", "-c", PROCS])
    table = {}
    for line in out.decode().splitlines():
        parts = line.split()
        if len(parts) == 4:
            table[int(parts[0])] = (int(parts[1]), parts[2], int(parts[3]))
    tree, frontier = [], [1]
    while frontier:
        pid = frontier.pop()
        if pid in table:
            tree.append((table[pid][1], table[pid][2]))
            frontier += [child for child, row in table.items() if row[0] == pid]
    return tree


def uid(client, image: str, user: str) -> int:
    return int(sh(client, image, f"id -u {user}").out.strip())


# -- every image ------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["etcd", "dbnode", "haproxy"])
def test_image_is_ubuntu_2404_with_curl(docker_client, built_images, role):
    ran = sh(docker_client, built_images[role], "cat /etc/os-release; curl --version | head -1")
    assert ran.code == 0, ran.out
    assert 'ID=ubuntu' in ran.out and 'VERSION_ID="24.04"' in ran.out
    assert ran.out.splitlines()[-1].startswith("curl ")


@pytest.mark.parametrize("role,user", [("etcd", "etcd"), ("dbnode", "postgres"), ("haproxy", "haproxy")])
def test_entrypoint_runs_commands_as_the_service_user(docker_client, built_images, role, user):
    ran = run(docker_client, built_images[role], "sh", "-c", "id -un; id -u")
    assert ran.code == 0, ran.out
    name, number = ran.out.split()
    assert name == user and int(number) != 0


@pytest.mark.parametrize("role,expected", [
    ("etcd", "exec as etcd (uid {uid}): etcd --config-file /etc/etcd/etcd.conf.yml"),
    ("dbnode", "exec as postgres (uid {uid}): patroni /etc/patroni/config.yml"),
    ("haproxy", "exec as root: haproxy -W -db -f /etc/haproxy/haproxy.cfg"),
])
def test_entrypoint_dry_run_names_the_service_and_user(docker_client, built_images, role, expected):
    user = {"etcd": "etcd", "dbnode": "postgres", "haproxy": "haproxy"}[role]
    ran = run(docker_client, built_images[role], env={"PGHA_ENTRYPOINT_DRY_RUN": "1"})
    assert ran.code == 0, ran.out
    assert ran.out.strip() == expected.format(uid=uid(docker_client, built_images[role], user))


@pytest.mark.parametrize("role,user,folder", [("etcd", "etcd", "/etc/etcd/tls"),
                                              ("dbnode", "postgres", "/etc/patroni/tls"),
                                              ("haproxy", "haproxy", "/etc/haproxy/tls")])
def test_entrypoint_installs_tls_for_the_service_user(docker_client, built_images, tmp_path, role, user, folder):
    tls = tmp_path / "tls"
    tls.mkdir()
    for name in ("ca.crt", "node.crt", "node.key", "bundle.pem"):
        (tls / name).write_text(f"{name}\n")
        (tls / name).chmod(0o644)   # as a host might leave them: the image must tighten keys
    ran = run(docker_client, built_images[role], "sh", "-c", f"stat -c '%U %a %n' {folder}/*",
              volumes={str(tls): {"bind": "/run/pgha-lab/tls", "mode": "ro"}})
    assert ran.code == 0, ran.out
    modes = {Path(line.split()[2]).name: (line.split()[0], line.split()[1]) for line in ran.out.splitlines()}
    assert modes == {"ca.crt": (user, "644"), "node.crt": (user, "644"),
                     "node.key": (user, "600"), "bundle.pem": (user, "600")}


# -- etcd -------------------------------------------------------------------------------------
def test_etcd_and_etcdctl_are_34_from_ubuntu(docker_client, built_images):
    ran = sh(docker_client, built_images["etcd"],
             "etcd --version; ETCDCTL_API=3 etcdctl version; dpkg-query -W -f '${Version}\\n' etcd-server")
    assert ran.code == 0, ran.out
    assert re.search(r"etcd Version: 3\.4\.\d+", ran.out)
    assert re.search(r"etcdctl version: 3\.4\.\d+", ran.out)
    assert "ubuntu" in ran.out.splitlines()[-1]


@pytest.mark.parametrize("role", ["etcd", "dbnode"])
def test_chaos_tools_use_nf_tables(docker_client, built_images, role):
    ran = sh(docker_client, built_images[role], "iptables -V; ip -V")
    assert ran.code == 0, ran.out
    assert "nf_tables" in ran.out and "iproute2" in ran.out


ETCD_CONF = """name: solo
data-dir: /var/lib/etcd/solo
listen-client-urls: http://127.0.0.1:2379
advertise-client-urls: http://127.0.0.1:2379
listen-peer-urls: http://127.0.0.1:2380
initial-advertise-peer-urls: http://127.0.0.1:2380
initial-cluster: solo=http://127.0.0.1:2380
initial-cluster-state: new
"""


def test_etcd_entrypoint_runs_etcd_as_etcd_and_ectl_reaches_it(docker_client, built_images, tmp_path):
    (tmp_path / "etcd.conf.yml").write_text(ETCD_CONF)
    (tmp_path / "ectl.env").write_text("ETCDCTL_API=3\nETCDCTL_ENDPOINTS=http://127.0.0.1:2379\n")
    ctr = docker_client.containers.run(
        built_images["etcd"], detach=True, init=True, labels=LABEL,
        volumes={str(tmp_path / "etcd.conf.yml"): {"bind": "/etc/etcd/etcd.conf.yml", "mode": "ro"},
                 str(tmp_path / "ectl.env"): {"bind": "/etc/etcd/ectl.env", "mode": "ro"}})
    try:
        out = wait_for(ctr, ["ectl", "endpoint", "health"])
        assert "is healthy" in out
        # A DBA's own --endpoints wins over the rendered default instead of etcdctl's
        # "conflicting environment variable" refusal.
        code, own = ctr.exec_run(["ectl", "--endpoints=http://127.0.0.1:2379", "endpoint", "health"])
        assert code == 0 and b"is healthy" in own, own
        etcd_uid = uid(docker_client, built_images["etcd"], "etcd")
        running = procs(ctr)
        assert ("etcd", etcd_uid) in running, running
        # setpriv replaced the entrypoint shell: nothing but docker-init sits above etcd.
        assert not any(name in ("sh", "setpriv", "su", "runuser") for name, _ in running), running
    finally:
        ctr.remove(force=True)


# -- dbnode ------------------------------------------------------------------------------------
def test_postgresql_18_with_openssl_where_ubuntu_puts_it(docker_client, built_images):
    ran = sh(docker_client, built_images["dbnode"],
             "postgres --version; pg_config --configure; ls /usr/lib/postgresql/18/bin; "
             "cat /etc/pgha-lab/postgresql-install")
    assert ran.code == 0, ran.out
    assert re.search(r"postgres \(PostgreSQL\) 18\.\d+", ran.out)
    assert "--with-openssl" in ran.out or "--with-ssl=openssl" in ran.out
    for tool in ("pg_ctl", "pg_rewind", "pgbench", "psql", "initdb", "pg_basebackup"):
        assert re.search(rf"^{tool}$", ran.out, re.M), tool
    assert re.search(r"^method=(source|pgdg)$", ran.out, re.M)


def test_data_directory_is_empty_and_private_to_postgres(docker_client, built_images):
    ran = sh(docker_client, built_images["dbnode"],
             "stat -c '%U %G %a' /var/lib/postgresql/18/main; ls -A /var/lib/postgresql/18/main | wc -l; "
             "getent passwd postgres | cut -d: -f6; stat -c '%U %a' /var/run/postgresql")
    assert ran.code == 0, ran.out
    assert ran.out.split("\n")[:4] == ["postgres postgres 700", "0", "/var/lib/postgresql", "postgres 2775"]


def test_patroni_41_in_its_venv_on_path(docker_client, built_images):
    ran = sh(docker_client, built_images["dbnode"],
             "patroni --version; patronictl version; readlink -f $(command -v patroni); "
             "/opt/patroni/bin/python -c 'import psycopg, etcd; print(psycopg.__version__)'")
    assert ran.code == 0, ran.out
    assert re.search(r"^patroni 4\.1\.\d+$", ran.out, re.M)
    assert re.search(r"patronictl version 4\.1\.\d+", ran.out)
    assert "/opt/patroni/bin/patroni" in ran.out


def test_postgresql_initialises_and_serves_as_postgres(docker_client, built_images):
    # Through the entrypoint, so this runs as postgres with the image's PATH and libraries.
    ran = run(docker_client, built_images["dbnode"], "sh", "-c",
              "initdb -D /tmp/pg -A trust >/dev/null && "
              "pg_ctl -D /tmp/pg -o '-k /tmp -c listen_addresses=' -w -l /tmp/pg.log start >/dev/null && "
              "psql -h /tmp -XAtc \"select current_user, setting from pg_settings where name='ssl_library'\" postgres && "
              "psql -h /tmp -XAtc 'create extension pg_stat_statements' postgres")
    assert ran.code == 0, ran.out
    assert "postgres|OpenSSL" in ran.out


# -- haproxy -----------------------------------------------------------------------------------
HAPROXY_CFG = """global
    user haproxy
    group haproxy
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend stats
    bind 127.0.0.1:8404
    stats enable
    stats uri /stats
"""


def test_haproxy_28_from_ubuntu(docker_client, built_images):
    ran = sh(docker_client, built_images["haproxy"], "haproxy -v; dpkg-query -W -f '${Version}\\n' haproxy")
    assert ran.code == 0, ran.out
    assert re.search(r"HAProxy version 2\.8\.\d+", ran.out)
    assert "ubuntu" in ran.out.splitlines()[-1]


def test_haproxy_starts_as_root_and_workers_run_as_haproxy(docker_client, built_images, tmp_path):
    (tmp_path / "haproxy.cfg").write_text(HAPROXY_CFG)
    ctr = docker_client.containers.run(
        built_images["haproxy"], detach=True, init=True, labels=LABEL,
        volumes={str(tmp_path / "haproxy.cfg"): {"bind": "/etc/haproxy/haproxy.cfg", "mode": "ro"}})
    try:
        wait_for(ctr, ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8404/stats"])
        haproxy_uid = uid(docker_client, built_images["haproxy"], "haproxy")
        uids = sorted(u for name, u in procs(ctr) if name == "haproxy")
        assert uids == [0, haproxy_uid], procs(ctr)   # master (root) and one worker
    finally:
        ctr.remove(force=True)


# -- the build command -------------------------------------------------------------------------
def test_a_failing_step_prints_its_log_tail_and_exits_1(built_images):
    import subprocess
    import sys
    # Port 9 (discard) on the loopback of the build container: the download step fails fast.
    proc = subprocess.run([sys.executable, "-m", "pgha_lab.cli", "build", "--pg-install", "source",
                           "--pg-source-url", "http://127.0.0.1:9/postgresql-18.6.tar.bz2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "✗ dbnode" in proc.stderr and "build-postgresql.sh" in proc.stderr
    assert "curl: (7)" in proc.stderr          # the step's own output, not just "it failed"
    assert "\x1b[91m" not in proc.stderr       # the builder's colour codes are stripped
    assert proc.stderr.strip().splitlines()[-1].startswith("pgha-lab: the build failed: dbnode failed at")


def test_doctor_reports_engine_and_built_images_as_json(built_images):
    import json
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "pgha_lab.cli", "doctor", "--json", "--registry-timeout", "3"],
                          capture_output=True, text=True, timeout=60)
    doc = json.loads(proc.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["engine"]["ok"] and checks["compose"]["ok"]
    assert "registry" in checks and checks["registry"]["required"] is False
    for role in ("etcd", "dbnode", "haproxy"):
        assert checks[f"image {role}"]["ok"], checks[f"image {role}"]
    assert proc.returncode == (0 if doc["ok"] else 1)
