"""The track done as a learner does it, on a real bare lab: commands typed on the nodes (hostnamectl,
/etc/hosts, openssl, the etcd package's unit and /etc/default/etcd, ~/.bashrc), the check after each
attempt. For each step a wrong attempt first, the mistake the course's author reports, whose check
FAILS naming what is wrong and where to look (never the value to paste), then the hint, the fix, and
the check PASSES. The tests run in order on one bare lab (xdist_group "track": the worker's own bare
lab, beside the "bare" chain's); each first brings the lab to the step before it the right way when an
earlier test did not leave it there."""
from __future__ import annotations

import subprocess

import pytest

from pgha_lab.lessons import progress
from pgha_lab.track import catalogue, course
from pgha_lab.track.assignment import Assignment
from pgha_lab.wait import Verdict, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.lab, pytest.mark.xdist_group("track")]

CA_DIR = "/root/ca"   # where the learner makes the CA and signs everything (on etcd1, as the course does on a VM)
ETCD_CONF = "/etc/etcd/etcd.conf.yml"


def verdict(lab, step: int):
    return course.check(lab.ctx, [step]).verdicts[0]


def failing(lab, step: int):
    v = verdict(lab, step)
    assert not v.passed, f"step {step} passed: {v.confirmed}"
    print(f"step {step} FAIL: {v.findings[0].problem}\n  where: {v.findings[0].where}")
    return v


def passing(lab, step: int):
    v = verdict(lab, step)
    assert v.passed, f"step {step} failed: {[f.as_dict() for f in v.findings]}"
    print(f"step {step} PASS: {'; '.join(v.confirmed)}")
    return v


def diagnoses(v) -> list[str]:
    return [f.diagnosis for f in v.findings]


def on_all(lab, nodes, script: str) -> None:
    for n in nodes:
        lab.sh(n, script)


def copy_files(lab, src: str, paths: list[str], dst: str, into: str) -> None:
    """The learner's scp: the files from one node into a folder on another (a tar through the host)."""
    docker = lab.ctx.docker
    tar = subprocess.run(["docker", "exec", docker.container(src), "tar", "c", "-C", CA_DIR, *paths],
                         capture_output=True, check=True, timeout=60).stdout
    subprocess.run(["docker", "exec", "-i", docker.container(dst), "sh", "-c",
                    f"mkdir -p {into} && tar x -C {into} --no-same-owner"],
                   input=tar, capture_output=True, check=True, timeout=60)


def hosts_block(a: Assignment) -> str:
    return "".join(f"{n.address} {n.name}\n" for n in a.nodes)


# -- step 1 --------------------------------------------------------------------------------------
def do_names(lab, a: Assignment) -> None:
    for n in a.nodes:
        lab.sh(n.name, f"hostnamectl set-hostname {n.name} && sed -i '/^127.0.1.1/d' /etc/hosts && "
                       f"grep -q ' {n.name}$' /etc/hosts || printf '%s' '{hosts_block(a)}' >> /etc/hosts")


def test_step1_names_as_a_learner(fresh_bare_lab):
    lab = fresh_bare_lab
    progress.forget(lab.paths, progress.TRACK_FILE)   # a learner starting the track: no hint shown yet
    a = Assignment.of(lab.ctx.topology)
    v = failing(lab, 1)
    assert v.findings[0].diagnosis == "hostname"

    # The wrong attempt: hostnames set and the lab's names added, but Ubuntu's `127.0.1.1 ubuntu` line
    # rewritten to the new name, as many do: the node's own name then resolves to loopback.
    for n in a.nodes:
        lab.sh(n.name, f"hostnamectl set-hostname {n.name} && sed -i 's/^127.0.1.1.*/127.0.1.1 {n.name}/' /etc/hosts"
                       f" && printf '%s' '{''.join(f'{o.address} {o.name}' + chr(10) for o in a.nodes if o.name != n.name)}'"
                       f" >> /etc/hosts")
    v = failing(lab, 1)
    loop = [f for f in v.findings if f.diagnosis == "name-on-loopback"]
    assert len(loop) == len(a.nodes), [f.as_dict() for f in v.findings]   # each node, its own name
    etcd2 = next(f for f in loop if f.problem.startswith("etcd2 resolves etcd2"))
    line = lab.sh("etcd2", "grep -n '^127.0.1.1' /etc/hosts | cut -d: -f1").stdout.strip()
    assert etcd2.where == f"/etc/hosts line {line} on etcd2", etcd2
    for f in v.findings:   # where to look, not what to write: no finding carries a node's lab address
        assert not any(n.address in f.problem + f.where for n in a.nodes), f

    proc = lab.cli("track", "hint", "1")
    assert "getent hosts etcd2" in proc.stdout
    shown = lab.cli("track", "hint", "1").stdout
    assert "127.0.1.1" in shown, shown   # the second hint names the trap
    print(proc.stdout, shown)

    # The fix: the loopback line gone, every node's own line present.
    for n in a.nodes:
        lab.sh(n.name, f"sed -i '/^127.0.1.1/d' /etc/hosts && echo '{n.address} {n.name}' >> /etc/hosts")
    passing(lab, 1)
    # A hostname set only until a reboot (the kernel's, not /etc/hostname) is caught too.
    lab.sh("dbnode2", "hostname dbnode2 && : > /etc/hostname")
    v = failing(lab, 1)
    assert v.findings[0].diagnosis == "hostname" and "reboot" in v.findings[0].problem
    assert v.findings[0].where.startswith("on dbnode2: cat /etc/hostname")
    lab.sh("dbnode2", "hostnamectl set-hostname dbnode2")
    passing(lab, 1)
    assert 1 in course.load(lab.ctx).passed


