"""Step 2, certificates: one CA every node trusts, and on each node the certificates its services
present, each signed by that CA, naming the node (PostgreSQL's also HAProxy, which clients dial),
allowing the usages its role needs, with a key that belongs to it and only its service user reads."""
from __future__ import annotations

import datetime as dt
from functools import partial

from pgha_lab import tls
from pgha_lab.track import configs
from pgha_lab.track.assignment import Assignment, CertDuty
from pgha_lab.track.model import Finding, Readings, Step, StepVerdict, Task
from pgha_lab.track.readers import Reader


def read(reader: Reader, a: Assignment) -> Readings:
    out = Readings()

    def visit(node: str) -> None:
        duties = [d for d in a.certificates if d.node == node]
        got = reader.files(node, certs=[a.ca_path(node)] + [d.cert for d in duties], keys=[d.key for d in duties])
        out.update({f"{node}:{k}": r for k, r in got.items()})
    reader.many({n.name: partial(visit, n.name) for n in a.nodes})
    return out


def _ca(a: Assignment, r: Readings, node: str) -> tuple[configs.CertFacts | None, Finding | None]:
    path = a.ca_path(node)
    reading = r[f"{node}:cert:{path}"]
    if not reading.ok:
        return None, Finding(f"there is no CA certificate at {path} on {node}",
                             f"on {node}: ls -l {path.rsplit('/', 1)[0]}",
                             "missing-file")
    facts = configs.cert_facts(reading.value["text"])
    if facts is None:
        return None, Finding(f"{path} on {node} holds no PEM certificate",
                             f"on {node}: openssl x509 -in {path} -noout -text",
                             "not-a-certificate")
    if not facts.is_ca:
        return None, Finding(f"the certificate in {path} on {node} is not a CA (its basicConstraints say CA:FALSE), "
                             f"so nothing it signed verifies",
                             f"on {node}: openssl x509 -in {path} -noout -ext basicConstraints",
                             "ca-not-ca")
    return facts, None


def _duty(d: CertDuty, r: Readings, ca: configs.CertFacts, now: dt.datetime) -> list[Finding]:
    reading = r[f"{d.node}:cert:{d.cert}"]
    show = f"on {d.node}: openssl x509 -in {d.cert} -noout"
    if not reading.ok:
        return [Finding(f"{d.purpose} is missing on {d.node} ({d.cert})",
                        f"on {d.node}: ls -l {d.cert.rsplit('/', 1)[0]}",
                        "missing-file")]
    facts = configs.cert_facts(reading.value["text"])
    if facts is None:
        return [Finding(f"{d.cert} on {d.node} holds no PEM certificate", f"{show} -text", "not-a-certificate")]
    out = []
    if not configs.signed_by(facts, ca):
        out.append(Finding(f"{d.purpose} on {d.node} ({d.cert}) is not signed by the CA in {d.cert.rsplit('/', 1)[0]}/"
                           f"{tls.CA_CERT} (its issuer: {facts.issuer}), so peers holding that CA refuse it",
                           f"{show} -issuer; openssl verify -CAfile {d.cert.rsplit('/', 1)[0]}/{tls.CA_CERT} {d.cert}",
                           "wrong-ca"))
    if facts.not_after <= now or facts.not_before > now:
        out.append(Finding(f"{d.purpose} on {d.node} ({d.cert}) is not valid "
                           f"now (valid {facts.not_before:%Y-%m-%d %H:%M} "
                           f"to {facts.not_after:%Y-%m-%d %H:%M} UTC)", f"{show} -dates", "expired"))
    for name in d.names:
        if not facts.names_cover(name):
            kind = "address" if configs.is_address(name) else "name"
            whose = d.node if name in (d.names[0], d.names[1]) else "HAProxy, which clients connect through,"
            out.append(Finding(f"{d.purpose} on {d.node} ({d.cert}) does not name {name} ({whose} {kind}): a client "
                               f"that verifies the host name it dialled refuses it", f"{show} -ext subjectAltName",
                               "san-missing"))
            break
    if d.server and not facts.server_auth:
        out.append(Finding(f"{d.purpose} on {d.node} ({d.cert}) does not allow server authentication (TLS Web Server "
                           f"Authentication), so clients refuse it", f"{show} -ext extendedKeyUsage", "no-server-auth"))
    if d.client and not facts.client_auth:
        why = ("etcd members present it to each other as clients, and peers refuse it ('bad certificate')"
               if "etcd's client and peer" in d.purpose else "the server it is shown to refuses it ('bad certificate')")
        out.append(Finding(f"{d.purpose} on {d.node} ({d.cert}) does not allow client authentication (TLS Web Client "
                           f"Authentication): {why}", f"{show} -ext extendedKeyUsage", "no-client-auth"))
    key = r[f"{d.node}:key:{d.key}"]
    if not key.ok:
        out.append(Finding(f"the key of {d.purpose} is missing on {d.node} ({d.key})",
                           f"on {d.node}: ls -l {d.key.rsplit('/', 1)[0]}", "missing-file"))
        return out
    if "BEGIN PUBLIC KEY" not in key.value["text"]:
        out.append(Finding(f"{d.key} on {d.node} holds no private key openssl can read",
                           f"on {d.node}: sudo openssl pkey -in {d.key} -noout", "not-a-key"))
    elif not configs.same_public_key(key.value["text"], facts.public_key):
        out.append(Finding(f"the key {d.key} on {d.node} does not belong "
                           f"to the certificate {d.cert} (another key pair)",
                           f"on {d.node}: compare `openssl x509 -in {d.cert} -noout -pubkey` with "
                           f"`sudo openssl pkey -in {d.key} -pubout`", "key-mismatch"))
    mode = int(key.value["mode"] or "0", 8)
    if key.value["owner"] != d.owner or mode & 0o077:
        out.append(Finding(f"the key {d.key} on {d.node} is owned by {key.value['owner']} with mode {mode:04o}: only "
                           f"{d.owner} may read it (PostgreSQL and etcd refuse or fail on a key others can read or "
                           f"they cannot)", f"on {d.node}: ls -l {d.key}", "key-permissions"))
    return out


