"""Step 3, etcd: three members with their own IDs in one cluster with one leader, TLS with client
certificates on the client and the peer port, the v3 API with the gRPC gateway Patroni's etcd3
client talks to, the service enabled at boot, and an `ectl` alias that works as in the course."""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from pgha_lab.track import configs
from pgha_lab.track.assignment import Assignment, NodeSpec
from pgha_lab.track.model import Finding, Reading, Readings, Source, Step, StepVerdict, Task
from pgha_lab.track.readers import Reader

UNIT = "etcd"
DEFAULT_FILE = "/etc/default/etcd"
CONFIG_CANDIDATES = ("/etc/etcd/etcd.conf.yml", "/etc/etcd/etcd.conf.yaml")
SHOW_PROPS = ("ActiveState", "SubState", "UnitFileState", "ExecStart", "MainPID", "Result", "LoadState")
ALIAS_FILES = "/root/.bashrc /root/.bash_aliases /etc/bash.bashrc /etc/profile.d/*.sh /home/*/.bashrc"


def _show(unit: str) -> str:
    return f"systemctl show {unit} --no-pager " + " ".join(f"-p {p}" for p in SHOW_PROPS)


PROC = ("pid=$(systemctl show -p MainPID --value etcd); if [ \"${pid:-0}\" -gt 0 ]; then "
        "tr '\\0' '\\n' </proc/$pid/cmdline; echo '==env'; tr '\\0' '\\n' </proc/$pid/environ | grep '^ETCD_'; fi")


def read(reader: Reader, a: Assignment) -> Readings:
    out = Readings()

    def visit(node: NodeSpec) -> None:
        first = reader.files(node.name, texts=[DEFAULT_FILE, *CONFIG_CANDIDATES], commands={
            "show": (_show(UNIT), f"systemctl status {UNIT}"),
            "proc": (PROC, "cat /proc/$(pidof etcd)/cmdline"),
            "journal": (f"journalctl -u {UNIT} -n 300 --no-pager -o short-iso", f"journalctl -u {UNIT}"),
            "alias": (f"grep -Hn 'alias ectl=' {ALIAS_FILES} 2>/dev/null", "grep -n 'alias ectl' ~/.bashrc"),
            "ectl-path": ("HOME=/root bash -ic 'type -P ectl' 2>/dev/null", "type -a ectl"),
            "ectl": ("HOME=/root bash -ic 'ectl endpoint status -w json' "
                     "2>&1 | grep -v 'job control\\|terminal process group'",
                     "ectl endpoint status -w table"),
        })
        for k, r in first.items():
            out[f"{node.name}:{k}"] = r
        if _props(first["cmd:show"]).get("ActiveState") != "active":
            return   # nothing answers on the network: the grader stops at the service and its log
        member = member_settings(a, node, out)
        if member.config and member.config not in CONFIG_CANDIDATES:
            out[f"{node.name}:text:{member.config}"] = reader.file(node.name, member.config)
            member = member_settings(a, node, out)
        url = member.client_url_for(node.address, a.etcd_client_port)
        tls_args = member.etcdctl_tls()
        ctl = f"ETCDCTL_API=3 etcdctl --endpoints={url} {tls_args} --command-timeout=4s"
        second = reader.files(node.name, commands={
            "status": (f"{ctl} endpoint status -w json", f"etcdctl --endpoints={url} ... endpoint status -w table"),
            "members": (f"{ctl} member list -w json", f"etcdctl --endpoints={url} ... member list -w table"),
        })
        for k, r in second.items():
            out[f"{node.name}:{k}"] = r
        out[f"{node.name}:gateway"] = reader.https(
            node.name, f"{url}/v3/maintenance/status", ca=member.ca, cert=member.cert, key=member.key,
            method="POST", body="{}", what=f"curl ... -X POST {url}/v3/maintenance/status -d '{{}}'")
        out[f"{node.name}:tls-client"] = reader.handshake(node.address, a.etcd_client_port)
        out[f"{node.name}:tls-peer"] = reader.handshake(node.address, a.etcd_peer_port)
    reader.many({n.name: partial(visit, n) for n in a.etcd})
    return out


