"""The lab's TLS material: a CA, one certificate per role on each node, and each node's TLS folder.

Everything is derived from the Topology. Files live in paths.certs (the CA key never leaves it);
paths.node_dir(node)/"tls" gets exactly what that node needs, and compose mounts it read-only
at node_paths.TLS_MOUNT, from where the image's entrypoint copies it into the role's TLS folder.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pgha_lab.errors import LabError
from pgha_lab.fsutil import ensure_dir, write_if_changed
from pgha_lab.paths import LabPaths
from pgha_lab.topology import Node, Topology

# Bump when the way certificates are made changes, so existing labs get fresh ones.
PLAN_VERSION = 1
CA_DAYS = 3650
LEAF_DAYS = 397               # what public CAs may issue; short enough that renewal is exercised
RENEW_WITHIN = dt.timedelta(days=30)
STATE_FILE = "state.json"     # each leaf's digest (what shaped it), so only changed leaves are remade
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
# A rotation on a running lab goes in stages (see rotate_stage); between them these files exist.
CA_NEXT_CERT = "ca-next.crt"          # the incoming CA, trusted beside the current one ...
CA_NEXT_KEY = "ca-next.key"           # ... before it signs anything
CA_PREVIOUS_CERT = "ca-previous.crt"  # the outgoing CA, still trusted while nodes take new leaves
ROTATION_FILES = (CA_NEXT_CERT, CA_NEXT_KEY, CA_PREVIOUS_CERT)
HOST_CLIENT = "host-client"   # the host's own client certificate (probes: etcd API, Patroni REST API)
# Certificate names inside a node's TLS folder, the same on every node of a role, so configs,
# health checks and entrypoints never need the node's name: <name>.crt + <name>.key (or <name>.pem).
ETCD = "etcd"                  # etcd member: client and peer traffic
ETCDCTL = "etcdctl"            # ectl on an etcd node
POSTGRES = "postgres"          # PostgreSQL's server certificate (names HAProxy too)
RESTAPI = "restapi"            # Patroni's REST API server
ETCD_CLIENT = "etcd-client"    # Patroni talking to etcd
PATRONICTL = "patronictl"      # patronictl, and Patroni calling another member's REST API
HAPROXY_CHECK = "haproxy-check"  # HAProxy's health-check client (one .pem: certificate and key)
KEY_MODE = 0o600
CERT_MODE = 0o644
ORG = "pgha-lab"


def crt(name: str) -> str:
    return f"{name}.crt"


def key(name: str) -> str:
    return f"{name}.key"


def pem(name: str) -> str:
    return f"{name}.pem"


@dataclass(frozen=True)
class CertSpec:
    """One leaf certificate: what it is for, the names it holds, the usages it allows."""
    stem: str                       # file stem in paths.certs: <stem>.crt and <stem>.key
    common_name: str
    server: bool                    # serverAuth
    client: bool                    # clientAuth
    dns: tuple[str, ...]
    ips: tuple[str, ...]
    node: str | None = None         # the node whose TLS folder carries it (None: host only)
    bundle_name: str = ""           # its name inside that node's TLS folder, without extension
    combined_pem: bool = False      # HAProxy wants cert + key in one *.pem

    @property
    def purpose(self) -> str:
        return "server+client" if self.server and self.client else "server" if self.server else "client"


@dataclass
class TlsReport:
    """What `ensure` did and why; `changed` is False when no file on disk was touched."""
    changed: bool
    ca_renewed: bool
    reasons: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


# -- the plan: which certificates a topology needs ----------------------------------------
def _local() -> tuple[tuple[str, ...], tuple[str, ...]]:
    return ("localhost",), ("127.0.0.1",)


def _names(topology: Topology, node: Node) -> tuple[str, ...]:
    return (node.name, topology.container_name(node))


def plan(topology: Topology) -> list[CertSpec]:
    """Every leaf certificate the lab needs, in a stable order."""
    ldns, lips = _local()
    specs: list[CertSpec] = []
    for m in topology.etcd:
        # One certificate for both client and peer traffic: peers present it as clients too.
        specs.append(CertSpec(f"{m.name}-etcd", m.name, True, True, _names(topology, m) + ldns,
                              (str(m.address),) + lips, m.name, ETCD))
        specs.append(CertSpec(f"{m.name}-etcdctl", f"etcdctl@{m.name}", False, True, _names(topology, m) + ldns,
                              (str(m.address),) + lips, m.name, ETCDCTL))
    hp = topology.haproxy
    published = []
    if topology.published.enabled and not ipaddress.ip_address(topology.published.bind).is_unspecified:
        published.append(topology.published.bind)
    for db in topology.db:
        # Through HAProxy (TCP pass-through) a client meets this very certificate, so it must
        # also name the HAProxy node and the loopback a published port is reached on, or
        # sslmode=verify-full fails for everyone who does not connect to the node directly.
        pg_dns = _names(topology, db) + _names(topology, hp) + ldns
        # The VIP too, whether or not the lab has two HAProxy nodes now: growing to two re-issues nothing.
        vip = (str(topology.vip_reserved),) if topology.vip_reserved else ()
        pg_ips = tuple(dict.fromkeys((str(db.address), str(hp.address), *vip, *lips, *published)))
        specs.append(CertSpec(f"{db.name}-postgres", db.name, True, False, pg_dns, pg_ips, db.name, POSTGRES))
        specs.append(CertSpec(f"{db.name}-restapi", db.name, True, False, _names(topology, db) + ldns,
                              (str(db.address),) + lips, db.name, RESTAPI))
        specs.append(CertSpec(f"{db.name}-etcd-client", f"patroni@{db.name}", False, True, _names(topology, db) + ldns,
                              (str(db.address),) + lips, db.name, ETCD_CLIENT))
        # ctl section: patronictl, and Patroni itself when it calls another member's REST API.
        specs.append(CertSpec(f"{db.name}-patronictl", f"patronictl@{db.name}", False, True,
                              _names(topology, db) + ldns, (str(db.address),) + lips, db.name, PATRONICTL))
    for proxy in topology.haproxies:
        specs.append(CertSpec(f"{proxy.name}-check", f"haproxy@{proxy.name}", False, True, _names(topology, proxy),
                              (str(proxy.address),), proxy.name, HAPROXY_CHECK, combined_pem=True))
    specs.append(CertSpec(HOST_CLIENT, f"{ORG}@host", False, True, ldns,
                          (str(topology.host_address),) + lips, None, ""))
    return specs


def fingerprint(topology: Topology) -> str:
    """A digest of the whole plan: the state file of earlier versions held only this."""
    doc = {"version": PLAN_VERSION, "key": "ec-p256", "project": topology.project,
           "specs": [asdict(s) for s in plan(topology)]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def spec_digest(spec: CertSpec, topology: Topology, ca: x509.Certificate) -> str:
    """A digest of everything that shapes one leaf (subject, names, usages, issuing CA)."""
    doc = {"version": PLAN_VERSION, "key": "ec-p256", "project": topology.project, "spec": asdict(spec),
           "ca": ca.fingerprint(hashes.SHA256()).hex()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# -- making certificates ------------------------------------------------------------------
def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _make_ca(topology: Topology, now: dt.datetime,
             suffix: str = "") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    # A rotated CA gets its own name, so a bundle holding both tells them apart at a glance.
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{ORG} CA ({topology.project}){suffix}")])
    pub = key.public_key()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _make_leaf(spec: CertSpec, topology: Topology, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
               now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    pub = key.public_key()
    usages = []
    if spec.server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if spec.client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    san: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns]
    san += [x509.IPAddress(ipaddress.ip_address(i)) for i in spec.ips]
    not_after = min(now + dt.timedelta(days=LEAF_DAYS), ca_cert.not_valid_after_utc)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, topology.project),
                         x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name)])
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject).public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # ECDSA keys sign (handshakes); they never encipher keys, so digitalSignature alone.
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


# -- reading what is on disk --------------------------------------------------------------
def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _load_ca(certs: Path, cert_file: str = CA_CERT,
             key_file: str = CA_KEY) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    """A CA's key and certificate (the lab's, or the next one a rotation staged), None unless both
    load and belong together."""
    cert = _load_cert(certs / cert_file)
    try:
        key = serialization.load_pem_private_key((certs / key_file).read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if cert is None or not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    public = cert.public_key()
    if (not isinstance(public, ec.EllipticCurvePublicKey)
            or key.public_key().public_numbers() != public.public_numbers()):
        return None
    return key, cert


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except Exception:   # ValueError, TypeError or InvalidSignature: all mean "not this CA's"
        return False


def _read_state(certs: Path) -> dict:
    try:
        state = json.loads((certs / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _recorded(state: dict, topology: Topology, digests: dict[str, str]) -> dict[str, str] | None:
    """The digests the state file holds (None: no record); a state file of an earlier version whose
    fingerprint still matches counts as recording today's digests, so upgrading remakes nothing."""
    if isinstance(state.get("certs"), dict):
        return state["certs"]
    return dict(digests) if state.get("fingerprint") == fingerprint(topology) else None


