"""How a dbnode image gets PostgreSQL 18: the PostgreSQL apt repository where a container can
reach it, else the release tarball compiled; `auto` asks a probe container, remembered a while."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from pgha_lab.errors import LabError
from pgha_lab.gateway import BASE_IMAGE, Engine
from pgha_lab.gateway import IMAGE_LABEL as LABEL

PG_INSTALL_CHOICES = ("auto", "pgdg", "source")
PGDG_PROBE_TIMEOUT = 120.0            # seconds for the whole probe container
PGDG_PROBE_TTL = 6 * 3600             # the probe's answer is trusted this long


def choose_pg_install(requested: str, pgdg_reachable: Callable[[], bool]) -> tuple[str, str]:
    """(method, reason). `auto` asks the probe; explicit choices never probe."""
    if requested not in PG_INSTALL_CHOICES:
        raise LabError(f"--pg-install must be one of {', '.join(PG_INSTALL_CHOICES)}, not {requested!r}.")
    if requested == "pgdg":
        return "pgdg", "requested: the PostgreSQL apt repository"
    if requested == "source":
        return "source", "requested: compiled from the release tarball"
    if pgdg_reachable():
        return "pgdg", "auto: the PostgreSQL apt repository is reachable"
    return "source", "auto: the PostgreSQL apt repository is unreachable, so it is built from the release tarball"


# Runs in a throwaway container from the base image. It unpacks postgresql-common's pgdg
# script (without installing the package), lets it add the repository as it would on a host,
# and asks apt whether postgresql-18 became installable. Only noble main is indexed first so
# the probe stays a few seconds; the repository's address comes from Ubuntu's script. apt asks
# once, with a short timeout: its default three retries of a name that does not resolve cost
# the probe 8 of its 12 s where the repository is unreachable (measured here).
_PGDG_PROBE = r"""
set -e
printf 'Acquire::Retries "0";\nAcquire::http::Timeout "5";\nAcquire::https::Timeout "5";\n' \
  >/etc/apt/apt.conf.d/99pgha-probe
mirror=$(cat /usr/local/lib/pgha-lab/ubuntu-mirror)
rm -f /etc/apt/sources.list.d/*
echo "deb [signed-by=/usr/share/keyrings/ubuntu-archive-keyring.gpg] $mirror noble main" >/etc/apt/sources.list
apt-get -qq update >/dev/null
cd /tmp && apt-get -qq download postgresql-common >/dev/null
dpkg-deb -x postgresql-common_*.deb /
timeout 60 sh /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y >/tmp/pgdg.log 2>&1 || true
apt-cache show postgresql-18 >/dev/null 2>&1
"""


def pgdg_probe(client: Engine, cache: Path, base_id: str) -> bool:
    """Whether the PostgreSQL apt repository works from a container; remembered for a while
    (per base image) so a warm build does not repeat the probe."""
    memo = cache / "pgdg-probe.json"
    try:
        seen = json.loads(memo.read_text())
        if seen.get("base") == base_id and time.time() - float(seen["at"]) < PGDG_PROBE_TTL:
            return bool(seen["reachable"])
    except (OSError, ValueError, KeyError):
        pass
    container = client.run(BASE_IMAGE, ["sh", "-c", _PGDG_PROBE], labels={f"{LABEL}.probe": "pgdg"})
    try:
        reachable = container.wait(timeout=PGDG_PROBE_TIMEOUT) == 0   # a timeout counts as unreachable
    finally:
        container.remove()
    remember_pgdg(cache, base_id, reachable)
    return reachable


def remember_pgdg(cache: Path, base_id: str, reachable: bool) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "pgdg-probe.json").write_text(json.dumps({"base": base_id, "reachable": reachable, "at": time.time()}))
