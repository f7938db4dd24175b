"""`status` on a bare lab: what each node runs (systemd, its service, whether it is configured) and,
for each part of the cluster that runs, the tables the ready lab's status shows. A part nobody has
built yet is "not configured yet", not an error: etcd, Patroni and HAProxy are only asked over the
network once their unit is active somewhere."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pgha_lab.bare import survey
from pgha_lab.context import LabContext
from pgha_lab.term.tables import etcd_table, haproxy_table, members_table, table
from pgha_lab.topology import Role

NODE_COLUMNS = ["Node", "Container", "systemd", "Service", "Enabled", "Active", "Configuration"]


def snapshot(ctx: LabContext) -> dict[str, Any]:
    readings = survey.read(ctx)
    topo = ctx.topology
    active = {role: any(r.active == "active" for r in readings if topo.node(r.node).role is role) for role in Role}
    # ctx.probe (it needs the lab's certificates) is built only when a role it reads is active.
    return {
        "nodes": readings,
        "etcd": ctx.probe.etcd() if active[Role.ETCD] else None,
        "members": ctx.probe.members() if active[Role.DB] else None,
        "haproxy": ctx.probe.haproxy() if active[Role.HAPROXY] else None,
    }


def as_dict(snap: dict[str, Any]) -> dict[str, Any]:
    def rows(items):
        return None if items is None else [asdict(x) for x in items]
    return {"bare": True, "nodes": rows(snap["nodes"]), "etcd": rows(snap["etcd"]), "members": rows(snap["members"]),
            "haproxy": rows(snap["haproxy"])}


def _configuration(r: survey.NodeReading) -> str:
    if r.container != "running":
        return ""
    return "configured" if r.configured else f"{survey.NOT_CONFIGURED} ({r.missing})"


def _not_running(snap: dict[str, Any], ctx: LabContext, role: Role, part: str) -> str:
    mine = [r for r in snap["nodes"] if ctx.topology.node(r.node).role is role]
    names = ", ".join(r.node for r in mine)
    if not any(r.configured for r in mine):
        return f"{part}: {survey.NOT_CONFIGURED} on {names} ({mine[0].missing})."
    return f"{part}: {survey.UNITS[role]} is not active on any of {names}."


def render_text(ctx: LabContext, snap: dict[str, Any]) -> str:
    topo = ctx.topology
    rows = [[r.node, r.container, r.system if r.container == "running" else "", r.unit, r.enabled,
             r.active if r.container == "running" else "", _configuration(r)] for r in snap["nodes"]]
    parts = [table(NODE_COLUMNS, rows, title=f"Bare lab: {topo.project}")]
    failed = [f"{r.node}: {', '.join(r.failed_units)}" for r in snap["nodes"] if r.failed_units]
    if failed:
        parts.append("Failed units (`systemctl --failed` on the node): " + "; ".join(failed) + ".")
    parts.append(etcd_table(snap["etcd"]) if snap["etcd"] is not None else _not_running(snap, ctx, Role.ETCD, "etcd"))
    parts.append(members_table(snap["members"], topo.scope) if snap["members"]
                 else _not_running(snap, ctx, Role.DB, "Patroni") if snap["members"] is None
                 else "Patroni: patroni.service runs, but no db node answers its REST API yet.")
    parts.append(haproxy_table(snap["haproxy"]) if snap["haproxy"]
                 else _not_running(snap, ctx, Role.HAPROXY, "HAProxy") if snap["haproxy"] is None
                 else "HAProxy: haproxy.service runs, but its stats page does not answer yet.")
    return "\n\n".join(parts)
