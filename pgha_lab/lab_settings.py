"""Lab settings: the replication mode and safety switches a lab runs with, their validation, the
Patroni dynamic configuration (the keys `patronictl edit-config` shows) they map to, and where a
lab keeps them (labs/<project>/settings.json, beside the saved profile)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pgha_lab import dynamic_config
from pgha_lab.dynamic_config import DEFAULT_MAX_LAG
from pgha_lab.errors import LabError
from pgha_lab.fsutil import write_if_changed

SETTINGS_FILE = "settings.json"

# Each mode as Patroni's own keys, so anything reading GET /config (expectations, a DBA) sees the truth.
REPLICATION_MODES: dict[str, dict[str, Any]] = {
    "sync": {"synchronous_mode": True, "synchronous_mode_strict": False},
    "async": {"synchronous_mode": False, "synchronous_mode_strict": False},
    "strict": {"synchronous_mode": True, "synchronous_mode_strict": True},
    "quorum": {"synchronous_mode": "quorum", "synchronous_mode_strict": False},
}
MODE_MEANING = {
    "sync": "a commit waits for one synchronous standby; a lost standby is dropped, writes go on",
    "async": "a commit returns when the primary has it; a failover can lose what was not yet streamed",
    "strict": "a commit waits for a synchronous standby, and with none left writes hang instead of failing",
    "quorum": "a commit waits for sync_count of the standbys (ANY n), failover needs a quorum of members",
}


@dataclass(frozen=True)
class LabSettings:
    replication: str = "sync"
    sync_count: int = 1
    failsafe: bool = False
    max_lag: int = DEFAULT_MAX_LAG
    rewind: bool = True

    def validate(self, db_nodes: int) -> LabSettings:
        """Refuse what Patroni would refuse or silently ignore, in one sentence naming the fix."""
        if self.replication not in REPLICATION_MODES:
            raise LabError(f"unknown replication mode {self.replication!r}; choose one of: "
                           f"{', '.join(REPLICATION_MODES)}.")
        replicas = db_nodes - 1
        if self.sync_count < 1:
            raise LabError(f"--sync-count takes 1 or more, not {self.sync_count}.")
        if self.sync_count > max(1, replicas):
            raise LabError(f"--sync-count {self.sync_count} is more than this lab's {replicas} replica(s); "
                           f"choose at most {max(1, replicas)} or add db nodes with --db-nodes.")
        if self.max_lag < 0:
            raise LabError(f"--max-lag takes a byte count of 0 or more, not {self.max_lag}.")
        return self

    @property
    def expects_sync_standby(self) -> bool:
        """Whether a healthy cluster in this mode shows a synchronous (or quorum) standby."""
        return self.replication != "async"

    def dcs(self) -> dict[str, Any]:
        """Patroni's dynamic configuration for these settings (merged into /config by PATCH)."""
        return {**REPLICATION_MODES[self.replication],
                "synchronous_node_count": self.sync_count,
                "failsafe_mode": self.failsafe,
                "maximum_lag_on_failover": self.max_lag,
                "postgresql": {"use_pg_rewind": self.rewind}}

    def differs_from(self, config: dict[str, Any]) -> dict[str, Any]:
        """The part of dcs() that Patroni's current /config does not have yet."""
        return dynamic_config.patch_merging(config, self.dcs())

    def summary(self) -> str:
        parts = [f"replication {self.replication}"]
        if self.replication in ("sync", "strict", "quorum"):
            parts.append(f"sync count {self.sync_count}")
        parts += [f"failsafe {'on' if self.failsafe else 'off'}", f"max lag {self.max_lag} bytes",
                  f"rewind {'on' if self.rewind else 'off'}"]
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "patroni": self.dcs(), "meaning": MODE_MEANING[self.replication]}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LabSettings:
        """The settings a Patroni /config document describes (what the cluster really runs)."""
        mode = config.get("synchronous_mode", False)
        strict = bool(config.get("synchronous_mode_strict", False))
        replication = "quorum" if mode == "quorum" else ("strict" if mode and strict else ("sync" if mode else "async"))
        return cls(replication=replication, sync_count=int(config.get("synchronous_node_count", 1)),
                   failsafe=bool(config.get("failsafe_mode", False)),
                   max_lag=int(config.get("maximum_lag_on_failover", DEFAULT_MAX_LAG)),
                   rewind=bool((config.get("postgresql") or {}).get("use_pg_rewind", False)))


DEFAULT = LabSettings()


def read_live(probe: Any, topology: Any, nodes: Any = None) -> LabSettings | None:
    """What Patroni runs now (GET /config from the first db node that answers, of `nodes` when
    given: those known to run), None if none does. Takes the probe and topology rather than a
    LabContext, which imports this module."""
    config = dynamic_config.read_first(probe, topology.db if nodes is None else nodes)
    return None if config is None else LabSettings.from_config(config)


def on_off(text: str, flag: str) -> bool:
    if text in ("on", "true", "yes"):
        return True
    if text in ("off", "false", "no"):
        return False
    raise LabError(f"{flag} takes on or off, not {text!r}.")


def path(state: Path) -> Path:
    return state / SETTINGS_FILE


def load(state: Path) -> LabSettings:
    """The lab's saved settings, or the seed's (sync, failsafe off) for a lab that never saved any."""
    return load_file(path(state))


def load_file(f: Path) -> LabSettings:
    if not f.exists():
        return DEFAULT
    try:
        doc = json.loads(f.read_text())
        return LabSettings(**{k: doc[k] for k in asdict(DEFAULT) if k in doc})
    except (ValueError, TypeError):
        raise LabError(f"{f} is not a settings file pgha-lab wrote; remove it to fall back to the defaults.") from None


def save(state: Path, settings: LabSettings) -> bool:
    return save_file(path(state), settings)


def save_file(f: Path, settings: LabSettings) -> bool:
    return write_if_changed(f, json.dumps(asdict(settings), indent=2) + "\n", 0o644)


def requested(current: LabSettings, *, replication: str | None = None, sync_count: int | None = None,
              failsafe: bool | None = None, max_lag: int | None = None, rewind: bool | None = None) -> LabSettings:
    """The current settings with whatever the command line changed."""
    # A value of each field's own type (callers validate the result).
    changes: dict[str, Any] = {k: v for k, v in (("replication", replication), ("sync_count", sync_count),
                                                 ("failsafe", failsafe), ("max_lag", max_lag), ("rewind", rewind))
                               if v is not None}
    return replace(current, **changes)
