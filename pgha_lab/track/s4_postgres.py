"""Step 4, PostgreSQL prerequisites on the db nodes: PostgreSQL 18 where Ubuntu puts it, no other
cluster on 5432 to get in Patroni's way, the postgres account, and an empty data directory it owns
with the mode PostgreSQL insists on."""
from __future__ import annotations

from functools import partial

from pgha_lab import node_paths
from pgha_lab.track.assignment import Assignment
from pgha_lab.track.model import Finding, Readings, Step, StepVerdict, Task
from pgha_lab.track.readers import Reader

DATA = node_paths.PG_DATA
PARENT = DATA.rsplit("/", 1)[0]
# What listens on 5432 and which systemd unit started it (patroni.service, postgresql@18-main.service,
# or none: started by hand).
# ss names the process only where root may trace it (a container without CAP_SYS_PTRACE shows no pid for
# another user's socket): then each postmaster (a postgres whose parent is not one) whose postmaster.pid
# says 5432.
LISTENER = ("pids=$(ss -ltnpH 'sport = :5432' | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); "
            "if [ -z \"$pids\" ] && ss -ltnH 'sport = :5432' | grep -q .; then for p in $(pgrep -x postgres); do "
            "[ \"$(ps -o comm= -p $(ps -o ppid= -p $p))\" = postgres ] && continue; "
            "d=$(tr '\\0' '\\n' </proc/$p/cmdline | sed -n '/^-D$/{n;p}'); "
            "[ -n \"$d\" ] && [ \"$(sed -n 4p \"$d/postmaster.pid\" 2>/dev/null)\" != 5432 ] && continue; "
            "pids=\"$pids $p\"; done; fi; "
            "for pid in $pids; do echo \"$pid $(ps -o unit= -p $pid) $(tr '\\0' ' ' </proc/$pid/cmdline)\"; done")
CLUSTERS = ("ls -d /etc/postgresql/*/* 2>/dev/null; "
            "systemctl list-units 'postgresql*' --all --plain --no-legend 2>/dev/null")


def read(reader: Reader, a: Assignment) -> Readings:
    out = Readings()

    def visit(node: str) -> None:
        got = reader.files(node, commands={
            "version": (f"{node_paths.PG_BIN}/postgres --version", f"{node_paths.PG_BIN}/postgres --version"),
            "listener": (LISTENER, "sudo ss -ltnp 'sport = :5432'"),
            "clusters": (CLUSTERS, "pg_lsclusters; systemctl list-units 'postgresql*'"),
            "account": ("getent passwd postgres", "getent passwd postgres"),
            "dirs": (f"for d in {node_paths.PG_HOME} {PARENT} {DATA}; do if [ -d $d ]; "
                     f"then echo \"$d $(stat -c '%U %G %a' $d) $(ls -A $d | wc -l)\"; "
                     f"else echo \"$d missing\"; fi; done",
                     f"sudo ls -ld {node_paths.PG_HOME} {PARENT} {DATA}"),
        })
        out.update({f"{node}:{k}": r for k, r in got.items()})
    reader.many({n.name: partial(visit, n.name) for n in a.db})
    return out


