"""One point of a sweep: a command, every setting it runs with, and the spec built from
them; its key (a hash of command and settings) is how a rerun knows it is done."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from tickless.sweep.runners import Scalar
from tickless.sweep.store import FAILED, KEY, OK, STATUS

__all__ = ["Outcome", "Point"]

Row = dict[str, Scalar]


@dataclass(frozen=True)
class Outcome:
    """What running a point gave: its flat record, or the one line of its error."""

    record: Row | None
    error: str | None
    wall_s: float | None
    host: str | None


@dataclass(frozen=True)
class Point:
    command: str  # "measure", "idle", "sim fleet"
    settings: dict[str, Scalar]  # every option's value, swept or not (column name: dest)
    swept: tuple[str, ...]  # the settings that vary across the grid
    spec: Any = field(compare=False)  # what the command's entry point takes
    timing: bool = False  # times real hardware: one such point at a time per host
    cost: float = 1.0  # expected run time, relative: the biggest points are started first

    @property
    def key(self) -> str:
        canonical = json.dumps(
            {"command": self.command, "settings": self.settings}, sort_keys=True, default=str
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:20]

    def label(self) -> str:
        return " ".join(f"{n}={self.settings[n]}" for n in self.swept) or self.command

    def row(self, outcome: Outcome) -> Row:
        """Meta columns (``sweep_*``), then the settings, then the record's fields; a field
        named like a setting is ``result.X`` (in every row: the names decide, not values)."""
        row: Row = {
            KEY: self.key,
            "sweep_command": self.command,
            STATUS: OK if outcome.error is None else FAILED,
            "sweep_error": outcome.error,
            "sweep_swept": ",".join(self.swept),
            "sweep_wall_s": outcome.wall_s,
            "sweep_host": outcome.host,
            "sweep_finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        row.update(self.settings)
        for name, value in (outcome.record or {}).items():
            row[f"result.{name}" if name in row else name] = value
        return row
