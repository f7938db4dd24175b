"""The lessons, in course order; an id names one or the error lists them."""
from __future__ import annotations

from pgha_lab.errors import LabError
from pgha_lab.lessons import (
    l01_read_the_cluster,
    l02_certificates,
    l03_switchover,
    l04_power_cut,
    l05_frozen_vm,
    l06_pulled_cable,
    l07_etcd_quorum,
    l08_settings_order,
    l09_client_failover,
    l10_reinit,
    l11_grow,
)
from pgha_lab.lessons.model import Lesson

LESSONS: tuple[Lesson, ...] = tuple(sorted(
    (m.LESSON for m in (l01_read_the_cluster, l02_certificates, l03_switchover, l04_power_cut, l05_frozen_vm,
                        l06_pulled_cable, l07_etcd_quorum, l08_settings_order, l09_client_failover,
                        l10_reinit, l11_grow)),
    key=lambda lesson: lesson.id))


def get(lesson_id: str | int) -> Lesson:
    text = str(lesson_id).strip()
    for lesson in LESSONS:
        if text == str(lesson.id) or text == lesson.slug:
            return lesson
    raise LabError(f"there is no lesson {text!r}; `pgha-lab lesson list` shows them "
                   f"({', '.join(str(lesson.id) for lesson in LESSONS)}).")