def dcs_read(reader: Reader, a: Assignment, prefix: str) -> Readings:
    """Every key under `prefix` (Patroni's namespace), read with etcdctl on an etcd member, with that
    member's own certificate, as a grader logged in there would (all members asked at once, the first
    answer kept); key "dcs"."""
    def ask(node: NodeSpec) -> Reading:
        got = reader.files(node.name, texts=[DEFAULT_FILE, *CONFIG_CANDIDATES], commands={
            "show": (_show(UNIT), f"systemctl status {UNIT}"), "proc": (PROC, "cat /proc/$(pidof etcd)/cmdline")})
        member = member_settings(a, node, Readings({f"{node.name}:{k}": v for k, v in got.items()}))
        if _props(got["cmd:show"]).get("ActiveState") != "active":
            return Reading(Source("command", node.name, f"etcdctl get --prefix {prefix}"), False,
                           error=f"etcd does not run on {node.name}")
        url = member.client_url_for(node.address, a.etcd_client_port)
        ctl = f"ETCDCTL_API=3 etcdctl --endpoints={url} {member.etcdctl_tls()} --command-timeout=4s"
        return reader.files(node.name, commands={"dcs": (f"{ctl} get --prefix {shlex.quote(prefix)} -w json",
                                                         f"etcdctl get --prefix {prefix}")})["cmd:dcs"]
    answers = reader.many({n.name: partial(ask, n) for n in a.etcd})
    good = [r for r in answers.values() if r.ok and r.value["rc"] == 0]
    return Readings({"dcs": good[0] if good else list(answers.values())[0]})


def dcs_keys(reading: Reading | None) -> dict[str, str] | None:
    """key -> value of a `dcs_read` answer; None when etcd could not be read."""
    import base64
    doc = _json(reading)
    if not isinstance(doc, dict):
        return None
    return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode(errors="replace")
            for kv in doc.get("kvs", [])}


# -- what etcd runs with --------------------------------------------------------------------------
@dataclass
class Member:
    settings: dict[str, configs.Setting] = field(default_factory=dict)
    config: str | None = None
    running_argv: list[str] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        s = self.settings.get(key)
        return s.value if s is not None else default

    def where(self, key: str, fallback: str) -> str:
        s = self.settings.get(key)
        return s.where if s is not None else fallback

    @property
    def ca(self) -> str | None:
        return self.get("client-transport-security.trusted-ca-file")

    @property
    def cert(self) -> str | None:
        return self.get("client-transport-security.cert-file")

    @property
    def key(self) -> str | None:
        return self.get("client-transport-security.key-file")

    def etcdctl_tls(self) -> str:
        parts = []
        for flag, value in (("--cacert", self.ca), ("--cert", self.cert), ("--key", self.key)):
            if value:
                parts.append(f"{flag}={shlex.quote(str(value))}")
        return " ".join(parts)

    def client_url_for(self, address: str, port: int) -> str:
        scheme = "https" if self.cert else "http"
        return f"{scheme}://{address}:{port}"


def member_settings(a: Assignment, node: NodeSpec, r: Readings) -> Member:
    n = node.name
    files = {p.split(":", 2)[2]: rd.value["text"] for k, rd in r.items() if k.startswith(f"{n}:text:") and rd.ok
             for p in [k]}
    env_lines: dict[str, str] = {}
    if DEFAULT_FILE in files:
        for var, (_, line) in configs.env_file(files[DEFAULT_FILE]).items():
            env_lines[var] = f"{DEFAULT_FILE} line {line}"
    argv, env = _running(r.get(f"{n}:cmd:proc"))
    if not argv:   # not running: what the unit would start with
        show = _props(r.get(f"{n}:cmd:show"))
        argv = configs.exec_argv(show.get("ExecStart", ""))
        env = {k: v for k, (v, _) in configs.env_file(files.get(DEFAULT_FILE, "")).items()}
        if any(w in ("$DAEMON_ARGS", "${DAEMON_ARGS}") for w in argv):
            extra = env.get("DAEMON_ARGS", "").split()
            argv = [w for w in argv if w not in ("$DAEMON_ARGS", "${DAEMON_ARGS}")] + extra
    settings, config = configs.etcd_settings(argv, env, files, env_lines)
    if config is None and not any(k.startswith("ETCD_") for k in env) and not argv[1:]:
        settings = {}
    return Member(settings, config, argv)