# -- step 2 --------------------------------------------------------------------------------------
SIGN = r"""
set -e
mkdir -p {ca} && cd {ca}
[ -f ca.crt ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
  -days 365 -subj "/CN=track lab CA" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
sign() {{  # out-dir file-name CN subjectAltName extendedKeyUsage
  mkdir -p "$1"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1/$2.key" -out "$1/$2.csr" -subj "/CN=$3" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$4" "$5" > "$1/$2.ext"
  openssl x509 -req -in "$1/$2.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -out "$1/$2.crt" -extfile "$1/$2.ext" 2>/dev/null
  rm "$1/$2.csr" "$1/$2.ext"
  cp ca.crt "$1/ca.crt"
}}
"""


def sign_script(a: Assignment, only: str | None = None, san_without_ip: str | None = None) -> str:
    """openssl commands for every certificate the assignment asks for (or one node's)."""
    lines = [SIGN.format(ca=CA_DIR)]
    for d in a.certificates:
        if only and d.node != only:
            continue
        name = d.cert.rsplit("/", 1)[1].rsplit(".", 1)[0]
        sans = [f"IP:{x}" if x[0].isdigit() else f"DNS:{x}" for x in d.names]
        if d.node == san_without_ip:
            sans = [s for s in sans if not s.startswith("IP:")]
        eku = ",".join(u for u, need in (("serverAuth", d.server), ("clientAuth", d.client)) if need)
        lines.append(f"sign out/{d.node} {name} {d.node} {','.join(sans)} {eku}")
        if d.cert.endswith(".pem"):
            lines.append(f"cat out/{d.node}/{name}.crt out/{d.node}/{name}.key > out/{d.node}/{name}.pem && "
                         f"rm out/{d.node}/{name}.crt out/{d.node}/{name}.key")
    return "\n".join(lines)


def install_certs(lab, a: Assignment, node: str) -> None:
    folder = a.ca_path(node).rsplit("/", 1)[0]
    files = lab.sh("etcd1", f"ls {CA_DIR}/out/{node}").stdout.split()
    copy_files(lab, "etcd1", [f"out/{node}/{f}" for f in files], node, f"/tmp/certs-{node}")
    lab.sh(node, f"mkdir -p {folder} && cp /tmp/certs-{node}/out/{node}/* {folder}/ && rm -r /tmp/certs-{node}")


def own_keys(lab, a: Assignment) -> None:
    for n in a.nodes:
        duties = [d for d in a.certificates if d.node == n.name]
        lab.sh(n.name, " && ".join(f"chown {d.owner}:{d.owner} {d.key} && chmod 600 {d.key}" for d in duties))


def do_certificates(lab, a: Assignment) -> None:
    lab.sh("etcd1", sign_script(a))
    for n in a.nodes:
        install_certs(lab, a, n.name)
    own_keys(lab, a)


def ready_for(lab, step: int) -> Assignment:
    """The lab with every step before `step` passing, done right where an earlier test did not."""
    a = Assignment.of(lab.ctx.topology)
    todo = {1: do_names, 2: do_certificates, 3: do_etcd, 4: do_postgres, 5: do_patroni, 6: do_haproxy, 7: None}
    for s in range(1, step):
        if not verdict(lab, s).passed:
            todo[s](lab, a)
            passing(lab, s)
    if verdict(lab, step).passed:   # e.g. built by the playbook: the test starts from the module's first test
        pytest.fail(f"the bare lab is already past step {step}; these tests start from a bare lab "
                    f"(test_step1_names_as_a_learner takes a fresh one)", pytrace=False)
    return a