def _why_due(certs: Path, spec: CertSpec, digest: str, recorded: dict[str, str], ca: x509.Certificate,
             now: dt.datetime) -> str | None:
    """Why this leaf must be made again, or None when it can stay as it is."""
    if spec.stem not in recorded:
        return f"{spec.stem} is new"
    if recorded[spec.stem] != digest:
        return f"{spec.stem} no longer matches the topology"
    cert = _load_cert(certs / f"{spec.stem}.crt")
    if cert is None or not (certs / f"{spec.stem}.key").is_file():
        return f"{spec.stem} is missing or unreadable"
    if not _signed_by(cert, ca):
        return f"{spec.stem} is not signed by the lab CA"
    if cert.not_valid_after_utc - now < RENEW_WITHIN:
        return f"{spec.stem} expires on {cert.not_valid_after_utc:%Y-%m-%d}"
    if spec.combined_pem and not (certs / f"{spec.stem}.pem").is_file():
        return f"{spec.stem}.pem is missing"
    return None


def _stale(certs: Path, specs: list[CertSpec]) -> list[Path]:
    """Certificate files of leaves the topology no longer has."""
    keep = {CA_CERT, CA_KEY, *ROTATION_FILES} | {f"{s.stem}{ext}" for s in specs for ext in (".crt", ".key", ".pem")}
    return sorted(p for p in certs.iterdir()
                  if p.is_file() and p.suffix in (".crt", ".key", ".pem") and p.name not in keep)


