"""One image build with the engine's classic builder: each Dockerfile step reported as it runs,
the failed step's log tail kept."""
from __future__ import annotations

import io
import re
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from pgha_lab.errors import LabError
from pgha_lab.gateway import Engine
from pgha_lab.imaging.progress import BuildProgress

LOG_TAIL_LINES = 25
WORK_INSTRUCTIONS = {"RUN", "COPY", "ADD"}


@dataclass(frozen=True)
class StepTiming:
    image: str
    step: str
    seconds: float
    cached: bool = False


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def is_work_step(step: str) -> bool:
    """"[3/12] RUN apt-get ..." does work; ARG, ENV, LABEL and the like take no time and say nothing."""
    return step.split("] ", 1)[-1].split(" ", 1)[0].upper() in WORK_INSTRUCTIONS


def failed_step_tail(log_text: str, lines: int = LOG_TAIL_LINES) -> str:
    """The end of a build log from the last step's header on: what the failing step printed."""
    rows = log_text.splitlines()
    starts = [i for i, row in enumerate(rows) if row.startswith("Step ")]
    rows = rows[starts[-1]:] if starts else rows
    return "\n".join(rows[-lines:])


class BuildFailed(Exception):
    def __init__(self, image: str, step: str, log: Path, tail: str):
        super().__init__(f"{image}: {step}")
        self.image, self.step, self.log, self.tail = image, step, log, tail


def docker_build(client: Engine, *, image: str, tag: str, context: io.BytesIO, dockerfile: str,
                 buildargs: dict[str, str], labels: dict[str, str], nocache: bool,
                 log: Path, progress: BuildProgress, timings: list[StepTiming]) -> str:
    """Build with the engine's classic builder, reporting each Dockerfile step; image id."""
    log.parent.mkdir(parents=True, exist_ok=True)
    step, started, cached, image_id = "", time.monotonic(), False, ""

    def finish() -> None:
        if step:
            seconds = time.monotonic() - started
            timings.append(StepTiming(image, step, seconds, cached))   # list.append is atomic
            if is_work_step(step):   # the output keeps to the steps that do work
                progress.done(image, step, seconds, cached)

    with log.open("w") as fh:
        stream = client.build(fileobj=context, custom_context=True, dockerfile=dockerfile, tag=tag,
                              buildargs=buildargs, labels=labels, nocache=nocache, rm=True,
                              forcerm=True, pull=False)
        for chunk in stream:
            if "error" in chunk:
                fh.write(chunk["error"] + "\n")
                fh.flush()
                tail = failed_step_tail(log.read_text(errors="replace"))
                progress.fail(image, step or "build", time.monotonic() - started, tail)
                raise BuildFailed(image, step or "build", log, tail)
            # The classic builder paints a RUN's stderr red, a few characters per chunk.
            text = _ANSI.sub("", chunk.get("stream", ""))
            if not text:
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                continue
            fh.write(text)
            if text.startswith("Step "):
                finish()
                # "Step 3/12 : RUN apt-get ..." -> "[3/12] RUN apt-get ..."
                head, _, instruction = text.partition(" : ")
                step = f"[{head.split()[1]}] {instruction.strip()}"
                started, cached = time.monotonic(), False
                if is_work_step(step):
                    progress.start(image, step)
            elif text.strip() == "---> Using cache":
                cached = True
        finish()
    return image_id


def failures(futures: dict[str, Future]) -> list[str]:
    """One phrase per image build that failed (waited for in turn), whatever it raised."""
    out: list[str] = []
    for role, fut in futures.items():
        try:
            fut.result()
        except BuildFailed as exc:
            out.append(f"{exc.image} failed at {exc.step} (full log: {exc.log})")
        except LabError as exc:
            out.append(f"{role}: {exc}")
        except Exception as exc:   # e.g. the engine went away mid-build: still one message
            out.append(f"{role}: {type(exc).__name__}: {exc}")
    return out
