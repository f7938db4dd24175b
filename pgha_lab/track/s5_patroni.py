"""Step 5, Patroni: installed in /opt/patroni, configured in /etc/patroni/config.yml (etcd3 over TLS
with a client certificate, the REST API on TLS, synchronous mode where Patroni reads it at bootstrap,
pg_hba lines for replication), run by a systemd unit enabled at boot; one leader and a streaming
synchronous standby, seen in etcd, in Patroni's REST API and in PostgreSQL itself."""
from __future__ import annotations

import ipaddress
import json
from functools import partial
from typing import Any

from pgha_lab import node_paths
from pgha_lab.topology import DEFAULT_SCOPE
from pgha_lab.track import configs, s3_etcd
from pgha_lab.track.assignment import Assignment
from pgha_lab.track.model import Finding, Reading, Readings, Step, StepVerdict, Task
from pgha_lab.track.readers import Reader

CONFIG = node_paths.PATRONI_CONFIG
VENV = node_paths.PATRONI_VENV
PATRONICTL = f"{VENV}/bin/patronictl"
UNIT = "patroni"
PSQL = (f"sudo -u postgres {node_paths.PG_BIN}/psql -XAtq -h {node_paths.PG_RUN} -d postgres -c "
        "\"select pg_is_in_recovery(), current_setting('listen_addresses'), "
        "current_setting('synchronous_standby_names')\""
        " -c \"select application_name, state, sync_state from pg_stat_replication\"")
SHOW = ("ActiveState", "SubState", "UnitFileState", "ExecStart", "User", "Result", "LoadState", "MainPID")


def read(reader: Reader, a: Assignment) -> Readings:
    out = Readings()

    def visit(n) -> None:
        got = reader.files(n.name, texts=[CONFIG], commands={
            # What pip installed, read from the venv's metadata (an import costs a Python start per node).
            "venv": (f"test -x {VENV}/bin/patroni && cd {VENV}/lib/python3*/site-packages && "
                     "ls -d patroni-*.dist-info python_etcd-*.dist-info psycopg-*.dist-info", f"{VENV}/bin/pip list"),
            "show": (f"systemctl show {UNIT} --no-pager " + " ".join(f"-p {p}" for p in SHOW),
                     f"systemctl status {UNIT}"),
            "journal": (f"journalctl -u {UNIT} -n 300 --no-pager -o short-iso", f"journalctl -u {UNIT}"),
            "listen": ("ss -ltnH", "sudo ss -ltn"),
            "sql": (PSQL, "sudo -u postgres psql -c 'select pg_is_in_recovery()' ..."),
            "version": (f"sudo -u postgres {PATRONICTL} -c {CONFIG} version", f"patronictl -c {CONFIG} version"),
        })
        out.update({f"{n.name}:{k}": r for k, r in got.items()})
        if _props(got["cmd:show"]).get("ActiveState") != "active":
            return   # no REST API to ask
        conf = _config(out, n.name)
        ctl = conf.get("ctl", default={}) or {}
        rest = conf.get("restapi", default={}) or {}
        ca = ctl.get("cacert") or rest.get("cafile")
        scheme = "https" if rest.get("certfile") else "http"
        out[f"{n.name}:rest"] = reader.https(n.name, f"{scheme}://{n.address}:{a.restapi_port}/patroni", ca=ca,
                                             cert=ctl.get("certfile"), key=ctl.get("keyfile"))
        out[f"{n.name}:tls-rest"] = reader.handshake(n.address, a.restapi_port)
    reader.many({n.name: partial(visit, n) for n in a.db})
    if any(_props(out.get(f"{n.name}:cmd:show")).get("ActiveState") == "active" for n in a.db):
        out.update(s3_etcd.dcs_read(reader, a, namespace(_config(out, a.db[0].name), a)))
    return out


def _config(r: Readings, node: str) -> configs.Yaml:
    reading = r.get(f"{node}:text:{CONFIG}")
    return configs.parse_yaml(reading.value["text"]) if reading and reading.ok else configs.Yaml({})