def _running(reading: Reading | None) -> tuple[list[str], dict[str, str]]:
    if reading is None or not reading.ok or not reading.value["out"].strip():
        return [], {}
    head, _, env = reading.value["out"].partition("==env\n")
    argv = [w for w in head.splitlines() if w]
    return argv, dict(line.split("=", 1) for line in env.splitlines() if "=" in line)


def _props(reading: Reading | None) -> dict[str, str]:
    if reading is None or not reading.ok:
        return {}
    return dict(line.split("=", 1) for line in reading.value["out"].splitlines() if "=" in line)


def _json(reading: Reading | None) -> Any:
    if reading is None or not reading.ok or reading.value.get("rc") not in (0, None):
        return None
    text = reading.value["out"].strip()
    start = min([i for i in (text.find("["), text.find("{")) if i >= 0], default=-1)
    if start < 0:
        return None
    try:
        return json.loads(text[start:])
    except ValueError:
        return None


# Known mistakes, as etcd logs them: (pattern, diagnosis, what it means).
JOURNAL_SIGNS = (
    (r"cluster ID mismatch", "stale-data-dir",
     "its data directory belongs to another cluster (made by an earlier start: a first try, a cloned VM, the "
     "package's default member); etcd logs 'cluster ID mismatch'"),
    (r"member .* has already been bootstrapped|has already been bootstrapped", "initial-cluster-state",
     "its data directory already holds a member of this cluster, and it was asked to bootstrap a new one"),
    (r"could not retrieve cluster information|error validating peerURLs|cannot fetch cluster info",
     "initial-cluster-state",
     "initial-cluster-state says `existing` for a cluster that does not exist yet, so it waits for members to "
     "ask for the cluster's information"),
    (r"couldn't find local name", "member-name",
     "its name is not among the names in initial-cluster"),
    (r"incompatible key usage", "no-client-auth",
     "a peer's certificate does not allow client authentication (etcd members present theirs as clients too)"),
    (r"certificate is valid for .*, not|doesn't contain any IP SANs|x509: cannot validate certificate", "san-missing",
     "a certificate does not name the address it was reached at"),
    (r"certificate signed by unknown authority", "wrong-ca",
     "a peer's certificate is not signed by the CA this member trusts"),
    (r"first record does not look like a TLS handshake", "etcd-http",
     "a client or peer speaks plain HTTP to a TLS listener"),
    (r"open .*(\.key|\.crt|\.pem): permission denied|open .*: no such file or directory", "tls-file",
     "it cannot open a TLS file it is configured with"),
    (r"client didn't provide a certificate|tls: certificate required", "client-no-cert",
     "a client connects without the client certificate client-cert-auth requires"),
)


def journal_sign(reading: Reading | None) -> tuple[str, str, str] | None:
    """The latest known mistake in a member's log: (diagnosis, meaning, the log line)."""
    return configs.latest_sign(reading.value["out"], JOURNAL_SIGNS) if reading and reading.ok else None


def _hex(value: Any) -> str:
    try:
        return f"{int(value):x}"
    except (TypeError, ValueError):
        return str(value)