# -- the public entry points --------------------------------------------------------------
def adopt_legacy(paths: LabPaths) -> bool:
    """Move a lab's TLS material from labs/<project>/certs to certs/<project> (where labs made before
    certs/ existed kept it), bytes and mtimes unchanged, so nothing is remade and no node restarts."""
    old, new = paths.legacy_certs, paths.certs
    if not old.is_dir() or new.exists():
        return False
    new.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(old), str(new))
    return True


def ensure(paths: LabPaths, topology: Topology, *, rotate: bool = False, now: dt.datetime | None = None) -> TlsReport:
    """Make the CA and every certificate the topology needs, only when needed.

    The CA is renewed when it is missing, damaged, within RENEW_WITHIN of expiry, or on rotate,
    and then every leaf with it. Otherwise only the leaves that are new, whose digest changed,
    or that are missing, not signed by the CA or near expiry are remade, so a running node whose
    certificates did not change keeps its TLS folder (and is not restarted); leaves the topology
    no longer has are removed. Untouched files keep their bytes and mtimes.
    """
    now = now or _utcnow()
    adopt_legacy(paths)
    certs = paths.certs
    ensure_dir(certs, 0o700)
    report = TlsReport(changed=False, ca_renewed=False)

    loaded = None if rotate else _load_ca(certs)
    if rotate:
        report.reasons.append("rotation was asked for")
    elif loaded is None:
        report.reasons.append("the CA is missing or unreadable")
    elif loaded[1].not_valid_after_utc - now < RENEW_WITHIN:
        report.reasons.append(f"the CA expires on {loaded[1].not_valid_after_utc:%Y-%m-%d}")
        loaded = None
    if loaded is None:
        ca_key, ca_cert = _make_ca(topology, now)
        report.ca_renewed = True
        for name in ROTATION_FILES:   # a new CA from scratch ends any staged rotation
            (certs / name).unlink(missing_ok=True)
    else:
        ca_key, ca_cert = loaded

    specs = plan(topology)
    digests = {s.stem: spec_digest(s, topology, ca_cert) for s in specs}
    state = _read_state(certs)
    recorded = _recorded(state, topology, digests)
    due = specs
    if not report.ca_renewed and recorded is None:
        report.reasons.append(f"{STATE_FILE} does not record how the certificates were made, so all are made again")
    elif not report.ca_renewed and recorded is not None:   # the branch above took recorded None
        why = {s.stem: _why_due(certs, s, digests[s.stem], recorded, ca_cert, now) for s in specs}
        due = [s for s in specs if why[s.stem]]
        report.reasons.extend(reason for s in due if (reason := why[s.stem]))
    stale = _stale(certs, specs)
    report.reasons.extend(f"{stem} is no longer in the topology" for stem in dict.fromkeys(p.stem for p in stale))
    if report.ca_renewed or due or stale or state.get("certs") != digests:
        _write(paths, topology, due, digests, ca_key, ca_cert, now, report)
        for p in stale:
            p.unlink()
            report.written.append(p)
        _write_state(certs, digests, ca_cert, now, report)
    report.written.extend(write_node_folders(paths, topology))
    report.changed = bool(report.written)
    return report