def namespace(conf: configs.Yaml, a: Assignment) -> str:
    ns = str(conf.get("namespace", default="/service") or "/service").rstrip("/")
    return f"{ns}/{conf.get('scope', default=a.scope)}/"


def _at(conf_line: int | None, node: str) -> str:
    return f"{CONFIG} line {conf_line} on {node}" if conf_line else f"{CONFIG} on {node}"


# Known mistakes in Patroni's log: (pattern, diagnosis, what it means).
JOURNAL_SIGNS = (
    (r"404 page not found|Bad response : 404", "etcd-v2",
     "its etcd client gets '404 page not found': the v2 API (Patroni's `etcd:` section) is off in etcd 3.4, "
     "or the gRPC gateway the etcd3 client needs is off"),
    (r"waiting for leader to bootstrap", "stale-initialize",
     "it waits for a leader to bootstrap: etcd holds an /initialize key, from an earlier attempt, for a cluster "
     "whose leader never came"),
    (r"No such file or directory: '(initdb|pg_ctl|postgres|pg_basebackup)'", "bin-dir",
     "it cannot find PostgreSQL's programs (postgresql.bin_dir is not set, and they are not on PATH)"),
    (r"has invalid permissions|data directory .* has wrong ownership|Permission denied.*18/main", "data-dir-mode",
     "PostgreSQL refuses the data directory's owner or mode"),
    (r"no pg_hba.conf entry for replication connection", "hba-replication",
     "the leader refuses the replica's replication connection: no pg_hba line for it"),
    (r"certificate required|bad certificate|CERTIFICATE_VERIFY_FAILED|SSLError|SSL: ", "patroni-etcd-tls",
     "TLS with etcd fails (a client certificate not sent, or a CA that does not match)"),
    (r"RemoteDisconnected|Connection aborted|BadStatusLine|ProtocolError", "patroni-etcd-http",
     "it speaks plain HTTP to etcd's TLS port"),
    (r"Failed to get list of machines|waiting on etcd|EtcdConnectionFailed|No connection to etcd", "etcd-unreachable",
     "it cannot reach etcd"),
    (r"Connection refused.*5432|could not connect to server|is the server running on that host", "listen-addresses",
     "the replica cannot reach the leader's PostgreSQL on its lab address"),
)


def journal_sign(reading: Reading | None) -> tuple[str, str, str] | None:
    return configs.latest_sign(reading.value["out"], JOURNAL_SIGNS, tail=120) if reading and reading.ok else None


def _props(reading: Reading | None) -> dict[str, str]:
    if reading is None or not reading.ok:
        return {}
    return dict(line.split("=", 1) for line in reading.value["out"].splitlines() if "=" in line)


def hba_replication_covers(lines: list[Any], user: str, address: str) -> bool:
    """Whether some pg_hba line lets `user` make a replication connection over the network from `address`."""
    for line in lines or []:
        words = str(line).split()
        if len(words) < 5 or words[0] not in ("host", "hostssl"):
            continue
        db, who, where = words[1], words[2], words[3]
        if "replication" not in db.split(","):
            continue
        if who not in ("all", user) and user not in who.split(","):
            continue
        try:
            if (where in ("all", "0.0.0.0/0")
                    or ipaddress.ip_address(address) in ipaddress.ip_network(where, strict=False)):
                return True
        except ValueError:
            continue
    return False


