"""Step 6, HAProxy: 5432 to the primary and 5433 to the replicas, chosen by health checks against
Patroni's REST API over TLS on 8008, stats on 8404, and the host reaching the primary through it with
sslmode=verify-full. Graded from HAProxy's own config check and stats, and with psql's rules from the
host (the learner's CA, the superuser they gave Patroni)."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from pgha_lab import node_paths
from pgha_lab.probes import parse_haproxy_csv
from pgha_lab.rows import one_row
from pgha_lab.track import configs, s5_patroni
from pgha_lab.track.assignment import Assignment
from pgha_lab.track.model import Finding, Reading, Readings, Source, Step, StepVerdict, Task
from pgha_lab.track.readers import NET_TIMEOUT, Reader

CFG = node_paths.HAPROXY_CONFIG
UNIT = "haproxy"
SHOW = ("ActiveState", "SubState", "UnitFileState", "Result", "LoadState")
PASSWORD_VAR = "PATRONI_SUPERUSER_PASSWORD"
# The superuser's name and password as the learner gave them to Patroni: in its file, or in the
# environment its unit sets (Environment= or an EnvironmentFile).
CREDENTIALS = (f"grep -h '^{PASSWORD_VAR}=' $(systemctl show patroni -p EnvironmentFiles --value | "
               "sed 's/ (ignore_errors=[a-z]*)//g') 2>/dev/null | tail -1; "
               f"systemctl show patroni -p Environment --value | tr ' ' '\\n' | grep '^{PASSWORD_VAR}=' | tail -1")


def read(reader: Reader, a: Assignment) -> Readings:
    out = Readings()
    hp, db = a.haproxy, a.db[0].name
    both = reader.many({
        "haproxy": lambda: reader.files(hp.name, texts=[CFG], commands={
            "check": (f"haproxy -c -f {CFG}", f"sudo haproxy -c -f {CFG}"),
            "show": (f"systemctl show {UNIT} --no-pager " + " ".join(f"-p {p}" for p in SHOW),
                     f"systemctl status {UNIT}"),
            "journal": (f"journalctl -u {UNIT} -n 80 --no-pager -o short-iso", f"journalctl -u {UNIT}")}),
        "secret": lambda: reader.files(db, texts=[s5_patroni.CONFIG], certs=[a.ca_path(db)],
                                       commands={"password": (CREDENTIALS, "the superuser's password")})})
    got, secret = both["haproxy"], both["secret"]
    out.update({f"{hp.name}:{k}": r for k, r in got.items()})
    cfg = got[f"text:{CFG}"]
    uri = stats_uri(cfg.value["text"] if cfg.ok else "", a.haproxy_stats_port)
    out["stats"] = _http(f"http://{hp.address}:{a.haproxy_stats_port}{uri.rstrip(';')};csv")
    conf_text = secret[f"text:{s5_patroni.CONFIG}"]
    conf = configs.parse_yaml(conf_text.value["text"] if conf_text.ok else "")
    ca = secret[f"cert:{a.ca_path(db)}"]
    su = ((conf.get("postgresql", "authentication", default={}) or {}).get("superuser") or {})
    password = su.get("password")
    if not password and secret["cmd:password"].ok:
        password = next((line.split("=", 1)[1] for line in secret["cmd:password"].value["out"].splitlines()
                         if line.startswith(f"{PASSWORD_VAR}=")), None)
    user = su.get("username", "postgres")
    for key, port in (("sql-primary", a.haproxy_primary_port), ("sql-replicas", a.haproxy_replicas_port)):
        out[key] = sql_through(hp.address, port, user, password, ca.value["text"] if ca.ok else None,
                               "select host(inet_server_addr()), pg_is_in_recovery()")
    return out


def stats_uri(text: str, port: int) -> str:
    """The stats page's path in the section that binds the stats port (HAProxy's default: /haproxy?stats)."""
    for section in configs.haproxy_sections(text):
        if any(configs.bind_port(w) == port for _, w in section.words("bind")):
            for _, words in section.words("stats"):
                if len(words) >= 3 and words[1] == "uri":
                    return words[2]
            return "/haproxy?stats"
    return "/"


def _http(url: str) -> Reading:
    import requests
    source = Source("http", None, f"curl '{url}'")
    try:
        resp = requests.get(url, timeout=NET_TIMEOUT)
    except requests.RequestException as exc:
        return Reading(source, False, error=f"{type(exc).__name__}: {str(exc)[:160]}")
    return Reading(source, True, {"status": resp.status_code, "body": resp.text})


def sql_through(host: str, port: int, user: str, password: str | None, ca_pem: str | None, query: str) -> Reading:
    """psql's way from the host: sslmode=verify-full against the learner's CA. Value: the first row."""
    import psycopg
    source = Source("sql", None, f"psql \"host={host} port={port} user={user} dbname=postgres sslmode=verify-full "
                                 f"sslrootcert=ca.crt\" -c \"{query}\"")
    if ca_pem is None:
        return Reading(source, False, error="the CA certificate could not be read from the db node")
    with tempfile.TemporaryDirectory() as tmp:
        ca = Path(tmp) / "ca.crt"
        ca.write_text(ca_pem)
        try:
            with psycopg.connect(host=host, port=port, user=user, password=password or "", dbname="postgres",
                                 sslmode="verify-full", sslrootcert=str(ca), connect_timeout=int(NET_TIMEOUT),
                                 autocommit=True) as conn:
                row = one_row(conn.execute(query))
        except psycopg.Error as exc:
            return Reading(source, False, error=" ".join(str(exc).split())[:300])
    return Reading(source, True, [str(x) for x in row])


def _props(reading: Reading | None) -> dict[str, str]:
    return s5_patroni._props(reading)


def _server_lines(cfg: str) -> list[tuple[int, list[str], list[str]]]:
    """(line, the server line's words, the default-server words of its section) of every server."""
    out = []
    for section in configs.haproxy_sections(cfg):
        defaults = [w for _, ws in section.words("default-server") for w in ws[1:]]
        for n, words in section.words("server"):
            out.append((n, words, defaults))
    return out


def grade(a: Assignment, r: Readings) -> StepVerdict:
    v = StepVerdict(6, False)
    f = v.findings
    hp = a.haproxy.name
    cfg = r[f"{hp}:text:{CFG}"]
    if not cfg.ok:
        f.append(Finding(f"there is no {CFG} on {hp}" if "does not exist" in cfg.error else cfg.error,
                         f"on {hp}: ls -l /etc/haproxy", "no-config"))
        return v
    check = r[f"{hp}:cmd:check"]
    if check.ok and check.value["rc"] != 0:
        alert = next((line for line in check.value["out"].splitlines() if "[ALERT]" in line),
                     check.value["out"].strip())
        m = re.search(rf"{re.escape(CFG)}:(\d+)", alert)
        diagnosis = "haproxy-verify" if "no CA file" in alert or "verify is enabled" in alert else "haproxy-config"
        meaning = (": check-ssl verifies Patroni's certificate and no CA file is given (ca-file), nor `verify none`"
                   if diagnosis == "haproxy-verify" else "")
        f.append(Finding(f"HAProxy refuses its configuration{meaning}", f"{CFG} line {m.group(1)} on {hp} "
                         f"(`haproxy -c -f {CFG}`: {' '.join(alert.split())[:200]})" if m else
                         f"on {hp}: haproxy -c -f {CFG}", diagnosis))
        return v
    text = cfg.value["text"]
    sections = configs.haproxy_sections(text)
    ports = {configs.bind_port(w): s for s in sections for _, w in s.words("bind")}
    for port, what in ((a.haproxy_primary_port, "the primary"), (a.haproxy_replicas_port, "the replicas"),
                       (a.haproxy_stats_port, "the stats page")):
        if port not in ports:
            f.append(Finding(f"nothing in {CFG} on {hp} binds port {port} ({what})", f"{CFG} on {hp}", "haproxy-bind"))
    if f:
        return v
    show = _props(r.get(f"{hp}:cmd:show"))
    if show.get("ActiveState") != "active":
        f.append(Finding(f"HAProxy on {hp} is {show.get('ActiveState', 'not running')}",
                         f"on {hp}: journalctl -u haproxy", "not-running"))
        return v
    if show.get("UnitFileState") != "enabled":
        f.append(Finding(f"haproxy on {hp} is not enabled at boot", f"on {hp}: systemctl is-enabled haproxy",
                         "not-enabled"))
    stats = r["stats"]
    if not stats.ok or stats.value.get("status") != 200:
        f.append(Finding(f"HAProxy's stats page does not answer on {a.haproxy_stats_port} "
                         f"({stats.error or stats.value.get('status')})", stats.source.look(), "stats"))
        return v
    if f:
        return v
    backends = parse_haproxy_csv(stats.value["body"])
    db_names = {d.name for d in a.db} | {d.address for d in a.db}
    servers = [b for b in backends if b.server in db_names or any(d.address in b.server for d in a.db)]
    if servers and all(not b.status.startswith("UP") for b in servers):
        f.append(_all_down(a, text, servers))
        return v
    primary = r["sql-primary"]
    if not primary.ok:
        f.append(_sql_finding(a, primary, a.haproxy_primary_port, "the primary"))
    elif primary.value[1] != "False":
        f.append(Finding(f"port {a.haproxy_primary_port} on {hp} led to "
                         f"{a.name_of(primary.value[0]) or primary.value[0]},"
                         f" a server in recovery (a replica): its backend's check does not tell the primary apart",
                         f"{CFG} on {hp}: the http-check of the section binding {a.haproxy_primary_port}",
                         "primary-check"))
    replicas = r["sql-replicas"]
    if not replicas.ok:
        f.append(_sql_finding(a, replicas, a.haproxy_replicas_port, "a replica"))
    elif replicas.value[1] != "True":
        f.append(Finding(f"port {a.haproxy_replicas_port} on {hp} led to {a.name_of(replicas.value[0])}, the primary, "
                         f"not a replica", f"{CFG} on {hp}: the http-check of the section binding "
                         f"{a.haproxy_replicas_port}", "replica-check"))
    if not f:
        v.passed = True
        v.confirmed = [f"{a.haproxy_primary_port} reaches the primary ({a.name_of(primary.value[0])}) and "
                       f"{a.haproxy_replicas_port} a replica "
                       f"({a.name_of(replicas.value[0])}), with verify-full from the host",
                       f"health checks over TLS; stats on {a.haproxy_stats_port}", "enabled at boot"]
    return v


def _all_down(a: Assignment, cfg: str, servers: list) -> Finding:
    hp = a.haproxy.name
    checks = ", ".join(sorted({f"{b.check_status} {b.last_check}".strip() for b in servers}))[:160]
    for n, words, defaults in _server_lines(cfg):
        opts = words[3:] + defaults
        if "check" in opts and "check-ssl" not in opts and "ssl" not in opts:
            return Finding(f"every server is DOWN ({checks}): HAProxy checks Patroni's REST API over plain HTTP, and "
                           f"it answers TLS only", f"{CFG} line {n} on {hp} (the server's check options)",
                           "haproxy-http-check")
        if ("check-ssl" in opts or "ssl" in opts) and "crt" not in opts:
            return Finding(f"every server is DOWN ({checks}): HAProxy's checks show no client certificate (crt), and "
                           f"Patroni's REST API requires one (verify_client)", f"{CFG} line {n} on {hp}",
                           "haproxy-no-client-cert")
    return Finding(f"every server is DOWN in HAProxy's stats ({checks})", f"http://{a.haproxy.address}:"
                   f"{a.haproxy_stats_port}/ (LastChk); on {hp}: journalctl -u haproxy", "all-down")


def _sql_finding(a: Assignment, reading: Reading, port: int, what: str) -> Finding:
    err = reading.error
    if "does not match host name" in err or "certificate verify failed" in err and "match" in err:
        return Finding(f"psql with sslmode=verify-full through HAProxy ({a.haproxy.address}:{port}) rejects the "
                       f"certificate PostgreSQL presents: it does not name HAProxy's address, the host the client "
                       f"dialled ({err[:160]})", f"{reading.source.look()}; on the db nodes: openssl x509 -in "
                       f"{node_paths.PATRONI_TLS}/postgres.crt -noout -ext subjectAltName", "pg-cert-haproxy")
    return Finding(f"the host cannot reach {what} through HAProxy on {port}: {err[:200]}", reading.source.look(),
                   "sql-through-haproxy")


STEP = Step(
    id=6, slug="haproxy", title="HAProxy: one address for the primary, one for the replicas",
    goal="Clients connect to haproxy: 5432 reaches the primary, 5433 a replica, wherever they are now.",
    background=(
        "HAProxy does not speak PostgreSQL here: it passes TCP through and picks the server by asking each "
        "member's Patroni REST API, the same API patronictl uses. /primary answers 200 only on the leader, "
        "/replica only on a healthy standby. Since the REST API is TLS with client certificates, the checks "
        "are too: check-ssl on port 8008, a CA file to verify Patroni (or `verify none`; HAProxy 2.8 will not "
        "start with neither), and crt with HAProxy's client certificate. PostgreSQL's own TLS passes through "
        "untouched, so a client verifying the host name (sslmode=verify-full) sees the db node's certificate "
        "while it dialled haproxy: that certificate must name HAProxy too."),
    tasks=(
        Task("haproxy", f"Write {CFG}: a section binding 5432 with `option httpchk` and "
                        "`http-check send meth GET uri /primary`, one binding 5433 with /replica, each server "
                        "line checked with `check-ssl port 8008`, a CA file and HAProxy's client certificate, "
                        "and a stats page on 8404."),
        Task("haproxy", "`haproxy -c -f /etc/haproxy/haproxy.cfg`, then enable and start haproxy."),
        Task("the host", "psql through haproxy:5432 with sslmode=verify-full and the CA: "
                         "`select inet_server_addr(), pg_is_in_recovery()` shows the primary."),
    ),
    hints=(
        "The stats page's LastChk column says why a server is DOWN: L6/L7 errors name the check's TLS or HTTP "
        "step.",
        "`haproxy -c -f /etc/haproxy/haproxy.cfg` names the file and line HAProxy refuses.",
        "A check against Patroni on 8008 is TLS: without check-ssl HAProxy sends plain HTTP and every server "
        "goes DOWN.",
    ),
    read=read, grade=grade, minutes=30)
