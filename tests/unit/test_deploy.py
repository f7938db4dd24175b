"""`export ansible` without Docker: the project's shape, its two inventories, that every file it
installs is pgha-lab's own rendering, and its refusals (one sentence, nothing written)."""
from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from pgha_lab import render, secrets
from pgha_lab.context import LabContext
from pgha_lab.deploy import export, run, targets
from pgha_lab.errors import LabError
from pgha_lab.profiles import get as profile
from pgha_lab.render import systemd
from pgha_lab.topology import Topology

REPO = Path(__file__).resolve().parents[2]
SEED = {"etcd1": "192.168.56.11", "etcd2": "192.168.56.12", "etcd3": "192.168.56.13",
        "dbnode1": "192.168.56.10", "dbnode2": "192.168.56.20", "haproxy": "192.168.56.30"}


def make_lab(home: Path, bare: bool = True, project: str = "exp") -> LabContext:
    """A lab's host files as `up --bare` writes them (no Docker needed for that part)."""
    (home / "images").symlink_to(REPO / "images")
    topo = Topology.build(project=project, subnet="10.58.77.0/24", bare=bare)
    ctx = LabContext.open(home, project)
    render.write_lab(ctx.paths, topo, profile("fast"))
    ctx.save_profile("fast")
    return LabContext.open(home, project)


@pytest.fixture()
def lab(tmp_path):
    return make_lab(tmp_path)


def read_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def sans(cert: Path) -> set[str]:
    ext = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    return {*ext.get_values_for_type(x509.DNSName), *map(str, ext.get_values_for_type(x509.IPAddress))}


def test_the_real_host_inventory_holds_the_seed_s_names_and_addresses(lab, tmp_path):
    out = export.export(lab, out=tmp_path / "p").out
    inv = read_yaml(out / "inventory" / "hosts.yml")["all"]
    assert inv["vars"]["ansible_connection"] == "ssh" and inv["vars"]["ansible_become"] is True
    groups = inv["children"]
    assert {g: sorted(groups[g]["hosts"]) for g in groups} == {
        "etcd": ["etcd1", "etcd2", "etcd3"], "dbnodes": ["dbnode1", "dbnode2"], "haproxy": ["haproxy"]}
    hosts = {name: h for g in groups.values() for name, h in g["hosts"].items()}
    assert {n: h["ansible_host"] for n, h in hosts.items()} == SEED
    assert {n: h["pgha_address"] for n, h in hosts.items()} == SEED
    # What is installed there names those addresses, certificates included, and never the lab's.
    conf = read_yaml(out / "files/hosts/etcd2/etcd.conf.yml")
    assert conf["listen-peer-urls"] == "https://192.168.56.12:2380"
    assert "etcd1=https://192.168.56.11:2380" in conf["initial-cluster"]
    assert {"etcd2", "192.168.56.12"} <= sans(out / "files/hosts/etcd2/tls/etcd.crt")
    assert {"192.168.56.10", "192.168.56.30"} <= sans(out / "files/hosts/dbnode1/tls/postgres.crt")
    for f in (out / "files" / "hosts").rglob("*"):
        if f.is_file() and f.suffix in (".yml", ".cfg", ".py", ".env", ".service", ".default"):
            assert "10.58.77." not in f.read_text(), f
    hba = read_yaml(out / "files/hosts/dbnode1/patroni.yml")["postgresql"]["pg_hba"]
    assert any("192.168.56.0/24" in line for line in hba)


def test_the_lab_inventory_reaches_the_bare_containers_with_docker_exec(lab, tmp_path):
    out = export.export(lab, out=tmp_path / "p").out
    inv = read_yaml(out / "inventory" / "lab.yml")["all"]
    assert inv["vars"]["ansible_connection"] == "community.docker.docker"
    etcd1 = inv["children"]["etcd"]["hosts"]["etcd1"]
    assert etcd1 == {"ansible_host": "exp-etcd1", "pgha_address": "10.58.77.11"}


def test_a_ready_lab_exports_the_real_host_target_only(tmp_path):
    out = export.export(make_lab(tmp_path, bare=False), out=tmp_path / "p").out
    assert sorted(p.name for p in (out / "inventory").iterdir()) == ["hosts.yml"]