def test_step2_certificates_as_a_learner(bare_lab):
    lab = bare_lab
    a = ready_for(lab, 2)
    v = failing(lab, 2)
    assert v.findings[0].diagnosis == "missing-file"

    # The wrong attempt: etcd2's certificates signed with its name only (no IP: in subjectAltName, the
    # course author's own mistake), and every file copied as root made it (keys root's, 0600 by openssl
    # but not the service user's).
    lab.sh("etcd1", sign_script(a, san_without_ip="etcd2"))
    for n in a.nodes:
        install_certs(lab, a, n.name)
    v = failing(lab, 2)
    assert "key-permissions" in diagnoses(v) and "san-missing" in diagnoses(v), [f.as_dict() for f in v.findings]
    perm = next(f for f in v.findings if f.diagnosis == "key-permissions")
    assert "owned by root" in perm.problem and perm.where.startswith("on ")
    san = next(f for f in v.findings if f.diagnosis == "san-missing")
    assert san.problem.startswith("etcd's client and peer certificate on etcd2 (/etc/etcd/tls/etcd.crt) does not "
                                  f"name {a.node('etcd2').address}"), san
    assert san.where == "on etcd2: openssl x509 -in /etc/etcd/tls/etcd.crt -noout -ext subjectAltName"
    assert "IP:" not in san.problem + san.where   # it says what is missing, not the line to paste

    print(lab.cli("track", "hint", "2").stdout)
    # The fix: the keys to their service users; etcd2's pair signed again with its address.
    own_keys(lab, a)
    v = failing(lab, 2)
    assert diagnoses(v) == ["san-missing", "san-missing"], [f.as_dict() for f in v.findings]   # etcd.crt, etcdctl.crt
    lab.sh("etcd1", sign_script(a, only="etcd2"))
    install_certs(lab, a, "etcd2")
    own_keys(lab, a)
    passing(lab, 2)

    # A CA made per node (each node its own ca.crt): the others' certificates are not trusted.
    lab.sh("dbnode2", "cd /tmp && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k "
                      "-out /etc/patroni/tls/ca.crt -days 30 -subj '/CN=dbnode2 CA' -addext basicConstraints=critical,"
                      "CA:TRUE 2>/dev/null && rm k")
    v = failing(lab, 2)
    assert v.findings[0].diagnosis == "two-cas" and v.findings[0].problem.startswith("dbnode2's /etc/patroni/tls/ca.crt")
    install_certs(lab, a, "dbnode2")
    own_keys(lab, a)
    passing(lab, 2)


# -- step 3 --------------------------------------------------------------------------------------
def etcd_conf(a: Assignment, name: str, initial_cluster: str | None = None) -> str:
    node = a.node(name)
    cluster = initial_cluster or ",".join(f"{n.name}=https://{n.address}:{a.etcd_peer_port}" for n in a.etcd)
    tls = ("  cert-file: /etc/etcd/tls/etcd.crt\n  key-file: /etc/etcd/tls/etcd.key\n"
           "  trusted-ca-file: /etc/etcd/tls/ca.crt\n  client-cert-auth: true\n")
    return (f"name: {name}\ndata-dir: /var/lib/etcd/default\n"
            f"listen-client-urls: https://{node.address}:{a.etcd_client_port},https://127.0.0.1:{a.etcd_client_port}\n"
            f"advertise-client-urls: https://{node.address}:{a.etcd_client_port}\n"
            f"listen-peer-urls: https://{node.address}:{a.etcd_peer_port}\n"
            f"initial-advertise-peer-urls: https://{node.address}:{a.etcd_peer_port}\n"
            f"initial-cluster: {cluster}\ninitial-cluster-token: track-lab\ninitial-cluster-state: new\n"
            f"enable-grpc-gateway: true\nclient-transport-security:\n{tls}peer-transport-security:\n{tls}")


def write_etcd_conf(lab, a: Assignment, name: str, **kw) -> None:
    lab.sh(name, f"cat > {ETCD_CONF} <<'EOF'\n{etcd_conf(a, name, **kw)}EOF\n"
                 f"echo 'DAEMON_ARGS=\"--config-file {ETCD_CONF}\"' > /etc/default/etcd")


