"""What the host paid for a guest's timer (the record's ``host`` block): the counts, the
rates derived from them, and their JSON form. Stored rates are derived, so a file whose
rate disagrees with its counts is refused rather than silently fixed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tickless.jsonfields import StrictReader

__all__ = ["HostCounts", "host_counts_from_json", "host_counts_to_json"]


def _rate(count: int, duration_s: float) -> float:
    return count / duration_s if duration_s > 0 else 0.0


@dataclass
class HostCounts:
    """What the host paid for the guest's timer: the cost side of precision."""

    exits: int
    hypercalls: int
    injections: int
    wakeups: int
    timer_events: int
    duration_s: float
    cpu_s: float

    @property
    def wakeups_per_s(self) -> float:
        return _rate(self.wakeups, self.duration_s)

    @property
    def timer_events_per_s(self) -> float:
        return _rate(self.timer_events, self.duration_s)

    @property
    def injections_per_s(self) -> float:
        return _rate(self.injections, self.duration_s)


def host_counts_to_json(host: HostCounts) -> dict[str, Any]:
    return {
        "exits": host.exits,
        "hypercalls": host.hypercalls,
        "injections": host.injections,
        "wakeups": host.wakeups,
        "timer_events": host.timer_events,
        "duration_s": host.duration_s,
        "cpu_s": host.cpu_s,
        "wakeups_per_s": host.wakeups_per_s,
        "timer_events_per_s": host.timer_events_per_s,
        "injections_per_s": host.injections_per_s,
    }


def _check_rate(reader: StrictReader, key: str, expected: float) -> None:
    stored = reader.float_(key)
    if not math.isclose(stored, expected, rel_tol=1e-9, abs_tol=1e-9):
        raise reader.fail(key, f"is {stored} but the counts give {expected}")


def host_counts_from_json(top: StrictReader) -> HostCounts:
    """The record's ``host`` block, checked: every key, no extra, rates that agree."""
    h = top.object_("host")
    host = HostCounts(
        exits=h.int_("exits"),
        hypercalls=h.int_("hypercalls"),
        injections=h.int_("injections"),
        wakeups=h.int_("wakeups"),
        timer_events=h.int_("timer_events"),
        duration_s=h.float_("duration_s"),
        cpu_s=h.float_("cpu_s"),
    )
    _check_rate(h, "wakeups_per_s", host.wakeups_per_s)
    _check_rate(h, "timer_events_per_s", host.timer_events_per_s)
    _check_rate(h, "injections_per_s", host.injections_per_s)
    h.check_no_extra()
    return host
