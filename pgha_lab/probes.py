"""Typed views of a running lab, read over the network the way a DBA's tools read it:
etcd's API (gRPC gateway, client certificate), Patroni's REST API (TLS, client certificate),
HAProxy's stats page (CSV) and SQL through HAProxy.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import requests

from pgha_lab.errors import LabError
from pgha_lab.topology import Node, Topology

TIMEOUT = 2.0


@dataclass(frozen=True)
class ClientTLS:
    """Host-side files a probe presents: the lab CA and a client certificate."""
    ca: str
    cert: str
    key: str


@dataclass
class EtcdEndpoint:
    name: str
    endpoint: str
    id: str = ""
    version: str = ""
    db_size: int = 0
    is_leader: bool = False
    raft_term: int = 0
    raft_index: int = 0
    error: str = ""


class MemberRole(str, Enum):
    """Patroni's member roles as GET /cluster names them; a str, so JSON and tables read the same."""
    LEADER = "leader"
    STANDBY_LEADER = "standby_leader"
    SYNC_STANDBY = "sync_standby"
    QUORUM_STANDBY = "quorum_standby"
    REPLICA = "replica"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: str) -> MemberRole:
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN

    @property
    def is_replica(self) -> bool:
        return self in (MemberRole.SYNC_STANDBY, MemberRole.QUORUM_STANDBY, MemberRole.REPLICA)

    def __str__(self) -> str:
        return self.value


@dataclass
class Member:
    name: str
    host: str
    role: MemberRole
    state: str
    timeline: int | None = None
    receive_lsn: str = ""
    receive_lag: Any = None
    replay_lsn: str = ""
    replay_lag: Any = None
    lag: Any = None
    tags: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.role, MemberRole):
            self.role = MemberRole.parse(self.role)

    @property
    def lag_bytes(self) -> int | None:
        """Bytes behind the leader; None when Patroni says "unknown" (or reports no lag)."""
        return parse_lag(self.lag if self.lag is not None else self.receive_lag)

    @property
    def nofailover(self) -> bool:
        return bool((self.tags or {}).get("nofailover", False))

    @property
    def failover_priority(self) -> int | None:
        priority = (self.tags or {}).get("failover_priority")
        return int(priority) if isinstance(priority, (int, str)) and str(priority).isdigit() else None

    @property
    def may_promote(self) -> bool:
        """What the member's own tags allow: nofailover, or failover_priority 0, forbid it."""
        return not self.nofailover and self.failover_priority != 0


def parse_lag(value: Any) -> int | None:
    """A lag figure of Patroni's in bytes; None for "unknown" and anything not a byte count."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


@dataclass(frozen=True)
class Cluster:
    """One reading of Patroni's members, with the questions every caller asks of it."""
    members: tuple[Member, ...]

    @classmethod
    def of(cls, members: list[Member] | tuple[Member, ...]) -> Cluster:
        return cls(tuple(members))

    def __bool__(self) -> bool:
        return bool(self.members)

    def __iter__(self):
        return iter(self.members)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)

    @property
    def leader(self) -> Member | None:
        """The one leader; None when there is none, or (split brain) more than one."""
        leaders = [m for m in self.members if m.role is MemberRole.LEADER]
        return leaders[0] if len(leaders) == 1 else None

    @property
    def leader_name(self) -> str | None:
        return self.leader.name if self.leader else None

    @property
    def replicas(self) -> list[Member]:
        """Every member that is not the leader, synchronous standbys first, then by name."""
        rest = [m for m in self.members if m.role is not MemberRole.LEADER]
        return sorted(rest, key=lambda m: (m.role not in (MemberRole.SYNC_STANDBY, MemberRole.QUORUM_STANDBY), m.name))

    @property
    def sync_standbys(self) -> list[Member]:
        """Standbys a commit may wait for: synchronous ones, or quorum ones (synchronous_mode: quorum)."""
        return [m for m in self.members if m.role in (MemberRole.SYNC_STANDBY, MemberRole.QUORUM_STANDBY)]

    def role_of(self, name: str) -> MemberRole:
        m = self.member(name)
        return m.role if m else MemberRole.UNKNOWN

    @property
    def timeline(self) -> int | None:
        return self.leader.timeline if self.leader else None


@dataclass
class Backend:
    backend: str
    server: str
    status: str
    check_status: str = ""
    last_check: str = ""
    since_change_s: int | None = None