def start_etcd(lab, names) -> None:
    """`systemctl start` on each, close together: a new member's start waits for its peers."""
    for n in names:
        lab.sh(n, "systemctl start --no-block etcd")


def wait_state(lab, names, states: tuple[str, ...]) -> None:
    def settled() -> Verdict:
        got = {n: lab.sh(n, "systemctl show -p ActiveState --value etcd").stdout.strip() for n in names}
        return Verdict(all(s in states for s in got.values()), f"etcd: {got}")
    v = wait_until(settled, deadline_s=90, interval_s=1)
    assert v.ok, f"waiting for etcd {'/'.join(states)}: {v.reason}"


def ectl_alias(a: Assignment) -> str:
    eps = ",".join(f"https://{n.address}:{a.etcd_client_port}" for n in a.etcd)
    return (f"alias ectl='ETCDCTL_API=3 etcdctl --endpoints={eps} --cacert=/etc/etcd/tls/ca.crt "
            f"--cert=/etc/etcd/tls/etcdctl.crt --key=/etc/etcd/tls/etcdctl.key'")


def do_etcd(lab, a: Assignment) -> None:
    names = [n.name for n in a.etcd]
    on_all(lab, names, "systemctl stop etcd; rm -rf /var/lib/etcd/default")
    for n in names:
        write_etcd_conf(lab, a, n)
        lab.sh(n, f"echo \"{ectl_alias(a)}\" >> /root/.bashrc && systemctl enable etcd")
    start_etcd(lab, names)
    wait_state(lab, names, ("active",))


def test_step3_etcd_as_a_learner(bare_lab):
    lab = bare_lab
    a = ready_for(lab, 3)
    names = [n.name for n in a.etcd]
    v = failing(lab, 3)
    assert v.findings[0].diagnosis == "not-configured"

    # The first try: the package's etcd started as it comes (`systemctl start etcd` to see it run), then
    # the real settings written: each member keeps the one-member cluster of its first start. The seed's
    # own table: three endpoints, one member ID, each its own leader.
    on_all(lab, names, "systemctl start etcd && systemctl stop etcd")
    for n in names:
        write_etcd_conf(lab, a, n)
    start_etcd(lab, names)
    wait_state(lab, names, ("active",))
    v = failing(lab, 3)
    assert v.findings[0].diagnosis == "cloned-member-id", v.findings[0]
    assert "etcd1, etcd2, etcd3 report the same member ID" in v.findings[0].problem
    assert "each its own leader" in v.findings[0].problem
    assert "/var/lib/etcd/default" in v.findings[0].where
    hints = [lab.cli("track", "hint", "3").stdout for _ in range(2)]
    assert "IDs must differ" in hints[0] and "remove that data directory" in hints[1], hints

    # The fix, with a new mistake: the data directories removed, but etcd3's initial-cluster lists the
    # members under other names (etcd-1, ...), so etcd3 does not find itself there and does not start.
    on_all(lab, names, "systemctl stop etcd && rm -rf /var/lib/etcd/default")
    typo = ",".join(f"etcd-{n.name[-1]}=https://{n.address}:{a.etcd_peer_port}" for n in a.etcd)
    write_etcd_conf(lab, a, "etcd3", initial_cluster=typo)
    start_etcd(lab, names)
    wait_state(lab, ["etcd1", "etcd2"], ("active",))
    wait_state(lab, ["etcd3"], ("failed", "inactive"))
    v = failing(lab, 3)
    assert v.findings[0].diagnosis == "member-name", v.findings[0]
    assert v.findings[0].problem.startswith("etcd on etcd3 is ") and "initial-cluster" in v.findings[0].problem
    assert v.findings[0].where.startswith("on etcd3: journalctl -u etcd: ") and "local name" in v.findings[0].where

    # etcd3 fixed; the cluster now stands, but the course's `ectl` alias is not there yet, etcd is not
    # enabled at boot: each is named in turn.
    write_etcd_conf(lab, a, "etcd3")
    lab.sh("etcd3", "rm -rf /var/lib/etcd/default")
    start_etcd(lab, ["etcd3"])
    wait_state(lab, ["etcd3"], ("active",))
    v = failing(lab, 3)
    assert set(diagnoses(v)) == {"not-enabled"}, [f.as_dict() for f in v.findings]
    on_all(lab, names, "systemctl enable etcd")
    v = failing(lab, 3)
    assert set(diagnoses(v)) == {"ectl-missing"}, [f.as_dict() for f in v.findings]

    # An alias without the client certificate (etcd requires one): turned away, and said so.
    eps = ",".join(f"https://{n.address}:{a.etcd_client_port}" for n in a.etcd)
    on_all(lab, names, f"echo \"alias ectl='ETCDCTL_API=3 etcdctl --endpoints={eps} --cacert=/etc/etcd/tls/ca.crt'\""
                       " >> /root/.bashrc")
    v = failing(lab, 3)
    assert set(diagnoses(v)) == {"ectl-no-cert"}, [f.as_dict() for f in v.findings]
    assert v.findings[0].where.startswith("/root/.bashrc:") and v.findings[0].where.endswith(" on etcd1")
    # The fix: the alias with etcdctl's certificate, readable by root who runs it.
    on_all(lab, names, f"sed -i '/alias ectl=/d' /root/.bashrc && echo \"{ectl_alias(a)}\" >> /root/.bashrc")
    passing(lab, 3)
    assert {1, 2, 3} <= set(course.load(lab.ctx).passed)
    assert catalogue.get(3).slug == "etcd"