def _write(paths: LabPaths, topology: Topology, due: list[CertSpec], digests: dict[str, str],
           ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, now: dt.datetime, report: TlsReport) -> None:
    """Make the due leaves in memory first, then write. The state file first forgets them (and
    gets them back last), so a crash half-way leaves them due again on the next run."""
    certs = paths.certs
    files: dict[str, tuple[bytes, int]] = {}
    if report.ca_renewed:
        files[CA_KEY] = (_key_pem(ca_key), KEY_MODE)
        files[CA_CERT] = (ca_cert.public_bytes(serialization.Encoding.PEM), CERT_MODE)
    for spec in due:
        key, cert = _make_leaf(spec, topology, ca_key, ca_cert, now)
        cert_pem, key_pem = cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)
        files[f"{spec.stem}.crt"] = (cert_pem, CERT_MODE)
        files[f"{spec.stem}.key"] = (key_pem, KEY_MODE)
        if spec.combined_pem:
            files[f"{spec.stem}.pem"] = (cert_pem + key_pem, KEY_MODE)
    if files:
        made = {s.stem for s in due}
        _write_state(certs, {k: v for k, v in digests.items() if k not in made}, ca_cert, now, report)
    for name, (data, mode) in files.items():
        if write_if_changed(certs / name, data, mode):
            report.written.append(certs / name)


def _write_state(certs: Path, digests: dict[str, str], ca: x509.Certificate, now: dt.datetime,
                 report: TlsReport) -> None:
    state = {"version": PLAN_VERSION, "updated": now.isoformat(timespec="seconds"),
             "ca_not_after": ca.not_valid_after_utc.isoformat(timespec="seconds"), "certs": digests}
    if write_if_changed(certs / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o600) \
            and certs / STATE_FILE not in report.written:
        report.written.append(certs / STATE_FILE)


