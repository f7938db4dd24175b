"""The history format the checker reads: client operations and final states, their loader and writer.

History: a JSONL file, one JSON object per line, one line per client operation, e.g.

  {"op": "write", "client": "c1", "key": "c1", "value": 7, "start": 12.031, "end": 12.044,
   "result": "ok", "server": "192.168.56.11", "port": "primary"}

  op      "write": a register write. The table is append-only, one (key, value) row per write, so
          every write stays visible on its own;
          "append": a list append, one (key, value) row per element;
          "read": a read of one key through the primary or the replica port.
  client  the client's id (string, not empty).
  key     the register or list key (string, not empty); the register workload gives each client
          its own key.
  value   write/append: the int written, unique per key and strictly increasing per client.
          read: what was seen: an int, or null for nothing, for a register; a list of ints (in
          stored order) for a list.
  start   seconds on one monotonic clock shared by every client: when the operation was sent on
          the connection that answered it. A client-side retry restarts it, or an operation would
          seem to span a whole failover.
  end     when its answer (or its error) came back; end >= start.
  result  "ok": acknowledged; "fail": definitely not applied (e.g. connection refused before
          sending); "unknown": the error came after sending, so it may or may not have committed
          (e.g. connection lost during the commit).
  server  the server that answered, from inet_server_addr() in the same transaction; "" for none.
  port    optional: "primary" or "replica", the HAProxy port the client used.
  error   optional: why the operation failed, free text the checks ignore.

Final state: what each source holds once the cluster has healed, one record per source:

  {"source": "primary", "rows": {"c1": [1, 2, 7], "list-a": [4, 3, 9]}}

  source  "primary" for the node that is primary at the end; any other name is a replica, named
          as the lab names it.
  rows    each key -> every value stored under it, in stored order (ORDER BY the table's identity
          column, the same query on every source): one entry per row still present, so a value
          stored twice appears twice. For a list that order is the elements' order in the list.

Finals live either in a JSON file of their own, an array of such records, or as lines of the
history carrying "op": "final" besides "source" and "rows".
"""
from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRITE, APPEND, READ, FINAL = "write", "append", "read", "final"
UPDATES = (WRITE, APPEND)
OPERATIONS = (WRITE, APPEND, READ)
OK, FAIL, UNKNOWN = "ok", "fail", "unknown"
RESULTS = (OK, FAIL, UNKNOWN)
PRIMARY, REPLICA = "primary", "replica"
PORTS = (PRIMARY, REPLICA)

REQUIRED_FIELDS = ("op", "client", "key", "value", "start", "end", "result")
OPTIONAL_FIELDS = ("server", "port", "error")
FINAL_FIELDS = ("source", "rows")


class HistoryError(ValueError):
    """The history or a final state breaks the format; the message says where, in one sentence."""


def _is_int(value: Any) -> bool:
    # bool is an int to Python, never to this format
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _text(name: str, value: Any, *, empty_ok: bool) -> str:
    if not isinstance(value, str) or (not empty_ok and not value):
        raise HistoryError(f"field '{name}' must be a {'' if empty_ok else 'non-empty '}string, not {value!r}")
    return value


