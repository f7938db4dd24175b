#!/usr/bin/env python3
"""The dashboard's figures, as a table: Patroni's role change (read from its REST API) to the page
showing it, over N failovers; page load to first full render; the server's CPU with the page open
and idle.

Runs `pgha-lab dashboard` as its own process (its CPU is read from /proc) against a lab of its own
(project pgha-lab-bench-web, fast profile, nothing published) or an existing one (--project), and
drives a real headless Chromium (Debian's /usr/bin/chromium) with Playwright.
usage: python bench/dashboard.py [--project NAME] [--failovers 5] [--loads 5] [--idle 30] [--keep]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pgha_lab import roles  # noqa: E402
from pgha_lab.context import LabContext  # noqa: E402
from pgha_lab.wait import wait_until  # noqa: E402

PROJECT = "pgha-lab-bench-web"
SUBNET = "10.56.71.0/24"
CHROMIUM = "/usr/bin/chromium"
TICKS = os.sysconf("SC_CLK_TCK")


def cli(project: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", project, *args],
                          check=True, **kw)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime + stime + the reaped children's (the docker CLI runs it starts for each reading)
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / TICKS


class RestWatch:
    """Polls the candidate's GET /cluster every ~20 ms (the REST call the page's reading uses too) and
    notes the wall time Patroni first lists the candidate as the leader."""

    def __init__(self, ctx: LabContext, name: str) -> None:
        self.ctx, self.node = ctx, ctx.topology.node(name)
        self.at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.at is None:
            code, doc = self.ctx.probe.rest(self.node, "/cluster", timeout=1.0)
            members = doc.get("members", []) if code == 200 else []
            leaders = [m.get("name") for m in members if m.get("role") == "leader"]
            if leaders == [self.node.name]:
                self.at = time.time()
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", help="bench this existing, healthy lab instead of a lab of its own")
    ap.add_argument("--failovers", type=int, default=5)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement")
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--keep", action="store_true", help="leave the bench's own lab running")
    args = ap.parse_args()
    project = args.project or PROJECT
    if not args.project:
        cli(project, "up", "--profile", "fast", "--subnet", SUBNET, "--publish-ports", "off", stdout=subprocess.DEVNULL)
    ctx = LabContext.open(REPO, project)
    server = subprocess.Popen([sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", project,
                               "dashboard", "--port", str(args.port)], stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip().rsplit(" ", 1)[-1]   # "Dashboard of lab '...': URL"
        rows = run(ctx, server.pid, url, args)
    finally:
        server.terminate()
        server.wait(30)
        if not args.project and not args.keep:
            cli(project, "down", "--volumes", stdout=subprocess.DEVNULL)
    print(f"\npgha-lab dashboard on lab {project!r} ({ctx.profile.name} profile), tick 0.5 s, {os.cpu_count()} CPUs, "
          f"load average at the end {os.getloadavg()[0]:.0f}")
    print(f"{'figure':46} {'median':>9} {'max':>9} {'target':>8}")
    for name, values, target in rows:
        med, top = statistics.median(values), max(values)
        print(f"{name:46} {med:9.3f} {top:9.3f} {target:>8}")
    return 0


def run(ctx: LabContext, pid: int, url: str, args) -> list[tuple[str, list[float], str]]:
    from playwright.sync_api import sync_playwright
    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})

        loads = []
        for _ in range(args.loads):
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            loads.append(page.evaluate("performance.getEntriesByName('pgha-first-render')[0].startTime") / 1000)
        rows.append(("page load -> first full render (s)", loads, "<= 1 s"))

        # Idle: the page open and streaming, nothing running on it.
        page.wait_for_timeout(3000)
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(args.idle)
        idle = (cpu_seconds(pid) - c0) / (time.monotonic() - t0) * 100
        rows.append((f"server CPU, page open and idle, {args.idle:.0f} s (% of a core)", [idle], "report"))

        # Role changes: the page's map notes when its leader changes, on the browser's wall clock.
        page.evaluate("""() => { window.__leaderSeen = {};
            new MutationObserver(() => { const l = document.querySelector('#map').dataset.leader;
                if (l && !(l in window.__leaderSeen))
                    window.__leaderSeen[l] = [Date.now(), page.view.at * 1000, page.view.read_s * 1000]; })
              .observe(document.querySelector('#map'), { attributes: true, attributeFilter: ['data-leader'] }); }""")
        delays = []
        for k in range(args.failovers):
            if not wait_until(ctx.health, 300).ok:
                raise SystemExit("the lab did not return to health between failovers")
            cluster = ctx.cluster()
            target = cluster.sync_standbys[0].name
            page.evaluate("() => { window.__leaderSeen = {}; }")
            watch = RestWatch(ctx, target)
            roles.request_change(ctx, "failover", target)
            page.wait_for_function(f"() => window.__leaderSeen['{target}'] !== undefined", timeout=120_000)
            seen_ms, read_ms, reading_ms = page.evaluate(f"() => window.__leaderSeen['{target}']")
            wait_until(lambda watch=watch: watch.at is not None, 30)
            watch.stop()
            delay = seen_ms / 1000 - watch.at
            delays.append(delay)
            # The split: until the server's reading that saw it began, then reading + push + render.
            print(f"failover {k + 1}: {cluster.leader_name} -> {target}: REST lists it as leader, the page shows it "
                  f"{delay:+.3f} s later (reading began {read_ms / 1000 - watch.at:+.3f} s, "
                  f"took {reading_ms / 1000:.3f} s, then {(seen_ms - read_ms - reading_ms) / 1000:.3f} s to the page; "
                  f"load average {os.getloadavg()[0]:.0f})", file=sys.stderr)
        rows.append((f"role change (REST) -> page shows it, {args.failovers} failovers (s)", delays, "<= 1 s"))
        browser.close()
    return rows


if __name__ == "__main__":
    sys.exit(main())