# -- rotation with overlapping trust (a running lab) -------------------------------------
# ca.crt is the trust bundle every node and the host read: the signing CA first (what _load_ca
# takes), then any CA trusted beside it during a rotation. Each stage is followed by a rolling
# restart, so no two nodes ever stop trusting each other:
#   1 "trust-both": a new CA is made and trusted beside the old one; leaves stay as they are;
#   2 "new-leaves": the new CA signs, every leaf is made again from it, the old CA still trusted;
#   3 "new-only":   only the new CA is trusted.
ROTATION_STAGES = ("trust-both", "new-leaves", "new-only")


def rotation_stage(paths: LabPaths) -> str | None:
    """The last stage an unfinished rotation wrote (None: no rotation under way)."""
    if (paths.certs / CA_NEXT_KEY).is_file():
        return "trust-both"
    if (paths.certs / CA_PREVIOUS_CERT).is_file():
        return "new-leaves"
    return None


def trusted_cas(paths: LabPaths) -> list[x509.Certificate]:
    """The CAs the lab's trust bundle (ca.crt) holds, the signing one first."""
    try:
        return x509.load_pem_x509_certificates((paths.certs / CA_CERT).read_bytes())
    except (OSError, ValueError):
        return []


def common_name(cert: x509.Certificate) -> str:
    """The subject's CN: text in every certificate (bytes only for a few other attributes' types)."""
    value = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return value if isinstance(value, str) else value.decode()


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def rotate_stage(paths: LabPaths, topology: Topology, stage: str, now: dt.datetime | None = None) -> TlsReport:
    """Write one stage of a rotation (ROTATION_STAGES) and every node's TLS folder; the caller
    rolls the nodes before the next stage."""
    now = now or _utcnow()
    certs = paths.certs
    loaded = _load_ca(certs)
    if loaded is None:
        raise LabError(f"the lab CA in {certs} is missing or unreadable; "
                       "run `pgha-lab certs --rotate` on a stopped lab.")
    ca_key, ca_cert = loaded
    report = TlsReport(changed=False, ca_renewed=False, reasons=[f"rotation stage {stage}"])

    def put(name: str, data: bytes, mode: int) -> None:
        if write_if_changed(certs / name, data, mode):
            report.written.append(certs / name)

    if stage == "trust-both":
        next_key, next_cert = _make_ca(topology, now, f" {now:%Y-%m-%d %H:%M:%S}")
        put(CA_NEXT_KEY, _key_pem(next_key), KEY_MODE)
        put(CA_NEXT_CERT, _pem(next_cert), CERT_MODE)
        put(CA_CERT, _pem(ca_cert) + _pem(next_cert), CERT_MODE)
    elif stage == "new-leaves":
        staged = _load_ca(certs, CA_NEXT_CERT, CA_NEXT_KEY)
        if staged is None:
            raise LabError(f"the next CA that the rotation staged in {certs} ({CA_NEXT_CERT}, {CA_NEXT_KEY}) is "
                           "missing or unreadable; run `pgha-lab certs --rotate` on a stopped lab.")
        next_key, next_cert = staged
        # The old CA is kept on record first, so an interrupted stage can be told apart.
        put(CA_PREVIOUS_CERT, _pem(ca_cert), CERT_MODE)
        put(CA_KEY, _key_pem(next_key), KEY_MODE)
        put(CA_CERT, _pem(next_cert) + _pem(ca_cert), CERT_MODE)
        for name in (CA_NEXT_CERT, CA_NEXT_KEY):
            (certs / name).unlink(missing_ok=True)
        report.ca_renewed = True
        # Every leaf's digest names its CA, so ensure makes each one again from the new CA.
        made = ensure(paths, topology, now=now)
        report.written.extend(made.written)
    elif stage == "new-only":
        put(CA_CERT, _pem(ca_cert), CERT_MODE)
        (certs / CA_PREVIOUS_CERT).unlink(missing_ok=True)
    else:
        raise ValueError(f"unknown rotation stage {stage!r}")
    report.written.extend(write_node_folders(paths, topology))
    report.changed = bool(report.written)
    return report