# -- step 4 --------------------------------------------------------------------------------------
DATA = "/var/lib/postgresql/18/main"
PG_BIN = "/usr/lib/postgresql/18/bin"


def do_postgres(lab, a: Assignment) -> None:
    on_all(lab, [n.name for n in a.db], f"install -d -o postgres -g postgres -m 0700 {DATA}")


def test_step4_postgres_as_a_learner(bare_lab):
    lab = bare_lab
    a = ready_for(lab, 4)
    v = failing(lab, 4)
    assert diagnoses(v) == ["no-data-dir", "no-data-dir"]

    # The wrong attempt: the folder made as root (root's, 0755), and on dbnode2 a PostgreSQL started by
    # hand to try it out, still holding 5432.
    on_all(lab, ["dbnode1", "dbnode2"], f"mkdir -p {DATA}")
    lab.sh("dbnode2", f"sudo -u postgres {PG_BIN}/initdb -D /var/lib/postgresql/try >/dev/null && "
                      f"sudo -u postgres {PG_BIN}/pg_ctl -D /var/lib/postgresql/try -o '-k /tmp' -l /tmp/try.log -w start"
                      " >/dev/null")
    v = failing(lab, 4)
    assert diagnoses(v) == ["data-dir-owner", "data-dir-mode", "stray-cluster", "data-dir-owner", "data-dir-mode"], \
        [f.as_dict() for f in v.findings]
    stray = v.findings[2]
    assert stray.problem.startswith("a PostgreSQL not run by Patroni already listens on 5432 on dbnode2")
    assert "started by hand" in stray.problem and stray.where.startswith("on dbnode2: sudo ss -ltnp 'sport = :5432'; ps -fp ")
    assert v.findings[0].where == f"on dbnode1: sudo ls -ld {DATA}"
    print(lab.cli("track", "hint", "4").stdout)

    lab.sh("dbnode2", f"sudo -u postgres {PG_BIN}/pg_ctl -D /var/lib/postgresql/try -m fast -w stop >/dev/null && "
                      "rm -rf /var/lib/postgresql/try")
    on_all(lab, ["dbnode1", "dbnode2"], f"chown postgres:postgres {DATA} && chmod 0700 {DATA}")
    passing(lab, 4)


