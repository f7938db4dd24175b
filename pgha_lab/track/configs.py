"""Reading the files a learner writes the way their programs read them, keeping line numbers so a
finding can say where: YAML (Patroni's and etcd's config files), etcd's settings from its unit, its
environment file and flags, haproxy.cfg's sections, /etc/hosts, a shell alias, certificates. Pure."""
from __future__ import annotations

import datetime as dt
import ipaddress
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID


# -- YAML with line numbers ----------------------------------------------------------------------
@dataclass
class Yaml:
    data: Any
    lines: dict[tuple, int] = field(default_factory=dict)   # key path -> 1-based line of the key
    error: str = ""

    def line(self, *path: Any) -> int | None:
        return self.lines.get(tuple(path))

    def get(self, *path: Any, default: Any = None) -> Any:
        node = self.data
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    def has(self, *path: Any) -> bool:
        return self.get(*path, default=_MISSING) is not _MISSING


_MISSING = object()


def parse_yaml(text: str) -> Yaml:
    try:
        data = yaml.safe_load(text) if text.strip() else {}
        root = yaml.compose(text) if text.strip() else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        return Yaml(None, {}, f"{where}{getattr(exc, 'problem', None) or exc}")
    lines: dict[tuple, int] = {}

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else None
                lines[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))
    walk(root, ())
    return Yaml(data, lines)


# -- plain text ----------------------------------------------------------------------------------
def hosts_entries(text: str) -> list[tuple[int, str, list[str]]]:
    """/etc/hosts: (line, address, names) for every entry."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if len(words) >= 2:
            out.append((n, words[0], words[1:]))
    return out


def latest_sign(text: str, signs: tuple[tuple[str, str, str], ...],
                tail: int | None = None) -> tuple[str, str, str] | None:
    """The latest log line matching one of `signs` ((pattern, diagnosis, meaning), in order of
    precedence on a line): (diagnosis, meaning, the line)."""
    lines = text.splitlines()
    for line in reversed(lines[-tail:] if tail else lines):
        for pattern, diagnosis, meaning in signs:
            if re.search(pattern, line):
                return diagnosis, meaning, line.strip()[:240]
    return None


# -- systemd -------------------------------------------------------------------------------------
def exec_argv(show_value: str) -> list[str]:
    """The last ExecStart's argv from `systemctl show -p ExecStart` ("{ path=... ; argv[]=a b ; ...}")."""
    found = re.findall(r"argv\[\]=(.*?) ;", show_value or "")
    if not found:
        return []
    try:
        return shlex.split(found[-1])
    except ValueError:
        return found[-1].split()


def env_file(text: str) -> dict[str, tuple[str, int]]:
    """KEY=VALUE lines (systemd EnvironmentFile / /etc/default): name -> (value, line)."""
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.partition("=")
        k = k.removeprefix("export ").strip()
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
            v = v[1:-1]
        out[k] = (v, n)
    return out


# -- etcd's settings -----------------------------------------------------------------------------
@dataclass
class Setting:
    value: Any
    where: str           # "/etc/etcd/etcd.conf.yml line 7", "/etc/default/etcd line 3", "the etcd unit"


