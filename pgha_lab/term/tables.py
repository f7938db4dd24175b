"""Tables a DBA already reads: patronictl's member list, etcdctl's endpoint status, HAProxy's servers."""
from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from pgha_lab.probes import Backend, EtcdEndpoint, Member
from pgha_lab.term.console import console_for

MEMBER_COLUMNS = ["Member", "Host", "Role", "State", "TL", "Receive LSN", "Lag", "Replay LSN", "Lag", "Tags"]
ETCD_COLUMNS = ["Endpoint", "Name", "ID", "Version", "DB Size", "Is Leader", "Raft Term"]
HAPROXY_COLUMNS = ["Backend", "Server", "Status", "Last Check", "Since Change"]
# patronictl right-aligns its numeric columns.
MEMBER_NUMBERS = {"TL", "Lag"}
ROLE_NAMES = {"leader": "Leader", "sync_standby": "Sync Standby", "quorum_standby": "Quorum Standby",
              "replica": "Replica", "standby_leader": "Standby Leader"}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
          right_aligned: Collection[str] = ()) -> str:
    """A bordered table in the style of patronictl's, as plain text: ASCII borders, no row rules,
    the title written into the top border. Columns named in `right_aligned` hold numbers."""
    # Room for "+ title -+", so a title wider than the columns widens the table instead of being cut.
    grid = Table(box=box.ASCII2, header_style="", min_width=len(title) + 5 if title else None)
    for header in headers:
        grid.add_column(Text(header), no_wrap=True, justify="right" if header in right_aligned else "left")
    for row in rows:
        grid.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    out = io.StringIO()
    console_for(out).print(grid)
    text = out.getvalue().rstrip("\n")
    return _titled(text, title) if title else text


def _titled(text: str, title: str) -> str:
    """patronictl's header line: `+ Cluster: NAME ---+----+`, the title over the top border."""
    top, _, rest = text.partition("\n")
    label = f" {title} "[: len(top) - 2]
    return top[0] + label + top[1 + len(label):] + "\n" + rest


def _size(size: int) -> str:
    n = float(size)
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
        rows.append([m.name, m.host, ROLE_NAMES.get(m.role, ""), m.state, m.timeline,
                     m.receive_lsn, _lag(m.receive_lag), m.replay_lsn, _lag(m.replay_lag), tags])
    return table(MEMBER_COLUMNS, rows, title=f"Cluster: {scope}", right_aligned=MEMBER_NUMBERS)


def etcd_table(endpoints: list[EtcdEndpoint]) -> str:
    rows: list[list[Any]] = []
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
