"""Tables a DBA already reads: patronictl's member list, etcdctl's endpoint status, HAProxy's servers."""
from __future__ import annotations

from typing import Any, Sequence

from pgha_lab.probes import Backend, EtcdEndpoint, Member

MEMBER_COLUMNS = ["Member", "Host", "Role", "State", "TL", "Receive LSN", "Lag", "Replay LSN", "Lag", "Tags"]
ETCD_COLUMNS = ["Endpoint", "Name", "ID", "Version", "DB Size", "Is Leader", "Raft Term"]
HAPROXY_COLUMNS = ["Backend", "Server", "Status", "Last Check", "Since Change"]
ROLE_NAMES = {"leader": "Leader", "sync_standby": "Sync Standby", "quorum_standby": "Quorum Standby",
              "replica": "Replica", "standby_leader": "Standby Leader"}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> str:
    """A bordered table in the style of patronictl's."""
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    out = []
    if title:
        inner = len(rule) - 2
        out.append("+" + f" {title} ".center(inner, "-") + "+")
    else:
        out.append(rule)
    out += [line(headers), rule, *(line(r) for r in cells), rule]
    return "\n".join(out)


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            break
        n /= 1024
    return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"


def _lag(value: Any) -> str:
    if value in (None, ""):
        return ""
    if isinstance(value, (int, float)):
        return str(int(value // (1024 * 1024)))   # MB, as patronictl shows it
    return str(value)


def _tag(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)   # YAML spelling, as patronictl


def members_table(members: list[Member], scope: str) -> str:
    rows = []
    for m in members:
        tags = ", ".join(f"{k}: {_tag(v)}" for k, v in sorted(m.tags.items()))
        rows.append([m.name, m.host, ROLE_NAMES.get(m.role, m.role), m.state, m.timeline,
                     m.receive_lsn, _lag(m.receive_lag), m.replay_lsn, _lag(m.replay_lag), tags])
    return table(MEMBER_COLUMNS, rows, title=f"Cluster: {scope}")


def etcd_table(endpoints: list[EtcdEndpoint]) -> str:
    rows = []
    for e in endpoints:
        if e.error:
            rows.append([e.endpoint, e.name, "", "", "", e.error, ""])
        else:
            rows.append([e.endpoint, e.name, e.id, e.version, _size(e.db_size),
                         "true" if e.is_leader else "false", e.raft_term])
    return table(ETCD_COLUMNS, rows, title="etcd")


def haproxy_table(backends: list[Backend]) -> str:
    rows = [[b.backend, b.server, b.status, b.check_status + (f" {b.last_check}" if b.last_check else ""),
             "" if b.since_change_s is None else f"{b.since_change_s}s"] for b in backends]
    return table(HAPROXY_COLUMNS, rows, title="HAProxy")