def _config_findings(a: Assignment, n, conf: configs.Yaml, journal: Reading | None) -> list[Finding]:
    f: list[Finding] = []
    sign = journal_sign(journal)
    seen = f" (its log: {sign[2]})" if sign else ""
    if conf.get("name") != n.name:
        f.append(Finding(f"`name` in {CONFIG} on {n.name} is {conf.get('name')!r}, not the node's name: members "
                         f"are told apart by it", _at(conf.line("name"), n.name), "patroni-name"))
    if conf.has("etcd") and not conf.has("etcd3"):
        f.append(Finding(f"Patroni on {n.name} is configured with `etcd:`, the v2 protocol, which etcd 3.4 does not "
                         f"serve (its v2 API is off): it needs an `etcd3:` section" + seen,
                         _at(conf.line("etcd"), n.name), "etcd-v2"))
        return f
    etcd3 = conf.get("etcd3", default=None)
    if not isinstance(etcd3, dict):
        f.append(Finding(f"there is no `etcd3:` section in {CONFIG} on {n.name}: Patroni does not know where etcd is",
                         _at(None, n.name), "no-dcs"))
        return f
    hosts = etcd3.get("hosts") or etcd3.get("host") or []
    hosts = hosts if isinstance(hosts, list) else [h.strip() for h in str(hosts).split(",")]
    protocol = str(etcd3.get("protocol", "http"))
    if protocol != "https" or any(str(h).startswith("http://") for h in hosts):
        f.append(Finding(f"Patroni on {n.name} talks to etcd over plain HTTP (etcd3.protocol is {protocol!r}), "
                         f"and etcd listens with TLS" + seen,
                         _at(conf.line("etcd3", "protocol") or conf.line("etcd3"), n.name), "patroni-etcd-http"))
    wanted = {f"{e.address}:{a.etcd_client_port}" for e in a.etcd} | {f"{e.name}:{a.etcd_client_port}" for e in a.etcd}
    listed = {str(h).split("://")[-1] for h in hosts}
    if len(listed & wanted) < len(a.etcd):
        f.append(Finding(f"etcd3.hosts on {n.name} lists {', '.join(sorted(listed)) or 'nothing'}, not the "
                         f"{len(a.etcd)} etcd members' client port", _at(conf.line("etcd3", "hosts"), n.name),
                         "etcd3-hosts"))
    if not etcd3.get("cert") or not etcd3.get("key"):
        f.append(Finding(f"Patroni on {n.name} shows etcd no client certificate (etcd3 has no cert/key), and etcd "
                         f"requires one (client-cert-auth)" + seen, _at(conf.line("etcd3"), n.name),
                         "patroni-no-client-cert"))
    if not etcd3.get("cacert"):
        f.append(Finding(f"etcd3 on {n.name} has no cacert, so Patroni cannot verify etcd's certificate",
                         _at(conf.line("etcd3"), n.name), "patroni-etcd-ca"))
    rest = conf.get("restapi", default={}) or {}
    if not rest.get("certfile"):
        f.append(Finding(f"the REST API on {n.name} has no certfile, so it answers plain HTTP: HAProxy, patronictl "
                         f"and the other member are to reach it over TLS", _at(conf.line("restapi"), n.name),
                         "restapi-no-tls"))
    pg = conf.get("postgresql", default={}) or {}
    if not pg.get("bin_dir"):
        f.append(Finding(f"postgresql.bin_dir is not set on {n.name}: Patroni looks for initdb and pg_ctl on PATH, "
                         f"and Ubuntu keeps them in {node_paths.PG_BIN}" + seen,
                         _at(conf.line("postgresql"), n.name), "bin-dir"))
    if pg.get("data_dir") != node_paths.PG_DATA:
        f.append(Finding(f"postgresql.data_dir on {n.name} is {pg.get('data_dir')!r}, not the data directory "
                         f"prepared in step 4", _at(conf.line("postgresql", "data_dir") or conf.line("postgresql"),
                                                    n.name), "data-dir"))
    # synchronous_mode counts only in bootstrap.dcs (the first start) or in etcd afterwards.
    sync = conf.get("bootstrap", "dcs", "synchronous_mode", default=None)
    if sync not in (True, "on", "true", "quorum"):
        misplaced = next((p for p in (("synchronous_mode",), ("postgresql", "synchronous_mode"),
                                      ("bootstrap", "synchronous_mode"),
                                      ("bootstrap", "dcs", "postgresql", "synchronous_mode"))
                          if conf.has(*p)), None)
        if misplaced:
            f.append(Finding(f"synchronous_mode on {n.name} is under `{'.'.join(misplaced[:-1]) or 'the top level'}`, "
                             f"where Patroni does not read it: it belongs in bootstrap.dcs (read at the first start) "
                             f"or, once the cluster runs, in etcd (`patronictl edit-config`)",
                             _at(conf.line(*misplaced), n.name), "sync-outside-dcs"))
        else:
            f.append(Finding(f"synchronous mode is not asked for in bootstrap.dcs on {n.name}",
                             _at(conf.line("bootstrap", "dcs") or conf.line("bootstrap"), n.name), "sync-missing"))
    user = str(((pg.get("authentication") or {}).get("replication") or {}).get("username", "replicator"))
    hba = pg.get("pg_hba") or conf.get("bootstrap", "pg_hba", default=[])
    others = [d for d in a.db if d.name != n.name]
    for other in others:
        if not hba_replication_covers(hba, user, other.address):
            f.append(Finding(f"no pg_hba line on {n.name} lets {user} make a replication connection from "
                             f"{other.name} ({other.address}): a replica cannot clone or stream from it"
                             + (seen if sign and sign[0] == "hba-replication" else ""),
                             _at(conf.line("postgresql", "pg_hba"), n.name), "hba-replication"))
            break
    return f


