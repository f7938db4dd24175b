"""The track's steps in the course's order."""
from __future__ import annotations

from pgha_lab.errors import LabError
from pgha_lab.track import s1_names, s2_certificates, s3_etcd, s4_postgres, s5_patroni, s6_haproxy, s7_tests
from pgha_lab.track.model import Step

STEPS: tuple[Step, ...] = tuple(m.STEP for m in (s1_names, s2_certificates, s3_etcd, s4_postgres, s5_patroni,
                                                 s6_haproxy, s7_tests))


def get(ref: str | int) -> Step:
    """A step by number (1-7) or by its slug (hosts, tls, etcd, postgres, patroni, haproxy, verify)."""
    text = str(ref).strip().lower()
    for step in STEPS:
        if text in (str(step.id), step.slug):
            return step
    raise LabError(f"there is no step {ref!r}; the track's steps are "
                   + ", ".join(f"{s.id} ({s.slug})" for s in STEPS) + ".")