# -- step 5 --------------------------------------------------------------------------------------
CONFIG = "/etc/patroni/config.yml"
TLS = "/etc/patroni/tls"
UNIT = """[Unit]
Description=Patroni
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=postgres
Group=postgres
RuntimeDirectory=postgresql
ExecStart=/opt/patroni/bin/patroni /etc/patroni/config.yml
KillMode=process
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


def patroni_conf(a: Assignment, name: str, *, v2: bool = False, sync_under_postgresql: bool = False,
                 listen_loopback: bool = False) -> str:
    """The learner's /etc/patroni/config.yml; the keyword arguments are the mistakes."""
    me = a.node(name)
    hosts = ",".join(f"{e.address}:{a.etcd_client_port}" for e in a.etcd)
    dcs = (f"etcd:\n  hosts: {hosts}\n  protocol: https\n" if v2 else f"etcd3:\n  hosts: {hosts}\n  protocol: https\n")
    dcs += f"  cacert: {TLS}/ca.crt\n  cert: {TLS}/etcd-client.crt\n  key: {TLS}/etcd-client.key\n"
    sync_dcs = "" if sync_under_postgresql else "    synchronous_mode: true\n"
    sync_pg = "  synchronous_mode: true\n" if sync_under_postgresql else ""
    listen = f"127.0.0.1:{a.postgres_port}" if listen_loopback else f"{me.address},127.0.0.1:{a.postgres_port}"
    stray = "    listen_addresses: '*'\n" if listen_loopback else ""
    return f"""scope: {a.scope}
namespace: /service/
name: {name}
restapi:
  listen: {me.address}:{a.restapi_port}
  connect_address: {me.address}:{a.restapi_port}
  certfile: {TLS}/restapi.crt
  keyfile: {TLS}/restapi.key
ctl:
  cacert: {TLS}/ca.crt
  certfile: {TLS}/patronictl.crt
  keyfile: {TLS}/patronictl.key
{dcs}bootstrap:
  dcs:
    ttl: 30
    loop_wait: 5
    retry_timeout: 10
{sync_dcs}    postgresql:
      use_pg_rewind: true
  initdb:
    - encoding: UTF8
    - data-checksums
postgresql:
  listen: {listen}
  connect_address: {me.address}:{a.postgres_port}
  data_dir: {DATA}
  bin_dir: {PG_BIN}
  pgpass: /var/lib/postgresql/.pgpass_patroni
{sync_pg}  authentication:
    superuser:
      username: postgres
      password: track-super
    replication:
      username: replicator
      password: track-repl
    rewind:
      username: rewinder
      password: track-rewind
  parameters:
    unix_socket_directories: /var/run/postgresql
    ssl: 'on'
    ssl_cert_file: {TLS}/postgres.crt
    ssl_key_file: {TLS}/postgres.key
    ssl_ca_file: {TLS}/ca.crt
{stray}  pg_hba:
    - local all all peer
    - hostssl replication replicator {a.subnet} scram-sha-256
    - hostssl all all {a.subnet} scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
"""


def write_patroni_conf(lab, a: Assignment, name: str, **mistakes) -> None:
    lab.sh(name, f"mkdir -p /etc/patroni && cat > {CONFIG} <<'EOF'\n{patroni_conf(a, name, **mistakes)}EOF\n"
                 f"chown postgres:postgres {CONFIG} && chmod 600 {CONFIG}")


def install_patroni(lab, a: Assignment) -> None:
    """The course's venv and pip install, on both db nodes at once (pip installs from the node's wheels)."""
    from concurrent.futures import ThreadPoolExecutor
    script = ("test -x /opt/patroni/bin/patroni || { python3 -m venv /opt/patroni && "
              "/opt/patroni/bin/pip install -q --disable-pip-version-check 'patroni[psycopg3,etcd3]'; }")
    with ThreadPoolExecutor(len(a.db)) as pool:
        list(pool.map(lambda n: lab.sh(n.name, script, timeout=600), a.db))


def ctl(lab, node: str, args: str) -> subprocess.CompletedProcess:
    return lab.sh(node, f"sudo -u postgres /opt/patroni/bin/patronictl -c {CONFIG} {args}", check=False)


def wait_for_step(lab, step: int, diagnosis: str | None, deadline_s: float = 180):
    """The step's check, again until it passes (diagnosis None) or names `diagnosis` first: Patroni takes
    its loop to get there."""
    def judged() -> Verdict:
        v = verdict(lab, step)
        first = v.findings[0].diagnosis if v.findings else None
        ok = v.passed if diagnosis is None else (not v.passed and first == diagnosis)
        return Verdict(ok, v.summary)
    got = wait_until(judged, deadline_s=deadline_s, interval_s=3)
    assert got.ok, f"step {step}: waited for {diagnosis or 'PASS'}, last: {got.reason}"
    v = verdict(lab, step)
    print(f"step {step} {'PASS' if v.passed else 'FAIL'}: {v.summary}"
          + (f"\n  where: {v.findings[0].where}" if v.findings else ""))
    return v


def start_patroni(lab, names) -> None:
    for n in names:
        lab.sh(n, f"cat > /etc/systemd/system/patroni.service <<'EOF'\n{UNIT}EOF\n"
                  "systemctl daemon-reload && systemctl enable --now patroni")


def do_patroni(lab, a: Assignment) -> None:
    install_patroni(lab, a)
    for n in a.db:
        write_patroni_conf(lab, a, n.name)
    start_patroni(lab, [a.db[0].name])
    start_patroni(lab, [n.name for n in a.db[1:]])
    wait_for_step(lab, 5, None)