def _listens_on_lab(listen: Reading | None, address: str, port: int) -> bool | None:
    if listen is None or not listen.ok:
        return None
    for line in listen.value["out"].splitlines():
        words = line.split()
        if len(words) >= 4 and words[3].rsplit(":", 1)[-1] == str(port):
            host = words[3].rsplit(":", 1)[0].strip("[]")
            if host in ("0.0.0.0", "*", "::", address):
                return True
    return False


def grade(a: Assignment, r: Readings) -> StepVerdict:
    v = StepVerdict(5, False)
    f = v.findings
    confs = {n.name: _config(r, n.name) for n in a.db}
    for n in a.db:
        venv = r[f"{n.name}:cmd:venv"]
        if not venv.ok:
            f.append(Finding(f"{n.name} cannot be read: {venv.error}", "`pgha-lab status`"))
            continue
        if venv.value["rc"] != 0:
            missing = "Patroni is not installed" if "patroni-" not in venv.value["out"] else \
                "Patroni in the venv lacks its etcd3 or psycopg3 extra"
            f.append(Finding(f"{missing} in {VENV} on {n.name}", f"on {n.name}: {VENV}/bin/pip list", "no-patroni"))
            continue
        conf_reading = r[f"{n.name}:text:{CONFIG}"]
        if not conf_reading.ok:
            f.append(Finding(f"there is no {CONFIG} on {n.name}", f"on {n.name}: ls -l /etc/patroni", "no-config"))
            continue
        conf = confs[n.name]
        if conf.error:
            f.append(Finding(f"{CONFIG} on {n.name} is not valid YAML ({conf.error})", _at(None, n.name), "yaml"))
            continue
        f.extend(_config_findings(a, n, conf, r.get(f"{n.name}:cmd:journal")))
    if f:
        return v
    # The service.
    for n in a.db:
        show = _props(r.get(f"{n.name}:cmd:show"))
        if show.get("LoadState") == "not-found":
            f.append(Finding(f"there is no patroni unit on {n.name}", f"on {n.name}: systemctl cat patroni", "no-unit"))
            continue
        if show.get("ActiveState") != "active":
            sign = journal_sign(r.get(f"{n.name}:cmd:journal"))
            f.append(Finding(f"Patroni on {n.name} is {show.get('ActiveState')}" + (f": {sign[1]}" if sign else ""),
                             f"on {n.name}: journalctl -u patroni" + (f": {sign[2]}" if sign else ""),
                             sign[0] if sign else "not-running"))
        if show.get("UnitFileState") != "enabled":
            f.append(Finding(f"patroni on {n.name} is not enabled at boot "
                             f"(unit file state {show.get('UnitFileState')})",
                             f"on {n.name}: systemctl is-enabled patroni", "not-enabled"))
        if show.get("User") not in ("postgres",):
            f.append(Finding(f"the patroni unit on {n.name} runs as {show.get('User') or 'root'}, not postgres "
                             f"(PostgreSQL will not run as root)", f"on {n.name}: systemctl cat patroni (User=)",
                             "unit-user"))
        if CONFIG not in show.get("ExecStart", ""):
            f.append(Finding(f"the patroni unit on {n.name} does not start Patroni with {CONFIG}",
                             f"on {n.name}: systemctl cat patroni (ExecStart=)", "unit-config"))
    if f:
        return v
    # What etcd holds: the cluster's own view.
    keys = s3_etcd.dcs_keys(r.get("dcs"))
    ns = namespace(confs[a.db[0].name], a)
    if keys is None:
        f.append(Finding("etcd could not be read to see Patroni's keys", r["dcs"].source.look() if r.get("dcs") else
                         "step 3's check", "etcd-unreadable"))
        return v
    leader = keys.get(f"{ns}leader")
    members = {k[len(f"{ns}members/"):]: _loads(val) for k, val in keys.items() if k.startswith(f"{ns}members/")}
    if not leader:
        signs = [journal_sign(r.get(f"{n.name}:cmd:journal")) for n in a.db]
        sign = next((s for s in signs if s), None)
        if f"{ns}initialize" in keys and sign and sign[0] == "stale-initialize":
            f.append(Finding(f"no member leads: {sign[1]}",
                             f"etcdctl get {ns}initialize; journalctl -u patroni: {sign[2]}",
                             "stale-initialize"))
        else:
            f.append(Finding("no member holds the leader key" + (f": {sign[1]}" if sign else ""),
                             f"patronictl -c {CONFIG} list; journalctl -u patroni" + (f": {sign[2]}" if sign else ""),
                             sign[0] if sign else "no-leader"))
        return v
    for n in a.db:
        m = members.get(n.name)
        if m is None:
            sign = journal_sign(r.get(f"{n.name}:cmd:journal"))
            f.append(Finding(f"{n.name} has not registered in etcd" + (f": {sign[1]}" if sign else ""),
                             f"on {n.name}: journalctl -u patroni" + (f": {sign[2]}" if sign else ""),
                             sign[0] if sign else "not-registered"))
            continue
        role, state = m.get("role"), m.get("state")
        if n.name == leader:
            if role not in ("primary", "master") or state != "running":
                f.append(Finding(f"{n.name} holds the leader key but runs as {role}/{state}",
                                 f"on {n.name}: journalctl -u patroni", "leader-not-running"))
        elif role != "replica" or "streaming" not in (state, m.get("replication_state")):
            sign = journal_sign(r.get(f"{n.name}:cmd:journal"))
            state = m.get("replication_state") or state
            f.append(Finding(f"{n.name} is {role}, {state}, not a streaming replica" + (f": {sign[1]}" if sign else ""),
                             f"on {n.name}: journalctl -u patroni" + (f": {sign[2]}" if sign else ""),
                             sign[0] if sign else "not-streaming"))
    if f:
        _listen_diagnosis(a, r, confs, f)
        return v
    dcs_config = _loads(keys.get(f"{ns}config", "{}"))
    sync = _loads(keys.get(f"{ns}sync", "{}"))
    standby = sync.get("sync_standby")
    if dcs_config.get("synchronous_mode") not in (True, "on", "quorum"):
        f.append(Finding("the cluster runs without synchronous mode: etcd's configuration (what Patroni reads after "
                         "the first start) does not have it, though the file's bootstrap.dcs does — bootstrap.dcs only "
                         "counts when the cluster is made; change it with `patronictl edit-config`",
                         f"patronictl -c {CONFIG} show-config; {CONFIG} line "
                         f"{confs[leader].line('bootstrap', 'dcs', 'synchronous_mode')} on {leader}",
                         "sync-after-bootstrap"))
    elif not standby or (isinstance(standby, str) and standby not in members):
        f.append(Finding("there is no synchronous standby yet (etcd's /sync key names none)",
                         f"patronictl -c {CONFIG} list (Role: Sync Standby)", "no-sync-standby"))
    # PostgreSQL's own word on replication, on the leader.
    sql = r.get(f"{leader}:cmd:sql")
    rest = r.get(f"{leader}:rest")
    replication = _replication(sql, rest)
    for n in a.db:
        if n.name == leader or f:
            continue
        row = replication.get(n.name)
        if row is None or row[0] != "streaming":
            f.append(Finding(f"PostgreSQL on {leader} does not stream to {n.name} (pg_stat_replication)",
                             f"on {leader}: sudo -u postgres psql -c 'select * from pg_stat_replication'",
                             "not-streaming"))
        elif row[1] not in ("sync", "quorum"):
            f.append(Finding(f"{n.name} streams from {leader} asynchronously (sync_state {row[1]})",
                             f"on {leader}: sudo -u postgres psql -c 'select application_name, sync_state from "
                             f"pg_stat_replication'", "no-sync-standby"))
    # The REST API over TLS, and patronictl reaching it.
    for n in a.db:
        hs = r[f"{n.name}:tls-rest"]
        if not hs.ok:
            f.append(Finding(f"Patroni's REST API on {n.name} does not speak TLS on {a.restapi_port} ({hs.error})",
                             hs.source.look(), "restapi-no-tls"))
            continue
        facts = configs.cert_facts(hs.value["cert"])
        if facts and not facts.names_cover(n.address):
            f.append(Finding(f"the certificate Patroni's REST API on {n.name} presents does not name {n.address}",
                             f"{hs.source.look()} | openssl x509 -noout -ext subjectAltName", "san-missing"))
    for n in a.db:
        ver = r.get(f"{n.name}:cmd:version")
        text = ver.value["out"] if ver and ver.ok else ""
        if ver and ver.ok and (ver.value["rc"] != 0 or "Failed" in text or "Error" in text or "error" in text):
            conf = confs[n.name]
            ctl = conf.get("ctl", default={}) or {}
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text or not ctl.get("cacert"):
                f.append(Finding(f"patronictl on {n.name} cannot reach the members' REST API over TLS: it has no CA to "
                                 f"verify their certificates (ctl has no cacert)",
                                 _at(conf.line("ctl") or None, n.name),
                                 "patronictl-no-ca"))
            else:
                f.append(Finding(f"`patronictl version` on {n.name} fails: {' '.join(text.split())[-200:]}",
                                 f"on {n.name}: patronictl -c {CONFIG} version", "patronictl"))
            break
    if not f:
        v.passed = True
        v.confirmed = [f"Patroni enabled and running on {len(a.db)} db nodes",
                       f"{leader} leads, {standby if isinstance(standby, str) else ', '.join(standby or [])} is the "
                       f"synchronous standby, streaming", "the REST API on TLS; patronictl reaches it"]
    return v