def grade(a: Assignment, r: Readings, now: dt.datetime | None = None) -> StepVerdict:
    now = now or dt.datetime.now(dt.UTC)
    verdict = StepVerdict(2, False)
    cas: dict[str, configs.CertFacts] = {}
    for node in a.nodes:
        facts, problem = _ca(a, r, node.name)
        if problem:
            verdict.findings.append(problem)
        elif facts is not None:   # _ca gives the facts or the problem
            cas[node.name] = facts
    if cas:
        first_node, first = next(iter(cas.items()))
        for name, facts in cas.items():
            if facts.fingerprint != first.fingerprint:
                verdict.findings.append(Finding(
                    f"{name}'s {a.ca_path(name)} is another CA than {first_node}'s ({facts.subject}, valid from "
                    f"{facts.not_before:%Y-%m-%d %H:%M} UTC): certificates signed by one are not trusted by nodes "
                    f"holding the other", f"on {name} and {first_node}: openssl x509 -in CA_FILE -noout -fingerprint",
                    "two-cas"))
    for duty in a.certificates:
        if duty.node in cas:
            verdict.findings.extend(_duty(duty, r, cas[duty.node], now))
    if not verdict.findings:
        verdict.passed = True
        verdict.confirmed = [f"one CA on all {len(a.nodes)} nodes",
                             f"{len(a.certificates)} certificates signed by it, naming their node, with the usages "
                             f"their role needs and keys only their service user reads"]
    return verdict


def _layout(a: Assignment) -> str:
    by_node: dict[str, list[str]] = {}
    for d in a.certificates:
        by_node.setdefault(d.node, []).append(f"{d.cert.rsplit('/', 1)[1]} ({d.purpose})")
    return "; ".join(f"{node}: {', '.join(files)}" for node, files in by_node.items())


STEP = Step(
    id=2, slug="tls", title="Certificates: a CA and every node's certificates",
    goal="One certificate authority, trusted by every node, and on each node the certificates its services show.",
    background=(
        "Every channel of the estate is TLS: etcd's clients and peers, Patroni's REST API, PostgreSQL, HAProxy's "
        "health checks. A certificate is only accepted if it is signed by a CA the other side trusts, names the "
        "host the other side dialled (by name or address, in its subjectAltName), and allows the use it is put "
        "to: serverAuth for a server, clientAuth for a client. etcd members present one certificate both as "
        "server and as client of their peers, so it needs both. The course's author found this step the hardest: "
        "a missing address or usage shows up much later as 'bad certificate' in some log."),
    tasks=(
        Task("the host or any node", "Make a CA (openssl or cfssl): a key and a self-signed certificate with "
                                     "CA:TRUE. Keep its key off the nodes once the certificates are signed."),
        Task("every node", "Put the CA certificate at the role's TLS folder as ca.crt: /etc/etcd/tls on etcd "
                           "nodes, /etc/patroni/tls on db nodes, /etc/haproxy/tls on HAProxy."),
        Task("etcd nodes", "etcd.crt/etcd.key (serverAuth and clientAuth) and etcdctl.crt/etcdctl.key "
                           "(clientAuth), naming the node and its lab address."),
        Task("db nodes", "postgres.crt (serverAuth; names the node and HAProxy, name and address), restapi.crt "
                         "(serverAuth), etcd-client.crt and patronictl.crt (clientAuth), each with its .key."),
        Task("haproxy", "haproxy-check.pem (clientAuth): certificate and key in one file, for the health checks."),
        Task("every node", "Keys owned by the service user (etcd, postgres, haproxy) and mode 0600."),
    ),
    hints=(
        "`openssl x509 -in FILE -noout -subject -issuer -ext subjectAltName,extendedKeyUsage` shows what a "
        "certificate names and allows; `openssl verify -CAfile ca.crt FILE` whether the CA signed it.",
        "With openssl, names and usages come from an extensions section given at signing time (-extfile with "
        "subjectAltName = DNS:...,IP:... and extendedKeyUsage = serverAuth,clientAuth); a CSR's extensions "
        "are not copied unless you ask (-copy_extensions copy).",
        "The CA is the same file on every node: sign every certificate with one CA key, do not make a CA per node.",
        "chown etcd:etcd (postgres:postgres, haproxy:haproxy) and chmod 600 each key; `ls -l` shows both.",
    ),
    read=read, grade=grade, minutes=45)