def test_step5_patroni_as_a_learner(bare_lab):
    lab = bare_lab
    a = ready_for(lab, 5)
    first, second = (n.name for n in a.db)
    install_patroni(lab, a)
    v = failing(lab, 5)
    assert diagnoses(v) == ["no-config", "no-config"]

    # Wrong attempts in the file: an `etcd:` section (Patroni's v2 client) on one node, synchronous_mode
    # under `postgresql:` on the other (Patroni reads it only in bootstrap.dcs, or from etcd afterwards).
    write_patroni_conf(lab, a, first, v2=True)
    write_patroni_conf(lab, a, second, sync_under_postgresql=True)
    v = failing(lab, 5)
    assert diagnoses(v) == ["etcd-v2", "sync-outside-dcs"], [f.as_dict() for f in v.findings]
    line = lab.sh(first, f"grep -n '^etcd:' {CONFIG} | cut -d: -f1").stdout.strip()
    assert v.findings[0].where == f"{CONFIG} line {line} on {first}"
    line = lab.sh(second, f"grep -n '^  synchronous_mode' {CONFIG} | cut -d: -f1").stdout.strip()
    assert v.findings[1].where == f"{CONFIG} line {line} on {second}"
    assert "bootstrap.dcs" in v.findings[1].problem

    # Both fixed, but the leader's PostgreSQL told to listen on loopback, with listen_addresses under
    # postgresql.parameters (the seed's own difficulty: Patroni sets it from postgresql.listen). The
    # replica cannot clone from it.
    write_patroni_conf(lab, a, first, listen_loopback=True)
    write_patroni_conf(lab, a, second)
    start_patroni(lab, [first])
    start_patroni(lab, [second])
    v = wait_for_step(lab, 5, "listen-addresses")
    assert v.findings[0].problem.startswith(f"PostgreSQL on {first} does not listen on its lab address")
    assert "postgresql.parameters" in v.findings[0].problem and "overrides" in v.findings[0].problem
    assert v.findings[0].where.startswith(f"{CONFIG} line ") and v.findings[0].where.endswith(")")
    print(lab.cli("track", "hint", "5").stdout)

    # The fix: postgresql.listen on the lab address, and Patroni restarted to apply it.
    write_patroni_conf(lab, a, first)
    lab.sh(first, "systemctl restart patroni")
    wait_for_step(lab, 5, None, deadline_s=300)

    # After bootstrap the file's bootstrap.dcs no longer counts: synchronous mode switched off in etcd's
    # copy, the file still saying true, is named as such; setting it in etcd (edit-config) is the fix.
    assert ctl(lab, first, "edit-config --force -s synchronous_mode=false").returncode == 0
    v = wait_for_step(lab, 5, "sync-after-bootstrap", deadline_s=60)
    assert "patronictl edit-config" in v.findings[0].problem
    assert v.findings[0].where.startswith(f"patronictl -c {CONFIG} show-config; {CONFIG} line ")
    assert ctl(lab, first, "edit-config --force -s synchronous_mode=true").returncode == 0
    wait_for_step(lab, 5, None, deadline_s=120)


# -- step 6 --------------------------------------------------------------------------------------
HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"


def haproxy_cfg(a: Assignment, *, check_ssl: bool = True, ca: bool = True) -> str:
    tls = (" check-ssl" + (" ca-file /etc/haproxy/tls/ca.crt" if ca else "") + " crt /etc/haproxy/tls/haproxy-check.pem"
           if check_ssl else "")
    servers = "".join(f"    server {d.name} {d.address}:{a.postgres_port} check port {a.restapi_port}\n" for d in a.db)

    def listen(name: str, port: int, uri: str) -> str:
        return (f"listen {name}\n    bind *:{port}\n    option httpchk\n    http-check send meth GET uri {uri}\n"
                f"    http-check expect status 200\n    default-server inter 2s fall 2 rise 1 on-marked-down "
                f"shutdown-sessions{tls}\n{servers}\n")
    return ("global\n    maxconn 200\n\ndefaults\n    mode tcp\n    timeout connect 4s\n    timeout client 30m\n"
            "    timeout server 30m\n    timeout check 3s\n\n"
            + listen("primary", a.haproxy_primary_port, "/primary") + listen("replicas", a.haproxy_replicas_port, "/replica")
            + f"listen stats\n    mode http\n    bind *:{a.haproxy_stats_port}\n    stats enable\n    stats uri /\n")