def _listen_diagnosis(a: Assignment, r: Readings, confs: dict[str, configs.Yaml], f: list[Finding]) -> None:
    """A replica that cannot reach the leader because PostgreSQL listens on loopback only: the seed's
    listen_addresses difficulty (Patroni sets it from postgresql.listen, whatever parameters say)."""
    for n in a.db:
        conf = confs[n.name]
        on_lab = _listens_on_lab(r.get(f"{n.name}:cmd:listen"), n.address, a.postgres_port)
        if on_lab is not False:
            continue
        listen = conf.get("postgresql", "listen")
        stray = next((p for p in (("postgresql", "parameters", "listen_addresses"),
                                  ("bootstrap", "dcs", "postgresql", "parameters", "listen_addresses"))
                      if conf.has(*p)), None)
        text = (f"PostgreSQL on {n.name} does not listen on its lab address {n.address}, so the other member cannot "
                f"reach it: Patroni sets listen_addresses from postgresql.listen ({listen!r})")
        if stray:
            text += f", not from listen_addresses under `{'.'.join(stray[:-1])}`, which it overrides"
        f.insert(0, Finding(text, _at(conf.line("postgresql", "listen") or conf.line("postgresql"), n.name)
                            + (f" (and line {conf.line(*stray)})" if stray else ""), "listen-addresses"))
        return