def etcd_settings(argv: list[str], env: dict[str, str], files: dict[str, str],
                  env_lines: dict[str, str]) -> tuple[dict[str, Setting], str | None]:
    """etcd 3.4's effective settings as it starts: from the file --config-file names (when one is
    given etcd ignores its other flags and ETCD_* variables), else flags over ETCD_* variables.
    `files`: path -> text of files read on the node; `env_lines`: variable -> where it is set.
    Returns the settings and the config file's path (None without one)."""
    flags: dict[str, str] = {}
    i = 1
    while i < len(argv):
        word = argv[i]
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if not eq:
                if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    value, i = argv[i + 1], i + 1
                else:
                    value = "true"
            flags[name] = value
        i += 1
    config = flags.get("config-file") or env.get("ETCD_CONFIG_FILE")
    if config:
        parsed = parse_yaml(files.get(config, ""))
        out = {}
        if isinstance(parsed.data, dict):
            for key, value in parsed.data.items():
                if isinstance(value, dict):
                    for sub, v in value.items():
                        out[f"{key}.{sub}"] = Setting(v, f"{config} line {parsed.line(key, sub)}")
                out[key] = Setting(value, f"{config} line {parsed.line(key)}")
        return out, config
    out = {}
    for k, v in env.items():
        if k.startswith("ETCD_") and k != "ETCD_CONFIG_FILE":
            name = k[5:].lower().replace("_", "-")
            out[name] = Setting(v, env_lines.get(k, "the etcd unit's environment"))
    for name, v in flags.items():
        out[name] = Setting(v, "the etcd unit's command line (ExecStart, DAEMON_ARGS)")
    # The flags' TLS names, as the config file's sections would call them.
    for flag, key in (("cert-file", "client-transport-security.cert-file"),
                      ("key-file", "client-transport-security.key-file"),
                      ("trusted-ca-file", "client-transport-security.trusted-ca-file"),
                      ("client-cert-auth", "client-transport-security.client-cert-auth"),
                      ("peer-cert-file", "peer-transport-security.cert-file"),
                      ("peer-key-file", "peer-transport-security.key-file"),
                      ("peer-trusted-ca-file", "peer-transport-security.trusted-ca-file"),
                      ("peer-client-cert-auth", "peer-transport-security.client-cert-auth")):
        if flag in out:
            out[key] = out[flag]
    return out, None


# -- haproxy.cfg ---------------------------------------------------------------------------------
@dataclass
class Section:
    kind: str                 # global, defaults, frontend, backend, listen
    name: str
    line: int
    lines: list[tuple[int, list[str]]] = field(default_factory=list)

    def words(self, first: str) -> list[tuple[int, list[str]]]:
        return [(n, w) for n, w in self.lines if w and w[0] == first]


def haproxy_sections(text: str) -> list[Section]:
    out: list[Section] = []
    for n, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] in ("global", "defaults", "frontend", "backend", "listen", "peers", "resolvers",
                        "userlist", "program", "http-errors", "ring", "cache", "mailers"):
            out.append(Section(words[0], words[1] if len(words) > 1 else "", n))
        elif out:
            out[-1].lines.append((n, words))
    return out


def bind_port(words: list[str]) -> int | None:
    """The port of a `bind` line (`bind *:5432`, `bind 0.0.0.0:5432 ssl ...`)."""
    if len(words) < 2:
        return None
    port = words[1].rsplit(":", 1)[-1]
    return int(port) if port.isdigit() else None


# -- certificates --------------------------------------------------------------------------------
@dataclass
class CertFacts:
    subject: str
    issuer: str
    names: list[str]          # DNS names and IP addresses of the SAN
    server_auth: bool
    client_auth: bool
    is_ca: bool
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint: str
    public_key: str           # PEM of the public key
    cert: x509.Certificate

    def names_cover(self, name: str) -> bool:
        return name in self.names


def cert_facts(pem: str) -> CertFacts | None:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)] + \
                [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        server, client = ExtendedKeyUsageOID.SERVER_AUTH in eku, ExtendedKeyUsageOID.CLIENT_AUTH in eku
    except x509.ExtensionNotFound:
        server = client = True   # no extendedKeyUsage: OpenSSL and Go allow any purpose
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    pub = cert.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return CertFacts(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), names, server, client, is_ca,
                     cert.not_valid_before_utc, cert.not_valid_after_utc,
                     cert.fingerprint(hashes.SHA256()).hex(), pub, cert)


def signed_by(leaf: CertFacts, ca: CertFacts) -> bool:
    try:
        leaf.cert.verify_directly_issued_by(ca.cert)
        return True
    except Exception:   # ValueError, TypeError or InvalidSignature: all mean "not this CA's"
        return False


def same_public_key(a: str, b: str) -> bool:
    def norm(pem: str) -> str:
        return "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    return bool(a.strip()) and norm(a) == norm(b)


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
