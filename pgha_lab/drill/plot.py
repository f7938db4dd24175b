"""The drill's timeline as a PNG: write latency and errors over time, a role band per db node,
the leader key's holder and HAProxy's 5432 server, with the fault and phase markers."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")   # no display on a lab host or in CI; select before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from pgha_lab.check.history import READ  # noqa: E402
from pgha_lab.drill.sampler import ETCD, HAPROXY, PATRONI, Sample  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pgha_lab.check.history import Operation
    from pgha_lab.drill.campaign import CampaignResult
    from pgha_lab.drill.runner import DrillResult

ROLE_COLOURS = {"primary": "#1b7837", "replica": "#a6dba0", "other": "#fdb863", "silent": "#bdbdbd"}
NODE_PALETTE = ["#2166ac", "#b2182b", "#762a83", "#e08214", "#35978f", "#8c510a", "#c51b7d", "#4d4d4d", "#01665e"]


def _role_class(s: Sample) -> str:
    if not s.answered:
        return "silent"
    if s.says_primary:
        return "primary"
    if s.value in ("replica", "sync_standby") and s.state in ("streaming", "running"):
        return "replica"
    return "other"


def _spans(readings: list[Sample], key, end_s: float) -> list[tuple[float, float, str]]:
    """(start, width, class) per run of equal classes; each reading holds until the next one."""
    out: list[tuple[float, float, str]] = []
    for i, s in enumerate(readings):
        nxt = readings[i + 1].t_s if i + 1 < len(readings) else end_s
        cls = key(s)
        if out and out[-1][2] == cls:
            start, _, _ = out[-1]
            out[-1] = (start, nxt - start, cls)
        else:
            out.append((s.t_s, nxt - s.t_s, cls))
    return out


def node_colours(samples: list[Sample]) -> dict[str, str]:
    """One colour per db node the samples asked, the same in every panel of a figure."""
    db = sorted({s.node for s in samples if s.source == PATRONI})
    return {name: NODE_PALETTE[i % len(NODE_PALETTE)] for i, name in enumerate(db)}


def role_bands(ax, samples: list[Sample], end_s: float, node_colour: dict[str, str]) -> None:
    """One row per db node (its role as it answered), then the leader key's holder and HAProxy's 5432
    server, each reading held until the next, with their legend."""
    db = sorted(node_colour)
    rows = [*db, "leader key", "HAProxy 5432"]
    for y, name in enumerate(rows):
        if name in db:
            readings = sorted((s for s in samples if s.source == PATRONI and s.node == name), key=lambda s: s.t_s)
            for x, w, cls in _spans(readings, _role_class, end_s):
                ax.broken_barh([(x, w)], (y - 0.4, 0.8), color=ROLE_COLOURS[cls])
        else:
            source = ETCD if name == "leader key" else HAPROXY
            readings = sorted((s for s in samples if s.source == source), key=lambda s: s.t_s)

            def holder(s: Sample) -> str:
                if not s.answered:
                    return "?"
                return s.value or "-"
            for x, w, who in _spans(readings, holder, end_s):
                colour = node_colour.get(who, "#bdbdbd" if who == "?" else ("white" if who == "-" else "black"))
                ax.broken_barh([(x, w)], (y - 0.4, 0.8), color=colour, alpha=0.8)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.invert_yaxis()
    legend = [Patch(color=c, label=k) for k, c in ROLE_COLOURS.items()]
    legend += [Patch(color=c, label=f"{n} (key / 5432)") for n, c in node_colour.items()]
    legend += [Patch(facecolor="white", edgecolor="black", label="no key / no server"),
               Patch(color="black", label="two servers UP behind 5432"),
               Patch(color="#bdbdbd", label="no answer")]
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)


def timeline(result: DrillResult, path: Path) -> None:
    attempts, samples = result.attempts, result.samples
    f = result.findings
    end_s = max([a.end_s for a in attempts] + [s.t_s for s in samples] + [1.0])
    node_colour = node_colours(samples)
    db = sorted(node_colour)

    fig, (ax_lat, ax_roles) = plt.subplots(2, 1, figsize=(13, 7), sharex=True,
                                           gridspec_kw={"height_ratios": [3, 2]})
    # -- latency and errors
    for name in db:
        ok = [a for a in attempts if a.ok and a.server == name]
        if ok:
            ax_lat.scatter([a.start_s for a in ok], [max(a.latency_ms, 0.1) for a in ok], s=6,
                           color=node_colour[name], label=f"ack by {name}")
    others = [a for a in attempts if a.ok and a.server not in node_colour]
    if others:
        ax_lat.scatter([a.start_s for a in others], [max(a.latency_ms, 0.1) for a in others], s=6, color="black",
                       label="ack by another server")
    warned = [a for a in attempts if a.ok and a.notice]
    if warned:
        ax_lat.scatter([a.start_s for a in warned], [max(a.latency_ms, 0.1) for a in warned], s=40,
                       facecolors="none", edgecolors="orange", label="ack with a notice")
    failed = [a for a in attempts if not a.ok]
    if failed:
        ax_lat.scatter([a.start_s for a in failed], [max(a.latency_ms, 0.1) for a in failed], s=12, marker="x",
                       color="red", label="failed attempt")
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("write latency (ms, log)")
    if f is not None and f.downtime is not None:
        ax_lat.axvspan(f.downtime.start_s, f.downtime.end_s, color="red", alpha=0.08,
                       label=f"downtime {f.downtime.seconds:.2f}s")
    for o in (f.split_brain if f else []):
        ax_lat.axvspan(o.start_s, max(o.end_s, o.start_s + 0.05), color="purple", alpha=0.3)
    ax_lat.set_title(f"drill {result.scenario.name} ({result.profile.name} profile) — {result.fault.done}", fontsize=9)

    role_bands(ax_roles, samples, end_s, node_colour)
    ax_roles.set_xlabel("seconds since the drill started")

    # -- markers
    markers = [(result.fault_s, "fault", "red")]
    if f is not None:
        ph = f.phases
        for value, label, colour in ((ph.leader_key_gone, "key gone", "#b35806"),
                                     (ph.new_leader, "new leader", "#542788"),
                                     (ph.haproxy_switched, "HAProxy switched", "#2166ac"),
                                     (ph.first_write, "first write", "#1b7837")):
            if value is not None:
                markers.append((result.fault_s + value, label, colour))
    markers += [(e.t_s, e.label, "grey") for e in result.events if e.label in ("healed", "healthy")]
    for i, (x, label, colour) in enumerate(sorted(markers)):
        for ax in (ax_lat, ax_roles):
            ax.axvline(x, color=colour, linestyle="--", linewidth=0.8)
        # Phases often land within a second of each other: stagger the labels so they stay legible.
        ax_lat.annotate(label, (x, 1 - 0.22 * (i % 3)), xycoords=("data", "axes fraction"), rotation=90,
                        fontsize=7, va="top", ha="right", color=colour)
    ax_lat.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def campaign_timeline(result: CampaignResult, ops: Sequence[Operation], path: Path) -> None:
    """One bar per fault (injection to heal), the drill's role bands (each db node, the leader key,
    HAProxy's 5432), then the acknowledged and failed writes per second."""
    end = max([result.duration_s, *(op.end for op in ops)])
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(13, 8), sharex=True,
                                              gridspec_kw={"height_ratios": [2, 1.5, 1]})
    shown = [(r, r.injected_s) for r in result.records if not r.skipped and r.injected_s is not None]
    for i, (r, injected_s) in enumerate(shown):
        stop = r.healed_s if r.healed_s is not None else injected_s + 1.5
        colour = "#1b7837" if r.happened else "#b2182b" if r.happened is False else "#969696"
        top.broken_barh([(injected_s, max(0.5, stop - injected_s))], (i - 0.4, 0.8), color=colour)
        top.text(injected_s, i, f" {r.step.fault} {r.target}", va="center", fontsize=8)
    top.set_yticks([])
    top.set_title(f"campaign seed {result.seed}: faults (green: expected outcome seen, red: not seen)", fontsize=9)
    role_bands(middle, result.samples, end, node_colours(result.samples))
    buckets = int(end) + 1
    ok = [0] * buckets
    bad = [0] * buckets
    for op in ops:
        if op.op == READ:
            continue
        (ok if op.ok else bad)[min(buckets - 1, int(op.start))] += 1
    bottom.bar(range(buckets), ok, width=1.0, color="#2166ac", label="acknowledged writes/s")
    bottom.bar(range(buckets), bad, width=1.0, bottom=ok, color="#fdb863", label="failed or unknown/s")
    bottom.set_xlabel("seconds since the campaign started")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