def grade(a: Assignment, r: Readings) -> StepVerdict:
    v = StepVerdict(3, False)
    f = v.findings
    members = {n.name: member_settings(a, n, r) for n in a.etcd}
    # 1. The service runs, or its log says why not.
    for n in a.etcd:
        show = _props(r.get(f"{n.name}:cmd:show"))
        if not show:
            f.append(Finding(f"{n.name} cannot be read: {r[f'{n.name}:cmd:show'].error}", "`pgha-lab status`"))
            continue
        if show.get("LoadState") == "not-found":
            f.append(Finding(f"there is no etcd unit on {n.name}", f"on {n.name}: systemctl cat etcd"))
            continue
        if show.get("ActiveState") != "active":
            sign = journal_sign(r.get(f"{n.name}:cmd:journal"))
            m = members[n.name]
            where = f"on {n.name}: journalctl -u etcd" + (f": {sign[2]}" if sign else "")
            if not m.settings:
                f.append(Finding(f"etcd is not configured on {n.name} (no configuration file or ETCD_* settings the "
                                 f"unit would start with) and not running", f"on {n.name}: systemctl cat etcd; "
                                 f"ls /etc/etcd", "not-configured"))
            elif sign:
                f.append(Finding(f"etcd on {n.name} is {show.get('ActiveState')}: {sign[1]}", where, sign[0]))
            else:
                f.append(Finding(f"etcd on {n.name} is {show.get('ActiveState')} ({show.get('Result', '')})", where))
    if f:
        return v
    # 2. One cluster of distinct members with one leader (the seed's table shows it not being so).
    statuses = {}
    for n in a.etcd:
        doc = _json(r.get(f"{n.name}:cmd:status"))
        if not doc:
            out = r.get(f"{n.name}:cmd:status")
            text = (out.value["out"].strip().splitlines() or [""])[-1][:200] if out and out.ok else ""
            sign = journal_sign(r.get(f"{n.name}:cmd:journal"))
            f.append(Finding(f"etcd on {n.name} does not answer on its lab address with its own certificate"
                             + (f" ({text})" if text else "")
                             + (f"; its log says {sign[1]}" if sign else ""),
                             f"on {n.name}: etcdctl --endpoints=https://{n.address}:{a.etcd_client_port} ... endpoint "
                             f"status; {members[n.name].where('listen-client-urls', 'listen-client-urls')}",
                             sign[0] if sign else "no-answer"))
            continue
        statuses[n.name] = doc[0]["Status"] if isinstance(doc, list) else doc
    if f:
        return v
    ids = {name: _hex(s["header"]["member_id"]) for name, s in statuses.items()}
    clusters = {name: _hex(s["header"]["cluster_id"]) for name, s in statuses.items()}
    leaders = {name: _hex(s.get("leader")) for name, s in statuses.items()}
    dup = [name for name in ids if list(ids.values()).count(ids[name]) > 1]
    if dup:
        lone = [name for name in dup if leaders[name] == ids[name]]
        f.append(Finding(
            f"{', '.join(dup)} report the same member ID {ids[dup[0]]}"
            + (", each its own leader" if len(lone) > 1 else "")
            + ": they are not members of one cluster but copies of one member (a cloned VM's data directory, or "
              "the package's default member from its first start), each a cluster of its own",
            f"on any etcd node: etcdctl endpoint status -w table (the ID column); the data directory "
            f"{members[dup[0]].get('data-dir', '/var/lib/etcd/default')}, made before the cluster was configured",
            "cloned-member-id"))
        return v
    if len(set(clusters.values())) > 1:
        odd = [name for name, c in clusters.items() if list(clusters.values()).count(c) == 1] or list(clusters)[-1:]
        f.append(Finding(
            f"{', '.join(odd)} belong{'s' if len(odd) == 1 else ''} to another cluster than the other members (cluster "
            f"ID {clusters[odd[0]]}): {odd[0]}'s data directory was made by another bootstrap",
            f"on {odd[0]}: journalctl -u etcd ('cluster ID mismatch'); its data-dir "
            f"{members[odd[0]].get('data-dir', '')}", "stale-data-dir"))
        return v
    listed = _json(r.get(f"{a.etcd[0].name}:cmd:members")) or {}
    names = sorted(m.get("name", "") for m in listed.get("members", []))
    want = sorted(n.name for n in a.etcd)
    if names != want:
        f.append(Finding(f"the cluster's members are {', '.join(names) or 'none'}, not {', '.join(want)}",
                         f"on {a.etcd[0].name}: etcdctl member list -w table; initial-cluster in "
                         f"{members[a.etcd[0].name].where('initial-cluster', 'the member settings')}", "member-list"))
        return v
    for m in listed.get("members", []):
        node = next(n for n in a.etcd if n.name == m["name"])
        want_peer, want_client = f"https://{node.address}:{a.etcd_peer_port}", f"https://{node.address}:{a.etcd_client_port}"
        if want_peer not in m.get("peerURLs", []):
            f.append(Finding(f"{node.name} advertises peer URLs {', '.join(m.get('peerURLs', []))}, not TLS on its lab "
                             f"address", members[node.name].where("initial-advertise-peer-urls", "its settings"),
                             "etcd-http" if any(u.startswith("http:") for u in m.get("peerURLs", [])) else "peer-urls"))
        if want_client not in m.get("clientURLs", []):
            f.append(Finding(f"{node.name} advertises client URLs {', '.join(m.get('clientURLs', [])) or 'none'}, not "
                             f"TLS on its lab address",
                             members[node.name].where("advertise-client-urls", "its settings"),
                             "etcd-http" if any(u.startswith("http:") for u in m.get("clientURLs", []))
                             else "client-urls"))
    if len({leaders[n] for n in leaders}) != 1 or "0" in leaders.values():
        f.append(Finding("the members do not agree on one leader "
                         f"({', '.join(f'{k}: {v}' for k, v in leaders.items())})",
                         "on any etcd node: etcdctl endpoint status -w table (IS LEADER)", "no-leader"))
    if f:
        return v
    # 3. TLS on both ports, and client certificates required there.
    for n in a.etcd:
        m = members[n.name]
        for port_key, port, sec in (("tls-client", a.etcd_client_port, "client-transport-security"),
                                    ("tls-peer", a.etcd_peer_port, "peer-transport-security")):
            hs = r[f"{n.name}:{port_key}"]
            label = "client" if port_key == "tls-client" else "peer"
            if not hs.ok:
                f.append(Finding(f"etcd on {n.name} does not speak TLS on its {label} port {port} ({hs.error})",
                                 f"{hs.source.look()}; listen-{label}-urls in "
                                 f"{m.where(f'listen-{label}-urls', 'its settings')}",
                                 "etcd-http"))
                continue
            facts = configs.cert_facts(hs.value["cert"])
            if facts and not facts.names_cover(n.address):
                f.append(Finding(f"the certificate etcd on {n.name} presents on port {port} does not name "
                                 f"{n.address}", f"{hs.source.look()} | openssl x509 -noout -ext subjectAltName",
                                 "san-missing"))
            if hs.value.get("refuses_without_client_cert") is False:
                f.append(Finding(f"etcd on {n.name} accepts {label} connections that show no client certificate "
                                 f"(client-cert-auth is off for {label}s)",
                                 m.where(f"{sec}.client-cert-auth", f"{sec} in its settings"), "no-client-cert-auth"))
    # 4. The gRPC gateway (Patroni's etcd3 client speaks JSON over HTTP to it).
    for n in a.etcd:
        g = r[f"{n.name}:gateway"]
        status = g.value.get("status") if g.ok else None
        if status == 404:
            m = members[n.name]
            setting = m.settings.get("enable-grpc-gateway")
            where = (setting.where if setting else
                     f"{m.config} has no enable-grpc-gateway (with a config file etcd 3.4 leaves the gateway off "
                     f"unless it is set)" if m.config else "the member's settings")
            f.append(Finding(f"etcd on {n.name} has no gRPC gateway: POST /v3/maintenance/status answers 404, and "
                             f"Patroni's etcd3 client talks to etcd through it", where, "grpc-gateway"))
        elif status != 200:
            f.append(Finding(f"etcd's v3 API on {n.name} did not answer over HTTPS "
                             f"({g.value.get('error') if g.ok else g.error})", g.source.look(), "v3-api"))
    # 5. Enabled at boot.
    for n in a.etcd:
        state = _props(r.get(f"{n.name}:cmd:show")).get("UnitFileState")
        if state != "enabled":
            f.append(Finding(f"etcd on {n.name} is not enabled at boot (unit file state {state}): a reboot leaves "
                             f"the member down", f"on {n.name}: systemctl is-enabled etcd", "not-enabled"))
    if f:
        return v
    # 6. The ectl alias, as in the course (or an `ectl` script on PATH, as the playbook installs: it is
    # typed and works the same).
    for n in a.etcd:
        alias = r.get(f"{n.name}:cmd:alias")
        defined = alias.value["out"].strip().splitlines()[:1] if alias and alias.ok else []
        found = r.get(f"{n.name}:cmd:ectl-path")
        script = found.value["out"].strip().splitlines()[:1] if found and found.ok else []
        doc = _json(r.get(f"{n.name}:cmd:ectl"))
        if not defined and not script:
            f.append(Finding(f"there is no ectl alias on {n.name}",
                             f"on {n.name}: alias ectl; {ALIAS_FILES.split()[0]}",
                             "ectl-missing"))
            continue
        where = defined[0].split(":alias", 1)[0] if defined else script[0]
        line = defined[0] if defined else ""   # a script's text is not read: only what it answers
        if not isinstance(doc, list) or len(doc) != len(a.etcd):
            said = r.get(f"{n.name}:cmd:ectl")
            text = " ".join(said.value["out"].split())[-200:] if said and said.ok else ""
            why, diagnosis = "", "ectl-broken"
            # etcd 3.4 closes a TLS connection that shows no certificate; etcdctl then only says "connection
            # closed" and times out, so the alias itself is read as a grader would read it.
            if (re.search(r"certificate required|bad certificate|authentication handshake failed", text)
                    or (line and not re.search(r"--cert[= ]|ETCDCTL_CERT=", line))):
                why = ": it shows etcd no client certificate (--cert/--key), which etcd requires"
                diagnosis = "ectl-no-cert"
            elif "http://" in line or "malformed HTTP" in text or "first record" in text:
                why, diagnosis = ": it speaks plain HTTP to etcd's TLS port", "ectl-http"
            elif isinstance(doc, list):
                why = f": it reaches {len(doc)} of the {len(a.etcd)} members (--endpoints)"
            f.append(Finding(f"`ectl endpoint status` does not work on {n.name}{why}"
                             + (f" ({text})" if text and not why else ""),
                             f"{where} on {n.name}", diagnosis))
    if not f:
        v.passed = True
        v.confirmed = [f"{len(a.etcd)} members with distinct IDs in one cluster, one leader",
                       "TLS with client certificates required on ports "
                       f"{a.etcd_client_port} and {a.etcd_peer_port}",
                       "the v3 API and its gRPC gateway answer", "enabled at boot", "ectl works on every etcd node"]
    return v