def node_bundle(topology: Topology, node: Node | str) -> dict[str, str]:
    """File name in the node's TLS folder -> file name in paths.certs, for one node.

    Names inside a folder are the same on every node of a role (postgres.crt, etcd.crt ...),
    so configs and the image's entrypoint never need the node's name to find them.
    """
    node = topology.node(node) if isinstance(node, str) else node
    bundle = {CA_CERT: CA_CERT}
    for spec in plan(topology):
        if spec.node != node.name:
            continue
        if spec.combined_pem:
            bundle[pem(spec.bundle_name)] = pem(spec.stem)
        else:
            bundle[crt(spec.bundle_name)] = crt(spec.stem)
            bundle[key(spec.bundle_name)] = key(spec.stem)
    return bundle


def write_node_folders(paths: LabPaths, topology: Topology) -> list[Path]:
    """Copy each node's material into paths.node_dir(node)/tls, exactly that and nothing else."""
    written: list[Path] = []
    for node in topology.nodes:
        folder = paths.node_dir(node.name) / "tls"
        ensure_dir(folder, 0o700)
        bundle = node_bundle(topology, node)
        for dest, src in bundle.items():
            try:
                data = (paths.certs / src).read_bytes()
            except FileNotFoundError:
                raise LabError(f"{paths.certs / src} is missing; run `pgha-lab certs` to make it again.") from None
            mode = KEY_MODE if dest.endswith((".key", ".pem")) else CERT_MODE
            if write_if_changed(folder / dest, data, mode):
                written.append(folder / dest)
        for extra in folder.iterdir():
            if extra.name not in bundle:
                shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
                written.append(extra)
    return written


@dataclass(frozen=True)
class ClientFiles:
    """A CA and a client certificate, as TLS clients on the host (probes, tests) need them."""
    ca: Path
    cert: Path
    key: Path


def host_client(paths: LabPaths) -> ClientFiles:
    """The host's client certificate: etcd's API and the Patroni REST API both accept it."""
    adopt_legacy(paths)
    files = ClientFiles(paths.certs / CA_CERT, paths.certs / f"{HOST_CLIENT}.crt", paths.certs / f"{HOST_CLIENT}.key")
    if not (files.ca.is_file() and files.cert.is_file() and files.key.is_file()):
        raise LabError(f"the lab's certificates are not in {paths.certs}; "
                       "run `pgha-lab certs` (or `pgha-lab up`) first.")
    return files


@dataclass(frozen=True)
class CertInfo:
    file: str
    subject: str
    purpose: str
    names: list[str]
    not_after: str


def describe(paths: LabPaths, topology: Topology) -> list[CertInfo]:
    """What is on disk, for `pgha-lab certs` to print."""
    out = []
    ca = _load_cert(paths.certs / CA_CERT)
    if ca is not None:
        out.append(CertInfo(CA_CERT, ca.subject.rfc4514_string(), "CA", [], f"{ca.not_valid_after_utc:%Y-%m-%d}"))
        for extra in trusted_cas(paths)[1:]:   # during a rotation: trusted, not signing
            out.append(CertInfo(CA_CERT, extra.subject.rfc4514_string(), "CA (trusted, rotating)", [],
                                f"{extra.not_valid_after_utc:%Y-%m-%d}"))
    for spec in plan(topology):
        cert = _load_cert(paths.certs / f"{spec.stem}.crt")
        if cert is None:
            continue
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*san.get_values_for_type(x509.DNSName), *(str(i) for i in san.get_values_for_type(x509.IPAddress))]
        out.append(CertInfo(f"{spec.stem}.crt", common_name(cert), spec.purpose, names,
                            f"{cert.not_valid_after_utc:%Y-%m-%d}"))
    return out

