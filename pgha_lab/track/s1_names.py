"""Step 1, names: every node carries its lab name, and resolves every node's name (its own too) to
that node's lab address from /etc/hosts, as VMs on a host-only network must (there is no DNS)."""
from __future__ import annotations

import shlex
from functools import partial

from pgha_lab.track import configs
from pgha_lab.track.assignment import Assignment
from pgha_lab.track.model import Finding, Readings, Step, StepVerdict, Task
from pgha_lab.track.readers import Reader

UBUNTU_SELF = "127.0.1.1"   # the line Ubuntu's installer writes for the machine's own name


def key(node: str, what: str) -> str:
    return f"{node}:{what}"


def read(reader: Reader, assignment: Assignment) -> Readings:
    names = [n.name for n in assignment.nodes]
    script = "hostname; " + " ".join(f"echo \"{n} $(getent hosts {shlex.quote(n)} | head -1)\";" for n in names)
    out = Readings()

    def visit(node: str) -> None:
        got = reader.files(node, texts=["/etc/hostname", "/etc/hosts"],
                           commands={"resolve": (script, "hostname; getent hosts NAME (for every node)")})
        out[key(node, "resolve")] = got["cmd:resolve"]
        for p in ("/etc/hostname", "/etc/hosts"):
            out[key(node, p)] = got[f"text:{p}"]
    reader.many({n: partial(visit, n) for n in names})
    return out


def grade(a: Assignment, readings: Readings) -> StepVerdict:
    verdict = StepVerdict(1, False)
    unresolved: list[Finding] = []
    for node in a.nodes:
        r = readings[key(node.name, "resolve")]
        if not r.ok:
            verdict.findings.append(Finding(f"{node.name} cannot be reached to read its names: {r.error}",
                                            f"`pgha-lab status` shows whether {node.name} runs"))
            continue
        lines = r.value["out"].splitlines()
        hostname = lines[0].strip() if lines else ""
        etc_hostname = readings[key(node.name, "/etc/hostname")]
        persisted = etc_hostname.value["text"].strip() if etc_hostname.ok else ""
        if hostname != node.name:
            verdict.findings.append(Finding(
                f"{node.name}'s hostname is {hostname!r}, not its lab name", f"on {node.name}: hostnamectl",
                "hostname"))
        elif persisted != node.name:
            verdict.findings.append(Finding(
                f"{node.name}'s hostname is set for now, but /etc/hostname says {persisted!r}, so a reboot undoes it",
                f"on {node.name}: cat /etc/hostname (hostnamectl set-hostname writes both)", "hostname"))
        hosts = readings[key(node.name, "/etc/hosts")]
        entries = configs.hosts_entries(hosts.value["text"]) if hosts.ok else []
        answers = {}
        for line in lines[1:]:
            name, _, rest = line.partition(" ")
            answers[name] = rest.split()[0] if rest.split() else ""
        for other in a.nodes:
            got = answers.get(other.name, "")
            if got == other.address:
                continue
            line = next((n for n, addr, names in entries if other.name in names), None)
            where = f"/etc/hosts line {line} on {node.name}" if line else f"/etc/hosts on {node.name}"
            if not got:
                unresolved.append(Finding(f"{node.name} cannot resolve {other.name}",
                                          f"on {node.name}: getent hosts {other.name}; {where}", "unresolved-name"))
            elif got == UBUNTU_SELF or got.startswith("127."):
                unresolved.append(Finding(
                    f"{node.name} resolves {other.name} to {got}, a loopback address: services that advertise "
                    f"the name would advertise an address no other node can reach",
                    where, "name-on-loopback"))
            else:
                unresolved.append(Finding(f"{node.name} resolves {other.name} to {got}, not {other.name}'s lab address",
                                          where, "wrong-address"))
    verdict.findings.extend(unresolved)
    if not verdict.findings:
        verdict.passed = True
        verdict.confirmed = [f"{len(a.nodes)} nodes carry their lab names, also in /etc/hostname",
                             f"every node resolves all {len(a.nodes)} names to their lab addresses from /etc/hosts"]
    return verdict


STEP = Step(
    id=1, slug="hosts", title="Names: hostnames and /etc/hosts",
    goal="Every machine knows its own name and finds every other machine by name.",
    background=(
        "etcd members, Patroni and the certificates all refer to machines by name. On VirtualBox's host-only "
        "network there is no DNS, so each VM learns the others' names from /etc/hosts (these nodes resolve "
        "names from /etc/hosts only, as such VMs do). A cloned VM keeps the name of the machine it was cloned "
        "from, and Ubuntu maps a machine's own name to 127.0.1.1: both surface later as members advertising "
        "the wrong name or address."),
    tasks=(
        Task("every node", "Set the hostname to the node's lab name (`hostnamectl set-hostname`, which also "
                           "writes /etc/hostname)."),
        Task("every node", "Add every node's lab name and address to /etc/hosts (`pgha-lab status` lists "
                           "the addresses), its own included, with no loopback line for it."),
    ),
    hints=(
        "`getent hosts etcd2` on a node shows what that node resolves the name to; `grep -n etcd2 /etc/hosts` "
        "shows which line says so.",
        "Ubuntu writes `127.0.1.1 <hostname>` into /etc/hosts: a machine whose own name resolves to loopback "
        "advertises an address nobody else can reach.",
        "The same block of lines (one per node: address, then name) goes into /etc/hosts on every node.",
    ),
    read=read, grade=grade, minutes=10)