def test_every_installed_file_is_pgha_lab_s_own_rendering(lab, tmp_path):
    out = export.export(lab, out=tmp_path / "p").out
    topo, boot = lab.topology, profile("fast")
    for node in topo.nodes:
        folder = out / "files" / "lab" / node.name
        expected = {f.name: f.content for f in render.node_files(topo, node, lab.profile, boot)}
        expected.update({f.name: f.content for f in systemd.render(topo, node)})
        for name, content in expected.items():
            assert (folder / name).read_text() == content, (node.name, name)
        for name, source in __import__("pgha_lab.tls", fromlist=["node_bundle"]).node_bundle(topo, node).items():
            assert (folder / "tls" / name).read_bytes() == (lab.paths.certs / source).read_bytes()
        # host_vars say where each of them goes: the renderers' own container paths.
        plan = read_yaml(out / "host_vars" / f"{node.name}.yml")["pgha_files"]
        dests = {f["src"]: f["dest"] for step in plan.values() for f in step}
        for f in [*render.node_files(topo, node, lab.profile, boot), *systemd.render(topo, node)]:
            assert dests[f.name] == f.container_path
    assert (out / "files/lab/dbnode1/patroni.env").read_text() == secrets.load(lab.paths).render()
    assert (out / "files/lab/etcd1/ectl").read_bytes() == (REPO / "images/etcd/ectl").read_bytes()
    # The playbook templates no file: nothing it installs passes through Jinja.
    site = (out / "site.yml").read_text() + (out / "files.yml").read_text()
    assert "template:" not in site and "ansible.builtin.template" not in site
    assert (out / "files/lab/dbnode1/patroni.env").stat().st_mode & 0o777 == 0o600
    assert out.stat().st_mode & 0o777 == 0o700


def test_site_yml_runs_the_course_s_steps_in_order(lab, tmp_path):
    out = export.export(lab, out=tmp_path / "p").out
    plays = read_yaml(out / "site.yml")
    order = []
    for play in plays:
        tag = play["tags"]
        if tag != "always" and tag not in order:
            order.append(tag)
    assert order == list(run.TAGS) == ["hosts", "tls", "etcd", "postgres", "patroni", "haproxy", "verify"]


def test_host_re_issues_the_certificates_for_the_addresses_given(lab, tmp_path):
    work = {"etcd1": "10.20.2.1", "etcd2": "10.20.2.2", "etcd3": "10.20.2.3", "dbnode1": "10.20.0.5",
            "dbnode2": "10.20.0.6", "haproxy": "10.20.1.9"}
    out = export.export(lab, out=tmp_path / "p", hosts=[f"{n}={a}" for n, a in work.items()]).out
    hosts = read_yaml(out / "inventory/hosts.yml")["all"]["children"]
    assert hosts["dbnodes"]["hosts"]["dbnode1"]["ansible_host"] == "10.20.0.5"
    assert "10.20.0.5" in sans(out / "files/hosts/dbnode1/tls/postgres.crt")
    assert "10.20.1.9" in sans(out / "files/hosts/dbnode1/tls/postgres.crt")   # clients reach it through HAProxy
    hba = read_yaml(out / "files/hosts/dbnode1/patroni.yml")["postgresql"]["pg_hba"]
    net = next(ipaddress.ip_network(w) for line in hba for w in line.split() if "/" in w and w.startswith("10."))
    assert net == ipaddress.ip_network("10.20.0.0/22")   # the smallest network holding them all
    # The lab's own certificates are untouched: the real hosts' live beside them.
    assert "10.20.0.5" not in sans(lab.paths.certs / "dbnode1-postgres.crt")
    assert (lab.paths.certs / "hosts" / "dbnode1-postgres.crt").is_file()


def test_a_second_export_makes_the_same_files(lab, tmp_path):
    first = export.export(lab, out=tmp_path / "a").out
    second = export.export(lab, out=tmp_path / "b").out
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files and all((first / f).read_bytes() == (second / f).read_bytes() for f in files)


