"""The record of a fuzz run (``tickless fuzz --json``), and how its reasons are bucketed.

JSON schema (``kind`` = "fuzz", ``schema_version`` = 1); every count is a function of
(seed, calls asked, flags) only, so two runs with the same seed give the same counts (the
times and rates are the only fields that differ)::

    kind                 "fuzz"
    schema_version       1
    seed                 the run's seed: call i does what (seed, i) says
    calls_asked          the calls asked for (--calls)
    calls                the calls made: calls_asked unless interrupted or aborted
    guests               guests booted; each stopped once, with one reason
    flags                FUZZ_FLAG_* names in effect ("runaway", "runaway_armed")
    rejected             {"<call> <errno>": n}: hypercalls answered with a negative errno,
                         by call and errno ("unknown call -ENOSYS" for unknown numbers)
    stops                {"<reason>": n}: why each guest stopped, addresses and numbers
                         replaced by <n> so buckets are stable ("finished" for the last)
    stops_by_action      {"<FuzzAction>": n}: the kind of call each guest stopped at
    results_reads        {"accepted" | "<reason>": n}: the host reading each stopped
                         guest's (scribbled) results buffer, as ``tickless measure`` does
    host_exceptions      errors of the host itself (must be 0): anything but GuestFault /
                         KvmError raised in the VMM or its threads, timer callback errors
    host_exception_details   the first few, one line each
    hangs                guests not stopped within the watchdog's bound plus a margin, or
                         a vCPU thread that did not return when stopped (must be 0)
    hang_details         the first few, one line each
    interrupted          true when Ctrl-C / SIGTERM ended the run early
    aborted              null, or why the run could not go on (e.g. a VM not created)
    wall_s               how long it took (not deterministic)
    calls_per_s          calls / wall_s
    created_utc          when
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tickless.devices.hypercall import UNKNOWN_CALL
from tickless.guest.abi import E2BIG, EINVAL, ENOSYS, ETIME, FuzzAction, Hypercall

FUZZ_SCHEMA_VERSION = 1
MAX_CALLS = 10**9  # calls one run may ask for
MAX_DETAILS = 20
FINISHED = "finished"  # the stop of the guest that made the last call

_ERRNO_NAMES = {EINVAL: "EINVAL", ENOSYS: "ENOSYS", ETIME: "ETIME", E2BIG: "E2BIG"}
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_NUMBER = re.compile(r"-?\d[\d,]*(\.\d+)?")


def normalize_reason(reason: str) -> str:
    """A stop reason without its addresses and numbers: one bucket per kind of stop."""
    return _NUMBER.sub("<n>", _HEX.sub("<n>", reason))


def reject_key(number: int, result: int) -> str:
    """'SET_CLOCKEVENT -ETIME': a rejected call by name and errno."""
    errno = _ERRNO_NAMES.get(-result, str(-result))
    if number == UNKNOWN_CALL:
        return f"unknown call -{errno}"
    try:
        name = Hypercall(number).name
    except ValueError:
        name = f"call {number}"
    return f"{name} -{errno}"


def action_name(value: int) -> str:
    """The FuzzAction the guest published, or what it means when there is none."""
    try:
        return FuzzAction(value).name
    except ValueError:
        return "before its first call"


@dataclass
class GuestTally:
    """What one guest did, worked out before it goes into the record in one step, so that
    an interruption (Ctrl-C) leaves the record consistent."""

    stop: str  # the normalized reason
    action: str | None  # the kind of call it stopped at (None: it made the last call)
    rejected: Counter[str]
    results_read: str
    next_call: int  # where the next guest starts: the calls made so far
    host_exceptions: list[str] = field(default_factory=list)


@dataclass
class FuzzRecord:
    seed: int
    calls_asked: int
    flags: list[str]
    calls: int = 0
    guests: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    stops: Counter[str] = field(default_factory=Counter)
    stops_by_action: Counter[str] = field(default_factory=Counter)
    results_reads: Counter[str] = field(default_factory=Counter)
    host_exceptions: int = 0
    host_exception_details: list[str] = field(default_factory=list)
    hangs: int = 0
    hang_details: list[str] = field(default_factory=list)
    interrupted: bool = False
    aborted: str | None = None
    wall_s: float = 0.0
    created_utc: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.wall_s if self.wall_s > 0 else 0.0

    def add_guest(self, tally: GuestTally) -> None:
        self.stops[tally.stop] += 1
        if tally.action is not None:
            self.stops_by_action[tally.action] += 1
        self.rejected.update(tally.rejected)
        self.results_reads[tally.results_read] += 1
        for detail in tally.host_exceptions:
            self.host_exception(detail)
        self.calls = tally.next_call

    def host_exception(self, detail: str) -> None:
        self.host_exceptions += 1
        if len(self.host_exception_details) < MAX_DETAILS:
            self.host_exception_details.append(detail)

    def hang(self, detail: str) -> None:
        self.hangs += 1
        if len(self.hang_details) < MAX_DETAILS:
            self.hang_details.append(detail)

    def counts(self) -> dict[str, Any]:
        """What must be the same for the same seed (everything but times and dates)."""
        d = self.to_json_dict()
        for key in ("wall_s", "calls_per_s", "created_utc", "interrupted"):
            del d[key]
        return d

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "kind": "fuzz",
            "schema_version": FUZZ_SCHEMA_VERSION,
            "seed": self.seed,
            "calls_asked": self.calls_asked,
            "calls": self.calls,
            "guests": self.guests,
            "flags": list(self.flags),
            "rejected": _sorted(self.rejected),
            "stops": _sorted(self.stops),
            "stops_by_action": _sorted(self.stops_by_action),
            "results_reads": _sorted(self.results_reads),
            "host_exceptions": self.host_exceptions,
            "host_exception_details": list(self.host_exception_details),
            "hangs": self.hangs,
            "hang_details": list(self.hang_details),
            "interrupted": self.interrupted,
            "aborted": self.aborted,
            "wall_s": round(self.wall_s, 3),
            "calls_per_s": round(self.calls_per_s, 1),
            "created_utc": self.created_utc,
        }


def _sorted(counts: Counter[str]) -> dict[str, int]:
    """Most frequent first, then by name: a stable order for diffs."""
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
