"""Readings of the cluster over time: every db node's own role (GET /patroni), etcd's leader key
and HAProxy's primary backends, each source in its own thread so a frozen node cannot stall the others."""
from __future__ import annotations

import csv
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pgha_lab import health
from pgha_lab.drill.clock import Clock
from pgha_lab.probes import LabProbe

PATRONI, ETCD, HAPROXY = "patroni", "etcd", "haproxy"
PRIMARY_ROLES = ("primary", "master")


@dataclass
class Sample:
    t_s: float              # seconds since the drill began, when the answer came back
    source: str             # patroni | etcd | haproxy
    node: str = ""          # patroni: the db node asked
    # patroni: its role; etcd: the leader key's holder ("" = no key); haproxy: primary servers UP, "+"-joined
    value: str = ""
    state: str = ""         # patroni: PostgreSQL's state as Patroni reports it
    timeline: int | None = None
    error: str = ""         # non-empty when the source did not answer; `value` then means nothing

    @property
    def answered(self) -> bool:
        return not self.error

    @property
    def says_primary(self) -> bool:
        """A db node answering that it runs as a writable primary."""
        return self.source == PATRONI and self.answered and self.value in PRIMARY_ROLES and self.state == "running"

    @property
    def up_servers(self) -> list[str]:
        return [s for s in self.value.split("+") if s] if self.source == HAPROXY and self.answered else []


SAMPLE_FIELDS = [f.name for f in fields(Sample)]


def write_csv(samples: Iterable[Sample], path: Path, clock: Clock | None = None) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*SAMPLE_FIELDS, "epoch"])
        for s in samples:
            row = asdict(s)
            w.writerow([*("" if row[k] is None else row[k] for k in SAMPLE_FIELDS),
                        f"{clock.wall(s.t_s):.3f}" if clock else ""])


def read_csv(path: Path) -> list[Sample]:
    out = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            out.append(Sample(t_s=float(row["t_s"]), source=row["source"], node=row["node"], value=row["value"],
                              state=row["state"], timeline=int(row["timeline"]) if row["timeline"] else None,
                              error=row["error"]))
    return out


def read_patroni(probe: LabProbe, node_name: str, timeout: float) -> Callable[[], Sample]:
    node = probe.topo.node(node_name)

    def read() -> Sample:
        code, doc = probe.rest(node, "/patroni", timeout=timeout)
        if code == 0:
            return Sample(0.0, PATRONI, node_name, error="no answer")
        return Sample(0.0, PATRONI, node_name, value=str(doc.get("role", "")), state=str(doc.get("state", "")),
                      timeline=doc.get("timeline"))
    return read


def read_leader_key(probe: LabProbe, timeout: float) -> Callable[[], Sample]:
    def read() -> Sample:
        answered, holder = probe.etcd_read(probe.leader_key_path, timeout)
        if not answered:
            return Sample(0.0, ETCD, error="etcd unreadable")
        return Sample(0.0, ETCD, value=holder or "")
    return read


def read_haproxy(probe: LabProbe, timeout: float) -> Callable[[], Sample]:
    def read() -> Sample:
        backends = probe.haproxy(timeout=timeout)
        if not backends:
            return Sample(0.0, HAPROXY, error="stats page does not answer")
        return Sample(0.0, HAPROXY, value="+".join(health.servers_up(backends)))
    return read


class Sampler:
    """Reads each source every `interval_s` in its own thread until stopped."""

    def __init__(self, probe: LabProbe, clock: Clock, interval_s: float = 0.1, timeout_s: float = 0.5) -> None:
        self.clock = clock
        self.interval_s = interval_s
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # One probe (one HTTP session) per thread: requests' sessions are not meant to be shared.
        readers: list[tuple[str, Callable[[], Sample]]] = [
            (f"patroni-{n.name}", read_patroni(_clone(probe), n.name, timeout_s)) for n in probe.topo.db]
        # etcd tries its members one after the other, so a round without quorum (every member
        # timing out) takes members x timeout; that thread alone slows down, the others keep pace.
        readers.append(("etcd", read_leader_key(_clone(probe), timeout_s)))
        readers.append(("haproxy", read_haproxy(_clone(probe), timeout_s)))
        self._threads = [threading.Thread(target=self._loop, args=(name, read), name=f"drill-sample-{name}",
                                          daemon=True) for name, read in readers]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5.0)

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return sorted(self._samples, key=lambda s: s.t_s)

    def _loop(self, name: str, read: Callable[[], Sample]) -> None:
        source, _, node = name.partition("-")
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                sample = read()
            except Exception as exc:   # a reading that blows up is a reading that did not answer
                sample = Sample(0.0, source, node, error=type(exc).__name__)
            sample.t_s = self.clock.now()
            with self._lock:
                self._samples.append(sample)
            due += self.interval_s
            now = time.monotonic()
            if due < now:
                due = now
            self._stop.wait(due - now)


def _clone(probe: LabProbe) -> LabProbe:
    return LabProbe(probe.topo, etcd_tls=probe.etcd_tls, patroni_tls=probe.patroni_tls)