def grade(a: Assignment, r: Readings) -> StepVerdict:
    v = StepVerdict(4, False)
    f = v.findings
    for n in (x.name for x in a.db):
        version = r[f"{n}:cmd:version"]
        if not version.ok:
            f.append(Finding(f"{n} cannot be read: {version.error}", "`pgha-lab status`"))
            continue
        if version.value["rc"] != 0 or "18" not in version.value["out"]:
            f.append(Finding(f"PostgreSQL 18 is not installed at {node_paths.PG_BIN} on {n}",
                             f"on {n}: ls {node_paths.PG_BIN}", "no-postgres"))
        for line in r[f"{n}:cmd:listener"].value["out"].splitlines():
            pid, _, rest = line.partition(" ")
            unit, _, args = rest.partition(" ")
            if unit == "patroni.service":
                continue
            started = f"by {unit}" if unit and unit != "-" else "by hand (in no service)"
            packaged = unit.startswith("postgresql@")
            f.append(Finding(
                f"a PostgreSQL not run by Patroni already listens on 5432 on {n} (pid {pid}, started {started}"
                + (": Ubuntu's packaged cluster" if packaged else "") + "): Patroni's own would not get the port, "
                "and it may hold Patroni's data directory", f"on {n}: sudo ss -ltnp 'sport = :5432'; "
                + (f"systemctl status {unit}" if packaged else f"ps -fp {pid}"), "stray-cluster"))
        clusters = [line.split()[0] for line in r[f"{n}:cmd:clusters"].value["out"].splitlines()
                    if line.startswith("/etc/postgresql/")]
        if clusters:
            f.append(Finding(f"{n} has a packaged cluster ({', '.join(clusters)}) that starts at boot on 5432, "
                             f"beside Patroni's", f"on {n}: pg_lsclusters; ls {clusters[0]}", "stray-cluster"))
        account = r[f"{n}:cmd:account"].value["out"].strip().split(":")
        if len(account) < 7:
            f.append(Finding(f"there is no postgres account on {n}", f"on {n}: getent passwd postgres", "account"))
        elif account[5] != node_paths.PG_HOME:
            f.append(Finding(f"the postgres account's home on {n} is {account[5]}, not {node_paths.PG_HOME}",
                             f"on {n}: getent passwd postgres", "account"))
        dirs = {}
        for line in r[f"{n}:cmd:dirs"].value["out"].splitlines():
            words = line.split()
            dirs[words[0]] = words[1:]
        data = dirs.get(DATA, ["missing"])
        if data[0] == "missing":
            f.append(Finding(f"the data directory {DATA} does not exist on {n}", f"on {n}: sudo ls -ld {PARENT}",
                             "no-data-dir"))
            continue
        owner, _, mode = data[:3]
        if owner != "postgres":
            f.append(Finding(f"the data directory {DATA} on {n} belongs to {owner}: PostgreSQL runs as postgres and "
                             f"must own it", f"on {n}: sudo ls -ld {DATA}", "data-dir-owner"))
        if mode not in ("700", "750"):
            f.append(Finding(f"the data directory {DATA} on {n} has mode "
                             f"{int(mode, 8):04o}: PostgreSQL refuses to start "
                             f"on a data directory others may read (0700 or 0750)", f"on {n}: sudo ls -ld {DATA}",
                             "data-dir-mode"))
    if not f:
        v.passed = True
        v.confirmed = [f"PostgreSQL 18 on {len(a.db)} db nodes, nothing else on 5432",
                       f"{DATA} owned by postgres with mode 0700"]
    return v


STEP = Step(
    id=4, slug="postgres", title="PostgreSQL: what Patroni needs before it starts",
    goal="Each db node has PostgreSQL 18, no cluster of its own in the way, and a data directory ready for Patroni.",
    background=(
        "Patroni runs PostgreSQL itself: it calls initdb on the first node, clones the others with "
        "pg_basebackup, and starts and stops every postmaster. A cluster the package made (Ubuntu's 18/main on "
        "5432, started by postgresql@18-main) or one started by hand holds the port and the data directory "
        "Patroni wants. PostgreSQL refuses a data directory that is not owned by the user it runs as or that "
        "others may read (mode 0700, or 0750). The course sets up the accounts before Patroni: here the "
        "postgres account owns /var/lib/postgresql, and the database roles come with Patroni's configuration."),
    tasks=(
        Task("dbnode1, dbnode2", "Check nothing runs on 5432 (`sudo ss -ltnp`); a packaged cluster goes with "
                                 "`pg_dropcluster --stop 18 main`."),
        Task("dbnode1, dbnode2", f"Create {DATA}, empty, owned by postgres:postgres, mode 0700."),
    ),
    hints=(
        "`sudo ss -ltnp 'sport = :5432'` shows what holds the port, and `ps -o unit= -p PID` which service started it.",
        f"`sudo install -d -o postgres -g postgres -m 0700 {DATA}` makes the folder and its parents in one go.",
    ),
    read=read, grade=grade, minutes=15)