@dataclass(frozen=True)
class Operation:
    """One client operation as the client saw it; the fields are the format's, documented above.
    A list read's value may be given as a list: it is kept as a tuple."""
    op: str
    client: str
    key: str
    value: int | tuple[int, ...] | None
    start: float
    end: float
    result: str
    server: str = ""
    port: str = ""
    error: str = ""

    def __post_init__(self) -> None:
        # Validated at construction so an operation built by a campaign is as sound as a loaded one.
        if self.op not in OPERATIONS:
            raise HistoryError(f"field 'op' must be one of {', '.join(OPERATIONS)}, not {self.op!r}")
        _text("client", self.client, empty_ok=False)
        _text("key", self.key, empty_ok=False)
        object.__setattr__(self, "value", self._checked_value())
        for name in ("start", "end"):
            moment = getattr(self, name)
            if not _is_number(moment):
                raise HistoryError(f"field '{name}' must be a finite number of seconds, not {moment!r}")
            object.__setattr__(self, name, float(moment))
        if self.end < self.start:
            raise HistoryError(f"field 'end' ({self.end}) is before field 'start' ({self.start})")
        if self.result not in RESULTS:
            raise HistoryError(f"field 'result' must be one of {', '.join(RESULTS)}, not {self.result!r}")
        _text("server", self.server, empty_ok=True)
        if self.port not in ("", *PORTS):
            raise HistoryError(f"field 'port' must be one of {', '.join(PORTS)}, not {self.port!r}")
        _text("error", self.error, empty_ok=True)

    def _checked_value(self) -> int | tuple[int, ...] | None:
        value = self.value
        if self.op in UPDATES:
            if not _is_int(value):
                raise HistoryError(f"field 'value' of a {self.op} must be an int, not {value!r}")
            return value
        if value is None or _is_int(value):
            return value
        if isinstance(value, (list, tuple)) and all(_is_int(v) for v in value):
            return tuple(value)
        raise HistoryError(f"field 'value' of a read must be an int, null or a list of ints, not {value!r}")

    @property
    def ok(self) -> bool:
        return self.result == OK

    @property
    def is_update(self) -> bool:
        return self.op in UPDATES

    @property
    def written(self) -> int:
        """The int an update wrote: construction refused an update with any other value."""
        if not isinstance(self.value, int):
            raise TypeError(f"a {self.op} has no written value")
        return self.value

    @property
    def seen(self) -> tuple[int, ...]:
        """The values a read observed (none for a null register read or a read that failed)."""
        if self.op != READ or not self.ok or self.value is None:
            return ()
        return self.value if isinstance(self.value, tuple) else (self.value,)

    def as_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"op": self.op, "client": self.client, "key": self.key,
                                  "value": list(self.value) if isinstance(self.value, tuple) else self.value,
                                  "start": self.start, "end": self.end, "result": self.result,
                                  "server": self.server}
        record.update({name: getattr(self, name) for name in ("port", "error") if getattr(self, name)})
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Operation:
        missing = [name for name in REQUIRED_FIELDS if name not in record]
        if missing:
            raise HistoryError(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
        # A misspelt optional field would otherwise be dropped silently, e.g. 'sever' losing the acker.
        unknown = sorted(set(record) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
        if unknown:
            raise HistoryError(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}")
        return cls(**record)


@dataclass(frozen=True)
class FinalState:
    """What one source holds at the end: each key's values in stored order, repeats kept."""
    source: str
    rows: Mapping[str, tuple[int, ...]]

    def __post_init__(self) -> None:
        _text("source", self.source, empty_ok=False)
        if not isinstance(self.rows, Mapping):
            raise HistoryError(f"field 'rows' must map keys to lists of ints, not {self.rows!r}")
        rows: dict[str, tuple[int, ...]] = {}
        for key, values in self.rows.items():
            if not isinstance(key, str) or not key:
                raise HistoryError(f"rows of source {self.source!r}: a key must be a non-empty string, not {key!r}")
            if not isinstance(values, (list, tuple)) or not all(_is_int(v) for v in values):
                raise HistoryError(f"rows of source {self.source!r}: key {key!r} "
                                   f"must hold a list of ints, not {values!r}")
            rows[key] = tuple(values)
        object.__setattr__(self, "rows", rows)

    def values(self, key: str) -> tuple[int, ...]:
        return self.rows.get(key, ())

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "rows": {key: list(values) for key, values in self.rows.items()}}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> FinalState:
        missing = [name for name in FINAL_FIELDS if name not in record]
        if missing:
            raise HistoryError(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
        unknown = sorted(set(record) - set(FINAL_FIELDS) - {"op"})
        if unknown:
            raise HistoryError(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}")
        return cls(record["source"], record["rows"])


@dataclass(frozen=True)
class History:
    """A loaded history file: its operations in file order and any final states it carries."""
    operations: tuple[Operation, ...]
    finals: tuple[FinalState, ...] = ()


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise HistoryError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_history(path: str | Path) -> History:
    """Every operation and final record of a JSONL history. Blank lines are skipped; anything else
    that breaks the format is a HistoryError naming the line."""
    path = Path(path)
    operations: list[Operation] = []
    finals: list[FinalState] = []
    # Lost and duplicate writes are told apart by value, so a value written twice under one key
    # would make them ambiguous: refuse it instead of guessing.
    first_line_of: dict[tuple[str, int], int] = {}
    for number, raw in enumerate(_read_bytes(path).split(b"\n"), start=1):
        where = f"{path} line {number}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HistoryError(f"{where} is not UTF-8 text") from None
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HistoryError(f"{where} is not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise HistoryError(f"{where} is not a JSON object")
        try:
            if record.get("op") == FINAL:
                finals.append(FinalState.from_dict(record))
                continue
            operation = Operation.from_dict(record)
        except HistoryError as exc:
            raise HistoryError(f"{where}: {exc}") from None
        if operation.is_update:
            written = (operation.key, operation.written)
            if written in first_line_of:
                raise HistoryError(f"{where}: value {operation.value} for key {operation.key!r} "
                                   f"was already written on line {first_line_of[written]}")
            first_line_of[written] = number
        operations.append(operation)
    return History(tuple(operations), tuple(finals))


def load_finals(path: str | Path) -> tuple[FinalState, ...]:
    """The final states of a JSON file holding an array of {"source", "rows"} records."""
    path = Path(path)
    try:
        text = _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise HistoryError(f"{path} is not UTF-8 text") from None
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(records, list):
        raise HistoryError(f"{path} must hold a JSON array of final states, one per source")
    finals = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise HistoryError(f"{path} final state {number} is not a JSON object")
        try:
            finals.append(FinalState.from_dict(record))
        except HistoryError as exc:
            raise HistoryError(f"{path} final state {number}: {exc}") from None
    return tuple(finals)


def _line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, allow_nan=False) + "\n"


def write_history(path: str | Path, operations: Iterable[Operation], finals: Iterable[FinalState] = ()) -> None:
    """A whole history at once: the operations, then the final states as "op": "final" lines."""
    with Path(path).open("w", encoding="utf-8") as out:
        out.writelines(_line(op.as_dict()) for op in operations)
        out.writelines(_line({"op": FINAL, **final.as_dict()}) for final in finals)


def write_finals(path: str | Path, finals: Sequence[FinalState]) -> None:
    Path(path).write_text(json.dumps([final.as_dict() for final in finals], indent=1) + "\n", encoding="utf-8")


class HistoryWriter:
    """Records operations as they complete, one flushed line each, so a run that dies midway still
    leaves every finished operation on disk. Client threads may share one writer."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._out = self.path.open("w", encoding="utf-8")
        self._lock = threading.Lock()

    def record(self, operation: Operation) -> None:
        self._write(_line(operation.as_dict()))

    def record_final(self, final: FinalState) -> None:
        self._write(_line({"op": FINAL, **final.as_dict()}))

    def _write(self, line: str) -> None:
        # One write per line under the lock: lines from concurrent clients never interleave.
        with self._lock:
            self._out.write(line)
            self._out.flush()

    def close(self) -> None:
        with self._lock:
            self._out.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
