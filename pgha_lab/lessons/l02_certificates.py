"""Lesson 2: the lab's certificates: one CA signs every one, each channel presents its own, the
PostgreSQL certificate names HAProxy, and verify-full fails loudly with a wrong CA or host name."""
from __future__ import annotations

from cryptography import x509

from pgha_lab import tls
from pgha_lab.context import LabContext
from pgha_lab.lessons import observe, sql
from pgha_lab.lessons.model import Lesson, State, Task, TaskResult

ID = 2
WRONG_CA = "certificate verify failed"
WRONG_HOST = "does not match host name"
# Where each answer can be read: a wrong one is told where to look again, never the value.
WHERE = {
    "ca_subject": "`openssl x509 -in /etc/patroni/tls/ca.crt -noout -subject` inside dbnode1, after CN =",
    "etcd_client_cn": "the subject of /etc/patroni/tls/etcd-client.crt on dbnode1, after CN =",
    "haproxy_check_cn": "the subject of /etc/haproxy/tls/haproxy-check.pem on haproxy, after CN =",
    "postgres_san_haproxy_ip": "`openssl x509 -in /etc/patroni/tls/postgres.crt -noout -ext subjectAltName` on "
                               "dbnode1: the IP address that is HAProxy's",
    "wrong_ca_error": "a verify-full connection with the operating system's CAs (sslrootcert=system)",
    "wrong_host_error": "a connection with the lab CA to a host name the certificate does not carry "
                        "(host=wrong.example hostaddr=HAPROXY_IP)",
}
PSQL_AS_LEARNER = 'PGPASSWORD="$PATRONI_SUPERUSER_PASSWORD" psql "$1" -c "select 1"'


def start(ctx: LabContext) -> State:
    sql.prepare_answers(ctx, ID)
    return {}


