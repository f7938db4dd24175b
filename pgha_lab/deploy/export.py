"""`pgha-lab export ansible`: the checks (each bad input one sentence, nothing written), then the
certificates each target needs, then the project (project.py) and its README."""
from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from pgha_lab import node_paths
from pgha_lab.context import LabContext
from pgha_lab.deploy import project, targets
from pgha_lab.errors import LabError

DEFAULT_SSH_USER = "ubuntu"          # the account Ubuntu's cloud images and many installs make
INSTALL_HINT = ("Ansible is not installed; install it with `.venv/bin/pip install -e '.[deploy]'` "
                "(or `pip install 'ansible>=12,<13'`).")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


@dataclass(frozen=True)
class Exported:
    out: Path
    targets: list[project.Target]

    def inventories(self) -> list[str]:
        return [f"inventory/{t.name}.yml" for t in self.targets]


# The README's one long line, kept whole there (a command and its note) and cut here.
STEP_COMMAND = ("    ansible-playbook -i inventory/lab.yml site.yml --tags etcd      "
                "one step (hosts, tls, etcd, postgres, patroni, haproxy, verify)")


def default_out(ctx: LabContext) -> Path:
    """pgha-lab's own copy of a lab's project (run_playbook writes it again at every run)."""
    return ctx.paths.state / "ansible"


def ansible_playbook() -> str | None:
    """The ansible-playbook this pgha-lab would run: beside its interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.is_file() else shutil.which("ansible-playbook")


def export(ctx: LabContext, *, out: Path | None = None, hosts: list[str] | None = None,
           ssh_user: str = DEFAULT_SSH_USER, force: bool = False) -> Exported:
    """Write the lab's Ansible project to `out` (default: labs/<project>/ansible, always replaced)."""
    if not ctx.paths.topology_file.exists():
        raise LabError(f"there is no lab {ctx.project!r} to export ({ctx.paths.topology_file} is missing); "
                       f"create it with `pgha-lab up --bare` (or `pgha-lab up`) first.")
    if not _USER_RE.match(ssh_user or ""):
        raise LabError(f"--ssh-user takes a login name such as ubuntu, not {ssh_user!r}.")
    overrides = targets.parse_hosts(hosts or [], ctx.topology)
    chosen = [project.lab_target(ctx)] if ctx.topology.bare else []
    chosen.append(project.hosts_target(ctx, overrides, ssh_user))
    folder = (out or default_out(ctx)).resolve()
    force = force or out is None
    project.check_out(folder, force)
    project.make_certificates(ctx, chosen)
    result = Exported(folder, chosen)
    project.write(project.project_files(ctx, chosen, readme(ctx, result)), folder, force)
    return result


def readme(ctx: LabContext, result: Exported) -> str:
    topo = ctx.topology
    names = {t.name for t in result.targets}
    hosts = next(t for t in result.targets if t.name == targets.HOSTS)
    rows = "\n".join(f"| {n.name} | {n.role.value} | {n.address} |" for n in hosts.topology.nodes)
    lab_part = f"""
## On the lab's bare nodes (`pgha-lab up --bare`)

    ansible-playbook -i inventory/lab.yml site.yml

The nodes are reached with `docker exec` (the community.docker.docker connection), as root. The
software is already on them, so the install tasks change nothing; Patroni is installed from the
wheels each db node carries. `pgha-lab --project {topo.project} status` then shows the cluster.
""" if targets.LAB in names else ""
    return f"""# pgha-lab's cluster, by Ansible: lab {topo.project!r}

Written by `pgha-lab export ansible`. It builds the cluster pgha-lab runs (etcd 3.4 with TLS, PostgreSQL
{node_paths.PG_MAJOR} and Patroni, HAProxy 2.8) on bare Ubuntu 24.04 hosts, in the course's order.
Settings: {ctx.settings.summary()}; {ctx.profile.name} timing profile.

Ansible from PyPI (`ansible` 12.x, which bundles community.docker):

    pip install 'ansible>=12,<13'
{lab_part}
## On real hosts over SSH

    ansible-playbook -i inventory/hosts.yml site.yml

| host | role | address |
|------|------|---------|
{rows}

As `{hosts.inventory['all']['vars']['ansible_user']}` with sudo (`--ssh-user` at export, or edit inventory/hosts.yml);
other addresses: `pgha-lab export ansible --host NAME=ADDRESS ...`, which makes certificates for them.
The playbook installs what is missing: etcd-server and haproxy from Ubuntu's archive, PostgreSQL
from the PostgreSQL project's apt repository (no cluster created: Patroni makes it), and Patroni
from PyPI into /opt/patroni with every version pinned in patroni.lock. The hosts need Python 3 and
outbound HTTPS for the repositories. This path was not run by pgha-lab's tests (they have no SSH
hosts); the lab's bare nodes run the very same tasks.

## The steps

{STEP_COMMAND}

1. `hosts`: each node's name, every node in /etc/hosts, the software where it is missing;
2. `tls`: the CA and each node's certificates, the keys readable by the service's user alone;
3. `etcd`: the members with client and peer TLS, started together, each waited for over TLS;
4. `postgres`: nothing on 5432 in Patroni's way, the data directory;
5. `patroni`: the venv, config.yml, its unit; the first member leads, the others clone it;
6. `haproxy`: 5432 to the leader, 5433 to the replicas, waited for on the stats page;
7. `verify`: `ectl endpoint status`, `patronictl list`, psql through HAProxy with verify-full.

A second run changes nothing. A running service whose files a run changes takes them at once
(etcd restarts, Patroni and HAProxy reload).

## What is in here

- `site.yml`, `files.yml`: the steps. Nothing in them writes a config: every file they install is
  in `files/<target>/<node>/`, made by pgha-lab (its renderers, its CA); export again to change one.
- `group_vars/all.yml`: the topology's ports, the settings and profile, the versions;
  `host_vars/`: where each file goes, its owner and mode.
- `files/*/*/tls/` holds private keys and `files/*/dbnode*/patroni.env` the cluster's passwords:
  the folder is private to you (0700); keep it so.
"""
