#!/usr/bin/env python3
"""Write downtime and duration of a CA rotation and of a rolling image upgrade on a running lab,
beside one plain switchover (the yardstick), per timing profile, as a table.

Runs its own lab (project pgha-lab-bench, its own subnet, nothing published). The image upgrade
tags a trivially different image (a new LABEL on the same layers) as pgha-lab/dbnode:latest, as a
rebuild would, for the length of one `up`; the original tag is put back right after, and a second
`up` rolls the lab back onto it.   usage: python bench/rolling.py [--profiles fast,seed]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pgha_lab import gateway  # noqa: E402
from pgha_lab.context import LabContext  # noqa: E402
from pgha_lab.rolling.measure import writes_during  # noqa: E402
from pgha_lab.wait import wait_until  # noqa: E402

PROJECT = "pgha-lab-bench-roll"   # its own, so bench/up.py may run beside it
SUBNET = "10.56.47.0/24"
DBNODE = gateway.IMAGES["dbnode"]
HEALTHY_S = 120.0


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pgha_lab", "--home", str(REPO), "--project", PROJECT, *args],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def docker(*args: str, stdin: str | None = None) -> str:
    env = {"DOCKER_BUILDKIT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"}
    done = subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True, check=True, env=env)
    return done.stdout.strip()


def measure(ctx: LabContext, *args: str) -> tuple[float, float, int]:
    """(write downtime s, duration s, lost acknowledged writes) of one command."""
    # A rolling change refuses an unhealthy lab: after the yardstick switchover the old leader
    # needs a moment to be back as the synchronous standby.
    if not wait_until(ctx.health, HEALTHY_S).ok:
        raise SystemExit("bench/rolling.py: the lab did not become healthy "
                         f"within {HEALTHY_S:.0f}s before {' '.join(args)}.")
    with writes_during(ctx) as writes:
        cli(*args)
    return writes.downtime(), writes.seconds, len(writes.lost)


def image_upgrade(ctx: LabContext) -> tuple[float, float, int]:
    original = docker("image", "inspect", "-f", "{{.Id}}", DBNODE)
    backup = "pgha-lab/dbnode:bench-original"
    docker("tag", original, backup)
    try:
        docker("build", "-q", "-t", DBNODE, "-",
               stdin=f"FROM {original}\nLABEL org.pgha-lab.bench={uuid.uuid4().hex}\n")
        result = measure(ctx, "up")
    finally:
        docker("tag", original, DBNODE)
        subprocess.run(["docker", "rmi", backup], capture_output=True)
    cli("up")   # back onto the original image, rolled the same way
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", default="fast,seed")
    args = ap.parse_args()
    rows = []
    try:
        for profile in args.profiles.split(","):
            cli("up", "--profile", profile, "--subnet", SUBNET, "--publish-ports", "off")
            ctx = LabContext.open(REPO, PROJECT)
            rows.append((profile, "one switchover (yardstick)", *measure(ctx, "switchover")))
            rows.append((profile, "CA rotation (certs --rotate)", *measure(ctx, "certs", "--rotate")))
            rows.append((profile, "rolling image upgrade (up)", *image_upgrade(ctx)))
    finally:
        cli("down", "--volumes")
    print(f"{'profile':8} {'change':30} {'write downtime (s)':>19} {'duration (s)':>13} {'lost writes':>12}")
    for profile, change, downtime, seconds, lost in rows:
        print(f"{profile:8} {change:30} {downtime:19.2f} {seconds:13.1f} {lost:12d}")
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"(bench took {time.monotonic() - started:.0f}s)")
    sys.exit(code)