@pytest.mark.parametrize("hosts, sentence", [
    (["dbnode9=10.0.0.1"], "--host names an unknown node 'dbnode9'; the lab's nodes are etcd1, etcd2, etcd3, "
                           "dbnode1, dbnode2, haproxy."),
    (["dbnode1=10.0.0.300"], "--host dbnode1=10.0.0.300: '10.0.0.300' is not an IPv4 address such as 192.168.56.10."),
    (["dbnode1"], "--host takes NAME=ADDRESS such as dbnode1=192.168.56.10, not 'dbnode1'."),
    (["dbnode1=192.168.56.20"], "dbnode1 and dbnode2 would both be 192.168.56.20; give every node its own address."),
    (["dbnode1=10.0.0.5", "dbnode2=10.0.0.5"], "dbnode1 and dbnode2 would both be 10.0.0.5; give every node its "
                                               "own address."),
    (["dbnode1=10.0.0.5"], "the hosts' addresses (192.168.56.11, 192.168.56.12, 192.168.56.13, 10.0.0.5, "
                           "192.168.56.20, 192.168.56.30) do not share a /16; give addresses of one network."),
])
def test_bad_hosts_are_refused_in_one_sentence_and_nothing_is_written(lab, tmp_path, hosts, sentence):
    with pytest.raises(LabError) as exc:
        export.export(lab, out=tmp_path / "p", hosts=hosts)
    assert str(exc.value) == sentence
    assert not (tmp_path / "p").exists() and not (lab.paths.certs / "hosts").exists()


def test_a_folder_that_holds_something_is_refused_without_force(lab, tmp_path):
    out = tmp_path / "p"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(LabError, match=r"is not empty; give another --out, or --force"):
        export.export(lab, out=out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    export.export(lab, out=out, force=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "site.yml").is_file()


def test_a_lab_never_created_cannot_be_exported(tmp_path):
    ctx = LabContext.open(tmp_path, "never")
    with pytest.raises(LabError, match=r"there is no lab 'never' to export .*create it with `pgha-lab up --bare`"):
        export.export(ctx, out=tmp_path / "p")
    assert not (tmp_path / "p").exists() and not (tmp_path / "certs").exists()


def test_export_needs_no_ansible_and_running_without_it_says_how_to_install_it(lab, tmp_path, monkeypatch):
    # Exporting in an interpreter where `import ansible` fails: it writes the project all the same.
    code = ("import sys; sys.modules['ansible'] = None\n"
            "from pathlib import Path\nfrom pgha_lab.context import LabContext\nfrom pgha_lab.deploy import export\n"
            f"print(export.export(LabContext.open({str(tmp_path)!r}, 'exp'), out=Path({str(tmp_path / 'q')!r})).out)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "q" / "site.yml").is_file()
    monkeypatch.setattr(export, "ansible_playbook", lambda: None)   # as on a host without it
    with pytest.raises(LabError) as exc:
        run.run_playbook(lab, ["etcd"])
    assert str(exc.value) == export.INSTALL_HINT and str(exc.value).count(". ") == 0


def test_an_unknown_step_is_refused(lab):
    with pytest.raises(LabError, match="unknown playbook step 'certs'; the steps are hosts, tls, etcd"):
        run.run_playbook(lab, ["certs"])


def test_the_recap_is_read_per_host():
    out = ("PLAY RECAP *********\n"
           "etcd1                      : ok=12   changed=3    unreachable=0    failed=0    skipped=2    rescued=0    ignored=0\n"
           "haproxy                    : ok=5    changed=0    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0\n")
    hosts = run.parse_recap(out)
    assert hosts["etcd1"].changed == 3 and hosts["haproxy"].failed == 1 and hosts["etcd1"].skipped == 2
    fatal = ("TASK [Wait for the member's health] ***\n"
             'fatal: [etcd2]: FAILED! => {"attempts": 120, "changed": false, "msg": "Status code was -1"}\n')
    assert run.first_failure(fatal) == "task \"Wait for the member's health\" on etcd2: Status code was -1"


def test_hosts_paths_keep_the_real_hosts_material_apart(tmp_path):
    paths = targets.HostsPaths(tmp_path, "x")
    assert paths.certs == tmp_path / "certs" / "x" / "hosts" and paths.topology_file == tmp_path / "labs/x/topology.yaml"