def _loads(text: str | None) -> dict[str, Any]:
    try:
        doc = json.loads(text or "{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _replication(sql: Reading | None, rest: Reading | None) -> dict[str, tuple[str, str]]:
    """application_name -> (state, sync_state), from psql on the leader, else its REST API."""
    out: dict[str, tuple[str, str]] = {}
    if sql and sql.ok and sql.value["rc"] == 0:
        for line in sql.value["out"].splitlines()[1:]:
            parts = line.split("|")
            if len(parts) == 3:
                out[parts[0]] = (parts[1], parts[2])
        if out:
            return out
    if rest and rest.ok and rest.value.get("status") == 200:
        for row in _loads(rest.value.get("body")).get("replication", []):
            out[row.get("application_name", "")] = (row.get("state", ""), row.get("sync_state", ""))
    return out


STEP = Step(
    id=5, slug="patroni", title="Patroni: one leader and a synchronous standby",
    goal="Patroni runs PostgreSQL on both db nodes: one leader, one streaming synchronous standby, all over TLS.",
    background=(
        "Patroni keeps the cluster's state in etcd and runs PostgreSQL accordingly. It reads its settings from "
        "a file, but in three tiers the course's author found confusing: bootstrap.dcs is copied into etcd "
        "once, when the first node makes the cluster, and from then on etcd's copy (`patronictl edit-config`) "
        "is what counts; postgresql.parameters are local; and a few settings Patroni sets itself whatever the "
        "file says, listen_addresses among them (from postgresql.listen). On etcd 3.4 Patroni needs its etcd3 "
        "client (`etcd3:`), over https with a client certificate since etcd requires one. The REST API on "
        "8008 is how HAProxy and patronictl see each member: TLS there too."),
    tasks=(
        Task("dbnode1, dbnode2", f"As the course does: `python3 -m venv {VENV}`, then with it "
                                 "`pip install 'patroni[psycopg3,etcd3]'` (works offline here)."),
        Task("dbnode1, dbnode2", f"Write {CONFIG}: scope {DEFAULT_SCOPE}, the node's name, restapi and ctl with the "
                                 "certificates of step 2, etcd3 (https, the three members, CA, etcd-client "
                                 "certificate), bootstrap.dcs with synchronous_mode, postgresql (listen, "
                                 "connect_address, data_dir, bin_dir, authentication for superuser, replication "
                                 "and rewind, TLS parameters, pg_hba with replication lines for the db nodes)."),
        Task("dbnode1, dbnode2", "A systemd unit `patroni` (User=postgres, ExecStart the venv's patroni with "
                                 "the file), enabled; start dbnode1 first, then dbnode2."),
    ),
    hints=(
        "`journalctl -u patroni -n 50` says what Patroni waits for; `patronictl -c /etc/patroni/config.yml list` "
        "shows what it sees.",
        "'404 page not found' from etcd means Patroni speaks the v2 protocol (an `etcd:` section): etcd 3.4 "
        "needs `etcd3:`.",
        "A setting in bootstrap.dcs changed after the cluster exists changes nothing: `patronictl edit-config` "
        "changes etcd's copy. If a first attempt left /service/<scope>/initialize in etcd, "
        "`patronictl remove <scope>` clears it.",
        "A replica clones over a replication connection to the leader's lab address: pg_hba needs a "
        "`hostssl replication <user> <subnet> scram-sha-256` line, and PostgreSQL must listen there "
        "(postgresql.listen, which Patroni turns into listen_addresses).",
    ),
    read=read, grade=grade, minutes=60)
