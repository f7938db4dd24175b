"""The built node images hold what an Ubuntu 24.04 VM of that role would, and their
entrypoints run the services as the Ubuntu packages' own users."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import CompositeWaitStrategy, ExecWaitStrategy, LogMessageWaitStrategy

pytestmark = pytest.mark.docker
LABEL = {"org.pgha-lab.test": "images"}


@dataclass
class Ran:
    code: int
    out: str


def run(image: str, *cmd: str, entrypoint: str | None = None, env: dict | None = None,
        volumes: dict | None = None) -> Ran:
    """Run a one-off container to completion; exit code and combined output."""
    one_off = DockerContainer(image).with_envs(**(env or {}))
    one_off.with_kwargs(labels=LABEL, **({"entrypoint": entrypoint} if entrypoint else {}))
    if cmd:
        one_off.with_command(list(cmd))
    for host, target in (volumes or {}).items():
        one_off.with_volume_mapping(host, target, "ro")
    with one_off:
        ctr = one_off.get_wrapped_container()
        code = ctr.wait(timeout=120)["StatusCode"]
        # One stream, in the order written: the assertions read stdout and stderr as a terminal would.
        return Ran(code, ctr.logs().decode(errors="replace"))


def sh(image: str, script: str) -> Ran:
    """A root shell in the image, bypassing the entrypoint."""
    return run(image, "-c", script, entrypoint="/bin/sh")


class ReadyOrLogTail(CompositeWaitStrategy):
    """testcontainers adds the log to a start that timed out, not to one that exited: both get it here."""

    def wait_until_ready(self, container) -> None:
        try:
            super().wait_until_ready(container)
        except RuntimeError as exc:
            exc.add_note(container.get_wrapped_container().logs().decode(errors="replace")[-2000:])
            raise


def service(image: str, ready: LogMessageWaitStrategy, probe: list[str], deadline_s: float = 60.0) -> DockerContainer:
    """A long-running container from the image's entrypoint, started once its log says `ready`
    (which fails at once if the container exits instead) and `probe` then succeeds inside it."""
    waits = ReadyOrLogTail(ready, ExecWaitStrategy(probe))
    return (DockerContainer(image).with_kwargs(init=True, labels=LABEL)
            .waiting_for(waits.with_startup_timeout(deadline_s).with_poll_interval(0.2)))


# pid, parent, name and real uid of every process, read from /proc (the images carry no
# procps, on purpose).
PROCS = r"""for p in /proc/[0-9]*; do
  [ -r "$p/status" ] || continue
  awk '/^Name:/ {n=$2} /^Pid:/ {p=$2} /^PPid:/ {pp=$2} /^Uid:/ {u=$2} END {print p, pp, n, u}' "$p/status"
done"""


def procs(ctr: DockerContainer) -> list[tuple[str, int]]:
    """(name, uid) of PID 1 and its descendants: the service tree, without our exec'd probes."""
    table = {}
    for line in ctr.exec(["sh", "-c", PROCS]).output.decode().splitlines():
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


def uid(image: str, user: str) -> int:
    return int(sh(image, f"id -u {user}").out.strip())


# -- every image ------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["etcd", "dbnode", "haproxy"])
def test_image_is_ubuntu_2404_with_curl(built_images, role):
    ran = sh(built_images[role], "cat /etc/os-release; curl --version | head -1")
    assert ran.code == 0, ran.out
    assert 'ID=ubuntu' in ran.out and 'VERSION_ID="24.04"' in ran.out
    assert ran.out.splitlines()[-1].startswith("curl ")


@pytest.mark.parametrize("role,user", [("etcd", "etcd"), ("dbnode", "postgres"), ("haproxy", "haproxy")])
def test_entrypoint_runs_commands_as_the_service_user(built_images, role, user):
    ran = run(built_images[role], "sh", "-c", "id -un; id -u")
    assert ran.code == 0, ran.out
    name, number = ran.out.split()
    assert name == user and int(number) != 0


@pytest.mark.parametrize("role,expected", [
    ("etcd", "exec as etcd (uid {uid}): etcd --config-file /etc/etcd/etcd.conf.yml"),
    ("dbnode", "exec as postgres (uid {uid}): patroni /etc/patroni/config.yml"),
    ("haproxy", "exec as root: haproxy -W -db -f /etc/haproxy/haproxy.cfg"),
])
def test_entrypoint_dry_run_names_the_service_and_user(built_images, role, expected):
    user = {"etcd": "etcd", "dbnode": "postgres", "haproxy": "haproxy"}[role]
    ran = run(built_images[role], env={"PGHA_ENTRYPOINT_DRY_RUN": "1"})
    assert ran.code == 0, ran.out
    assert ran.out.strip() == expected.format(uid=uid(built_images[role], user))


@pytest.mark.parametrize("role,user,folder", [("etcd", "etcd", "/etc/etcd/tls"),
                                              ("dbnode", "postgres", "/etc/patroni/tls"),
                                              ("haproxy", "haproxy", "/etc/haproxy/tls")])
def test_entrypoint_installs_tls_for_the_service_user(built_images, tmp_path, role, user, folder):
    tls = tmp_path / "tls"
    tls.mkdir()
    for name in ("ca.crt", "node.crt", "node.key", "bundle.pem"):
        (tls / name).write_text(f"{name}\n")
        (tls / name).chmod(0o644)   # as a host might leave them: the image must tighten keys
    ran = run(built_images[role], "sh", "-c", f"stat -c '%U %a %n' {folder}/*",
              volumes={tls: "/run/pgha-lab/tls"})
    assert ran.code == 0, ran.out
    modes = {Path(line.split()[2]).name: (line.split()[0], line.split()[1]) for line in ran.out.splitlines()}
    assert modes == {"ca.crt": (user, "644"), "node.crt": (user, "644"),
                     "node.key": (user, "600"), "bundle.pem": (user, "600")}