def _hex_id(value: Any) -> str:
    return format(int(value), "x") if value not in (None, "") else ""


class LabProbe:
    """Reads the state of one lab; every call is a fresh network read, nothing is cached."""

    def __init__(self, topo: Topology, etcd_tls: ClientTLS, patroni_tls: ClientTLS) -> None:
        self.topo = topo
        self.etcd_tls = etcd_tls
        self.patroni_tls = patroni_tls
        self.http = requests.Session()
        self.http.trust_env = False   # lab traffic never goes through a proxy

    # -- etcd -----------------------------------------------------------------------------
    def etcd_url(self, node: Node) -> str:
        return f"https://{node.address}:{self.topo.ports.etcd_client}"

    def etcd_status(self, node: Node) -> EtcdEndpoint:
        ep = EtcdEndpoint(name=node.name, endpoint=self.etcd_url(node))
        try:
            r = self.http.post(f"{ep.endpoint}/v3/maintenance/status", json={}, timeout=TIMEOUT,
                               cert=(self.etcd_tls.cert, self.etcd_tls.key), verify=self.etcd_tls.ca)
            r.raise_for_status()
            doc = r.json()
        except (requests.RequestException, ValueError) as exc:
            ep.error = _short_error(exc)
            return ep
        header = doc.get("header", {})
        ep.id = _hex_id(header.get("member_id"))
        ep.version = doc.get("version", "")
        ep.db_size = int(doc.get("dbSize", 0))
        ep.is_leader = ep.id != "" and _hex_id(doc.get("leader")) == ep.id
        ep.raft_term = int(doc.get("raftTerm", header.get("raft_term", 0)))
        ep.raft_index = int(doc.get("raftIndex", 0))
        return ep

    def etcd(self) -> list[EtcdEndpoint]:
        return [self.etcd_status(n) for n in self.topo.etcd]

    def etcd_read(self, key: str, timeout: float = TIMEOUT) -> tuple[bool, str | None]:
        """(some member answered, value): tells an absent key from an etcd that cannot be read."""
        import base64
        r = self._etcd_kv("range", key, timeout)
        if r is None:
            return False, None
        kvs = r.json().get("kvs") or []
        return True, (base64.b64decode(kvs[0]["value"]).decode() if kvs else None)

    def etcd_delete(self, key: str, timeout: float = TIMEOUT) -> bool:
        """Delete one key (what `etcdctl del` does); False when no member could be asked."""
        return self._etcd_kv("deleterange", key, timeout) is not None

    def etcd_keys(self, timeout: float = TIMEOUT) -> list[str] | None:
        """Every key etcd holds (what `etcdctl get "" --prefix --keys-only` lists); None when no member answers."""
        import base64
        r = self._etcd_kv("range", "\0", timeout, range_end="\0", keys_only=True)
        if r is None:
            return None
        return sorted(base64.b64decode(kv["key"]).decode() for kv in r.json().get("kvs") or [])

    def _etcd_kv(self, call: str, key: str, timeout: float, range_end: str | None = None,
                 keys_only: bool = False) -> requests.Response | None:
        """One call of etcd's v3 KV gateway on one key (or range), asked of each member in turn until one answers."""
        import base64
        payload: dict[str, Any] = {"key": base64.b64encode(key.encode()).decode()}
        if range_end is not None:
            payload["range_end"] = base64.b64encode(range_end.encode()).decode()
        if keys_only:
            payload["keys_only"] = True
        for node in self.topo.etcd:
            try:
                r = self.http.post(f"{self.etcd_url(node)}/v3/kv/{call}", json=payload, timeout=timeout,
                                   cert=(self.etcd_tls.cert, self.etcd_tls.key), verify=self.etcd_tls.ca)
                r.raise_for_status()
            except requests.RequestException:
                continue
            return r
        return None

    def member_key_path(self, name: str) -> str:
        return f"/service/{self.topo.scope}/members/{name}"

    @property
    def leader_key_path(self) -> str:
        return f"/service/{self.topo.scope}/leader"

    # -- Patroni --------------------------------------------------------------------------
    def rest_url(self, node: Node, path: str) -> str:
        return f"https://{node.address}:{self.topo.ports.restapi}{path}"

    def rest(self, node: Node, path: str, timeout: float = TIMEOUT) -> tuple[int, dict[str, Any]]:
        """(status code, JSON body) of a GET; status 0 when the node does not answer."""
        try:
            r = self.http.get(self.rest_url(node, path), timeout=timeout,
                              cert=(self.patroni_tls.cert, self.patroni_tls.key), verify=self.patroni_tls.ca)
        except requests.RequestException:
            return 0, {}
        try:
            body = r.json()
        except ValueError:
            body = {}
        return r.status_code, body

    def rest_change(self, node: Node, method: str, path: str, body: dict[str, Any], auth: tuple[str, str],
                    timeout: float) -> requests.Response:
        """An authenticated POST or PATCH to Patroni's REST API; LabError when the node does not answer."""
        try:
            return self.http.request(method, self.rest_url(node, path), json=body, auth=auth, timeout=timeout,
                                     cert=(self.patroni_tls.cert, self.patroni_tls.key), verify=self.patroni_tls.ca)
        except requests.RequestException as exc:
            raise LabError(f"Patroni on {node.name} did not answer {method} {path}: {_short_error(exc)}.") from None

    def members(self) -> list[Member]:
        """Patroni's own view of the cluster (GET /cluster), from the first db node that answers."""
        for node in self.topo.db:
            code, doc = self.rest(node, "/cluster")
            if code == 200 and "members" in doc:
                return [_member(m) for m in doc["members"]]
        return []

    def cluster(self) -> Cluster:
        return Cluster.of(self.members())

    # -- HAProxy --------------------------------------------------------------------------
    def haproxy(self, timeout: float = TIMEOUT, node: Node | None = None) -> list[Backend]:
        """Server rows of HAProxy's stats CSV (frontends and backend summaries left out), read where
        clients connect (the VIP's holder in a two-HAProxy lab) unless a node is named."""
        address = node.address if node is not None else self.topo.entry_address
        url = f"http://{address}:{self.topo.ports.haproxy_stats}/;csv"
        try:
            r = self.http.get(url, timeout=timeout)
            r.raise_for_status()
        except requests.RequestException:
            return []
        return parse_haproxy_csv(r.text)