def _cert(ctx: LabContext, stem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((ctx.paths.certs / f"{stem}.crt").read_bytes())


def _cn(cert: x509.Certificate) -> str:
    return tls.common_name(cert)


def truth(ctx: LabContext) -> dict[str, str]:
    db, hp = ctx.topology.db[0], ctx.topology.haproxy
    ca = x509.load_pem_x509_certificate(ctx.ca_file.read_bytes())
    pg = _cert(ctx, f"{db.name}-postgres")
    ips = [str(i) for i in pg.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
           .get_values_for_type(x509.IPAddress)]
    return {"ca_subject": _cn(ca), "etcd_client_cn": _cn(_cert(ctx, f"{db.name}-etcd-client")),
            "haproxy_check_cn": _cn(_cert(ctx, f"{hp.name}-check")),
            "postgres_san_haproxy_ip": str(hp.address) if str(hp.address) in ips else "(not in the certificate)"}


def check(ctx: LabContext, state: State) -> list[TaskResult]:
    def observe_all() -> list[TaskResult]:
        given, live = sql.answers(ctx, ID), truth(ctx)

        def exact(key: str, questions: tuple[str, ...]) -> TaskResult:
            missing = [q for q in questions if q not in given]
            if missing:
                return TaskResult(key, False, f"no answer recorded for {', '.join(missing)}")
            wrong = [f"{q} {given[q]!r} is not what the certificate says (look again: {WHERE[q]})"
                     for q in questions if given[q] != live[q]]
            return TaskResult(key, not wrong, "; ".join(wrong) or ", ".join(f"{q} = {given[q]}" for q in questions))

        def error(key: str, question: str, phrase: str, other: str, other_case: str) -> TaskResult:
            if question not in given:
                return TaskResult(key, False, f"no answer recorded for {question}")
            if other in given[question]:
                return TaskResult(key, False, f"{question} holds the error of {other_case}; this task asks for "
                                              f"{WHERE[question]}")
            if phrase not in given[question]:
                return TaskResult(key, False, f"{question} is not the error psql prints for {WHERE[question]}: run "
                                              "that connection and record the line psql prints")
            return TaskResult(key, True, f"{question}: {given[question][:120]}")

        return [exact("ca", ("ca_subject",)),
                exact("channels", ("etcd_client_cn", "haproxy_check_cn")),
                exact("sans", ("postgres_san_haproxy_ip",)),
                error("wrong_ca", "wrong_ca_error", WRONG_CA, WRONG_HOST, "a host name the certificate does not carry"),
                error("wrong_host", "wrong_host_error", WRONG_HOST, WRONG_CA, "a CA that did not sign the certificate")]
    try:
        return observe_all()
    except observe.READ_ERRORS as exc:
        return [TaskResult(t.key, False, observe.unreadable(exc)) for t in LESSON.tasks]


def _psql_error(ctx: LabContext, conninfo: str) -> str:
    """psql inside dbnode1, as the learner runs it; its error line."""
    proc = ctx.docker.exec(observe.first_db(ctx), "sh", "-c", PSQL_AS_LEARNER, "psql", conninfo,
                           user="postgres", check=False)
    return (proc.stderr.strip().splitlines() or [""])[-1]


def solve(ctx: LabContext, state: State) -> None:
    hp, port = ctx.topology.haproxy.address, ctx.topology.ports.haproxy_primary
    base = f"port={port} dbname=postgres user=postgres sslmode=verify-full"
    found = truth(ctx)
    found["wrong_ca_error"] = _psql_error(ctx, f"host={hp} {base} sslrootcert=system")
    found["wrong_host_error"] = _psql_error(ctx, f"host=wrong.example hostaddr={hp} {base} "
                                                 "sslrootcert=/etc/patroni/tls/ca.crt")
    sql.record_answers(ctx, ID, found)


LESSON = Lesson(
    id=ID, slug="certificates", title="Certificates: who signs, who presents",
    goal=("Find the one CA behind every certificate in the lab and the certificate each channel presents. See why "
          "the PostgreSQL certificate must name HAProxy, and what verify-full says when the CA or the host name "
          "is wrong."),
    background=(
        "The course found certificates the hardest part, because every channel has two ends and both check. "
        "One lab CA (certs/<project>/ca.crt on the host, /etc/*/tls/ca.crt on the nodes) signs everything. "
        "etcd presents a server certificate to clients and to its peers, and demands one back; Patroni presents "
        "etcd-client.crt (CN patroni@dbnodeN) to etcd and restapi.crt on its REST API, which itself demands a "
        "client certificate (verify_client: required): patronictl's, HAProxy's check certificate "
        "(haproxy-check.pem) or the host's. PostgreSQL presents postgres.crt to every client. HAProxy passes "
        "5432 through as plain TCP, so a client that dials HAProxy meets the PostgreSQL certificate of whichever "
        "node leads: for sslmode=verify-full to pass, that certificate must name HAProxy's address and name too. "
        "verify-full checks two things: the chain ends at the CA you gave (sslrootcert), and the certificate "
        "names the host you dialled."),
    tasks=(
        Task("ca", "Inside dbnode1, `openssl x509 -in /etc/patroni/tls/ca.crt -noout -subject`; record the CA's "
                   "common name (after CN = ) as ca_subject."),
        Task("channels", "Record the common name of the certificate Patroni presents to etcd "
                         "(/etc/patroni/tls/etcd-client.crt on dbnode1) as etcd_client_cn, and of the one HAProxy's "
                         "health checks present to the REST API (/etc/haproxy/tls/haproxy-check.pem on haproxy) as "
                         "haproxy_check_cn."),
        Task("sans", "List the subject alternative names of dbnode1's PostgreSQL certificate "
                     "(/etc/patroni/tls/postgres.crt, `-ext subjectAltName`); record the HAProxy address you find "
                     "there as postgres_san_haproxy_ip."),
        Task("wrong_ca", "Connect through HAProxy with verify-full but the operating system's CAs "
                         "(sslrootcert=system) and record psql's error line as wrong_ca_error."),
        Task("wrong_host", "Connect with the lab CA but a host name the certificate does not carry "
                           "(host=wrong.example hostaddr=HAPROXY_IP) and record psql's error line as "
                           "wrong_host_error."),
    ),
    hints=(
        "`pgha-lab exec dbnode1 -- openssl x509 -in /etc/patroni/tls/etcd-client.crt -noout -subject -issuer "
        "-ext subjectAltName` prints all three at once.",
        "Record answers with `pgha-lab psql -- -c \"insert into lesson_answers values (2, 'ca_subject', "
        "'...')\"`; dollar quoting ($$...$$) saves you from escaping quotes in an error message.",
        "Run the failing connections inside dbnode1 (it has psql): `pgha-lab exec dbnode1 -- sh -c "
        "'PGPASSWORD=$PATRONI_SUPERUSER_PASSWORD psql \"host=HAPROXY_IP port=5432 user=postgres dbname=postgres "
        "sslmode=verify-full sslrootcert=system\"'`.",
    ),
    solution=(
        "pgha-lab exec dbnode1 -- openssl x509 -in /etc/patroni/tls/ca.crt -noout -subject\n"
        "pgha-lab exec dbnode1 -- openssl x509 -in /etc/patroni/tls/etcd-client.crt -noout -subject\n"
        "pgha-lab exec haproxy -- openssl x509 -in /etc/haproxy/tls/haproxy-check.pem -noout -subject\n"
        "pgha-lab exec dbnode1 -- openssl x509 -in /etc/patroni/tls/postgres.crt -noout -ext subjectAltName\n"
        "pgha-lab exec dbnode1 -- sh -c 'PGPASSWORD=$PATRONI_SUPERUSER_PASSWORD psql \"host=HAPROXY_IP port=5432 "
        "dbname=postgres user=postgres sslmode=verify-full sslrootcert=system\"'\n"
        "pgha-lab exec dbnode1 -- sh -c 'PGPASSWORD=$PATRONI_SUPERUSER_PASSWORD psql \"host=wrong.example "
        "hostaddr=HAPROXY_IP port=5432 dbname=postgres user=postgres sslmode=verify-full "
        "sslrootcert=/etc/patroni/tls/ca.crt\"'\n"
        "pgha-lab psql -- -c \"insert into lesson_answers values (2, 'ca_subject', '...'), ...\""),
    start=start, check=check, solve=solve, minutes=25)