# -- etcd -------------------------------------------------------------------------------------
def test_etcd_and_etcdctl_are_34_from_ubuntu(built_images):
    ran = sh(built_images["etcd"],
             "etcd --version; ETCDCTL_API=3 etcdctl version; dpkg-query -W -f '${Version}\\n' etcd-server")
    assert ran.code == 0, ran.out
    assert re.search(r"etcd Version: 3\.4\.\d+", ran.out)
    assert re.search(r"etcdctl version: 3\.4\.\d+", ran.out)
    assert "ubuntu" in ran.out.splitlines()[-1]


@pytest.mark.parametrize("role", ["etcd", "dbnode"])
def test_chaos_tools_use_nf_tables(built_images, role):
    ran = sh(built_images[role], "iptables -V; ip -V")
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


def test_etcd_entrypoint_runs_etcd_as_etcd_and_ectl_reaches_it(built_images, tmp_path):
    (tmp_path / "etcd.conf.yml").write_text(ETCD_CONF)
    (tmp_path / "ectl.env").write_text("ETCDCTL_API=3\nETCDCTL_ENDPOINTS=http://127.0.0.1:2379\n")
    etcd = (service(built_images["etcd"], LogMessageWaitStrategy("ready to serve client requests"),
                    ["ectl", "endpoint", "health"])
            .with_volume_mapping(tmp_path / "etcd.conf.yml", "/etc/etcd/etcd.conf.yml")
            .with_volume_mapping(tmp_path / "ectl.env", "/etc/etcd/ectl.env"))
    with etcd:
        health = etcd.exec(["ectl", "endpoint", "health"])
        assert health.exit_code == 0 and b"is healthy" in health.output, health.output
        # A DBA's own --endpoints wins over the rendered default instead of etcdctl's
        # "conflicting environment variable" refusal.
        own = etcd.exec(["ectl", "--endpoints=http://127.0.0.1:2379", "endpoint", "health"])
        assert own.exit_code == 0 and b"is healthy" in own.output, own.output
        etcd_uid = uid(built_images["etcd"], "etcd")
        running = procs(etcd)
        assert ("etcd", etcd_uid) in running, running
        # setpriv replaced the entrypoint shell: nothing but docker-init sits above etcd.
        assert not any(name in ("sh", "setpriv", "su", "runuser") for name, _ in running), running


# -- dbnode ------------------------------------------------------------------------------------
def test_postgresql_18_with_openssl_where_ubuntu_puts_it(built_images):
    ran = sh(built_images["dbnode"],
             "postgres --version; pg_config --configure; ls /usr/lib/postgresql/18/bin; "
             "cat /etc/pgha-lab/postgresql-install")
    assert ran.code == 0, ran.out
    assert re.search(r"postgres \(PostgreSQL\) 18\.\d+", ran.out)
    assert "--with-openssl" in ran.out or "--with-ssl=openssl" in ran.out
    for tool in ("pg_ctl", "pg_rewind", "pgbench", "psql", "initdb", "pg_basebackup"):
        assert re.search(rf"^{tool}$", ran.out, re.M), tool
    assert re.search(r"^method=(source|pgdg)$", ran.out, re.M)


def test_data_directory_is_empty_and_private_to_postgres(built_images):
    ran = sh(built_images["dbnode"],
             "stat -c '%U %G %a' /var/lib/postgresql/18/main; ls -A /var/lib/postgresql/18/main | wc -l; "
             "getent passwd postgres | cut -d: -f6; stat -c '%U %a' /var/run/postgresql")
    assert ran.code == 0, ran.out
    assert ran.out.split("\n")[:4] == ["postgres postgres 700", "0", "/var/lib/postgresql", "postgres 2775"]


def test_patroni_41_in_its_venv_on_path(built_images):
    ran = sh(built_images["dbnode"],
             "patroni --version; patronictl version; readlink -f $(command -v patroni); "
             "/opt/patroni/bin/python -c 'import psycopg, etcd; print(psycopg.__version__)'")
    assert ran.code == 0, ran.out
    assert re.search(r"^patroni 4\.1\.\d+$", ran.out, re.M)
    assert re.search(r"patronictl version 4\.1\.\d+", ran.out)
    assert "/opt/patroni/bin/patroni" in ran.out


def test_postgresql_initialises_and_serves_as_postgres(built_images):
    # Through the entrypoint, so this runs as postgres with the image's PATH and libraries.
    ran = run(built_images["dbnode"], "sh", "-c",
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


def test_haproxy_28_from_ubuntu(built_images):
    ran = sh(built_images["haproxy"], "haproxy -v; dpkg-query -W -f '${Version}\\n' haproxy")
    assert ran.code == 0, ran.out
    assert re.search(r"HAProxy version 2\.8\.\d+", ran.out)
    assert "ubuntu" in ran.out.splitlines()[-1]


def test_haproxy_starts_as_root_and_workers_run_as_haproxy(built_images, tmp_path):
    (tmp_path / "haproxy.cfg").write_text(HAPROXY_CFG)
    haproxy = (service(built_images["haproxy"], LogMessageWaitStrategy("Loading success"),
                       ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8404/stats"])
               .with_volume_mapping(tmp_path / "haproxy.cfg", "/etc/haproxy/haproxy.cfg"))
    with haproxy:
        haproxy_uid = uid(built_images["haproxy"], "haproxy")
        uids = sorted(u for name, u in procs(haproxy) if name == "haproxy")
        assert uids == [0, haproxy_uid], procs(haproxy)   # master (root) and one worker


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