def _member(m: dict[str, Any]) -> Member:
    return Member(name=m.get("name", ""), host=str(m.get("host", "")), role=MemberRole.parse(m.get("role", "")),
                  state=m.get("state", ""), timeline=m.get("timeline"),
                  receive_lsn=str(m.get("receive_lsn", "")), receive_lag=m.get("receive_lag"),
                  replay_lsn=str(m.get("replay_lsn", "")), replay_lag=m.get("replay_lag"),
                  lag=m.get("lag"), tags=m.get("tags") or {})


def cluster_from(doc: dict[str, Any]) -> Cluster:
    """A Cluster from the body of one node's GET /cluster (for callers that ask several nodes at once)."""
    return Cluster.of([_member(m) for m in doc.get("members", [])])


def freshest(answers: dict[str, tuple[int, dict[str, Any]]]) -> Cluster | None:
    """One Cluster from several members' GET /cluster answers (name -> (code, body)), None when none
    answered. Each member answers from its own copy of etcd's state, refreshed on its own loop, so
    right after a role change they disagree for up to loop_wait: a member that calls itself the
    leader has the freshest view (it just took the key); otherwise any answer will do."""
    readings = {name: cluster_from(doc) for name, (code, doc) in answers.items() if code == 200 and "members" in doc}
    self_led = [r for name, r in readings.items() if r.leader_name == name]
    return next(iter(self_led or readings.values()), None)


def parse_haproxy_csv(text: str) -> list[Backend]:
    text = text.lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    out = []
    for row in rows:
        if row.get("svname") in ("FRONTEND", "BACKEND", None):
            continue
        lastchg = row.get("lastchg") or ""
        out.append(Backend(backend=row["pxname"], server=row["svname"], status=row.get("status", ""),
                           check_status=row.get("check_status", ""),
                           last_check=(row.get("last_chk") or "").strip(),
                           since_change_s=int(lastchg) if lastchg.isdigit() else None))
    return out


def _short_error(exc: Exception) -> str:
    text = str(exc)
    if "CERTIFICATE" in text.upper() or "SSL" in text.upper():
        return "TLS error"
    if isinstance(exc, requests.Timeout):
        return "timeout"
    if isinstance(exc, requests.ConnectionError):
        return "unreachable"
    return text[:80]