STEP = Step(
    id=3, slug="etcd", title="etcd: a three-member cluster over TLS",
    goal="etcd runs on etcd1, etcd2 and etcd3 as one cluster with one leader, TLS and client certificates everywhere.",
    background=(
        "etcd is Patroni's distributed configuration store: who leads, the cluster's settings, every member's "
        "state. Ubuntu's etcd-server reads its settings from /etc/default/etcd (ETCD_* variables) or, given "
        "--config-file, from a YAML file (then it ignores the rest). Each member needs its own name, listen and "
        "advertise URLs on its lab address, and the same initial-cluster list; TLS comes from the certificates "
        "of step 2, with client-cert-auth so only holders of a lab certificate get in. Patroni's etcd3 client "
        "talks JSON to etcd's gRPC gateway, which a config file must turn on (enable-grpc-gateway), though the "
        "documentation hardly says so. A member started once with defaults, or a cloned VM, keeps a data "
        "directory of its own one-member cluster: the seed's table shows three endpoints with one ID."),
    tasks=(
        Task("etcd1, etcd2, etcd3", "Write the member's settings (/etc/etcd/etcd.conf.yml with `--config-file`, "
                                    "or /etc/default/etcd): name, data-dir, the four URLs on https and the lab "
                                    "address, initial-cluster with all three, initial-cluster-state new, a cluster "
                                    "token, client and peer TLS with client-cert-auth, the gRPC gateway."),
        Task("etcd1, etcd2, etcd3", "Start etcd on all three close together (`systemctl start etcd`), and enable "
                                    "it at boot."),
        Task("etcd1, etcd2, etcd3", "Add an `ectl` alias to root's ~/.bashrc: etcdctl with the three https "
                                    "endpoints, the CA and etcdctl's certificate and key; "
                                    "`ectl endpoint status -w table` shows three members, one leader."),
    ),
    hints=(
        "`journalctl -u etcd -n 50` on a member that does not start says why; `etcdctl endpoint status -w table` "
        "shows each member's ID, and IDs must differ.",
        "The same ID on every endpoint, each its own leader, is the seed's table: each member runs the one-member "
        "cluster it made at its first start. Stop etcd, remove that data directory, start all three again.",
        "With a config file the gRPC gateway is off unless `enable-grpc-gateway: true` is in it; without it "
        "Patroni's etcd3 client gets '404 page not found'.",
        "client-cert-auth on both client-transport-security and peer-transport-security; the alias needs "
        "--cacert, --cert and --key or etcd turns it away.",
    ),
    read=read, grade=grade, minutes=45)