def write_haproxy_cfg(lab, a: Assignment, **mistakes) -> None:
    lab.sh(a.haproxy.name, f"cat > {HAPROXY_CFG} <<'EOF'\n{haproxy_cfg(a, **mistakes)}EOF")


def do_haproxy(lab, a: Assignment) -> None:
    write_haproxy_cfg(lab, a)
    lab.sh(a.haproxy.name, "systemctl enable haproxy && systemctl restart haproxy")
    wait_for_step(lab, 6, None, deadline_s=60)


def test_step6_haproxy_as_a_learner(bare_lab):
    lab = bare_lab
    a = ready_for(lab, 6)
    hp = a.haproxy.name
    v = failing(lab, 6)
    assert v.findings[0].diagnosis == "haproxy-bind"

    # check-ssl with no CA file and no `verify none`: HAProxy 2.8 refuses the whole file.
    write_haproxy_cfg(lab, a, ca=False)
    v = failing(lab, 6)
    assert v.findings[0].diagnosis == "haproxy-verify", v.findings[0]
    line = lab.sh(hp, f"grep -n '^    server ' {HAPROXY_CFG} | head -1 | cut -d: -f1").stdout.strip()   # HAProxy names the server
    assert v.findings[0].where.startswith(f"{HAPROXY_CFG} line {line} on {hp}"), v.findings[0]

    # The checks over plain HTTP against Patroni's TLS REST API: HAProxy starts, and every server is DOWN.
    write_haproxy_cfg(lab, a, check_ssl=False)
    lab.sh(hp, "systemctl enable haproxy && systemctl restart haproxy")
    v = wait_for_step(lab, 6, "haproxy-http-check", deadline_s=60)
    assert v.findings[0].problem.startswith("every server is DOWN") and "plain HTTP" in v.findings[0].problem
    assert v.findings[0].where.startswith(f"{HAPROXY_CFG} line ")
    print(lab.cli("track", "hint", "6").stdout)

    write_haproxy_cfg(lab, a)
    lab.sh(hp, "systemctl reload-or-restart haproxy")
    wait_for_step(lab, 6, None, deadline_s=60)


# -- step 7 --------------------------------------------------------------------------------------
def leader_now(lab, a: Assignment) -> str:
    def asked() -> Verdict:
        out = ctl(lab, a.db[0].name, "list -f json")
        rows = __import__("json").loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else []
        lead = [row["Member"] for row in rows if row.get("Role") == "Leader" and row.get("State") == "running"]
        return Verdict(len(lead) == 1, lead[0] if lead else f"no running leader: {out.stdout or out.stderr}")
    got = wait_until(asked, deadline_s=90, interval_s=2)
    assert got.ok, got.reason
    return got.reason


def test_step7_the_courses_tests_as_a_learner(bare_lab):
    lab = bare_lab
    a = ready_for(lab, 7)
    v = failing(lab, 7)
    assert diagnoses(v) == ["no-switchover", "no-failover"], [f.as_dict() for f in v.findings]

    # The switchover, as the course does it.
    old = leader_now(lab, a)
    new = next(n.name for n in a.db if n.name != old)
    out = ctl(lab, old, f"switchover --leader {old} --candidate {new} --force")
    assert out.returncode == 0, out.stdout + out.stderr
    v = wait_for_step(lab, 7, "no-failover", deadline_s=120)
    assert diagnoses(v) == ["no-failover"], [f.as_dict() for f in v.findings]

    # The wrong "failover": the replica's Patroni stopped (the old leader, now following), not the leader's.
    assert leader_now(lab, a) == new
    lab.sh(old, "systemctl stop patroni")
    v = wait_for_step(lab, 7, "replica-killed", deadline_s=60)
    assert v.findings[0].problem.startswith(f"no failover yet: {old}, which was stopped at ")
    assert f"was a replica: the leader {new} kept its key" in v.findings[0].problem
    print(lab.cli("track", "hint", "7").stdout)
    lab.sh(old, "systemctl start patroni")
    wait_for_step(lab, 5, None, deadline_s=180)   # the replica streams again

    # The failover: the leader's Patroni stopped; the synchronous standby takes over, writes follow it.
    lab.sh(new, "systemctl stop patroni")
    v = wait_for_step(lab, 7, None, deadline_s=120)
    assert leader_now(lab, a) == old
    lab.sh(new, "systemctl start patroni")
