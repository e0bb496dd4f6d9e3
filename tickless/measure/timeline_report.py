"""What a run's timeline did to time, for notes and records: guest time against wall
time, the dilation, the warps and the freezes."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from tickless.timers.timeline import TimelineTotals

NS_PER_S = 1e9


@dataclass(frozen=True)
class TimeSummary:
    """A run's times in seconds (the fleet record's ``guest_time_s`` and neighbours)."""

    guest_time_s: float
    wall_time_s: float
    warped_s: float
    warps: int
    frozen_s: float
    dilation: str

    @classmethod
    def of(cls, totals: TimelineTotals, rate: Fraction) -> TimeSummary:
        return cls(
            guest_time_s=totals.guest_ns / NS_PER_S,
            wall_time_s=totals.wall_ns / NS_PER_S,
            warped_s=totals.warped_ns / NS_PER_S,
            warps=totals.warps,
            frozen_s=totals.frozen_ns / NS_PER_S,
            dilation=str(rate),
        )


def timeline_notes(totals: TimelineTotals, rate: Fraction) -> list[str]:
    """One line when time was bent (dilated, warped, frozen or re-rated), else none."""
    if rate == 1 and not (totals.warps or totals.frozen_ns or totals.rate_changes):
        return []
    t = TimeSummary.of(totals, rate)
    line = (
        f"time: {t.guest_time_s:.3f} s of guest time in {t.wall_time_s:.3f} s of wall time "
        f"(dilation {t.dilation}, boot included)"
    )
    if t.warps:
        line += f"; warped over {t.warped_s:.3f} s of idle guest time in {t.warps} warps"
    if totals.take_timeouts:
        line += (
            f"; {totals.take_timeouts} warps stopped waiting for a woken guest to take its "
            "interrupt (10 ms)"
        )
    if t.frozen_s:
        line += f"; frozen for {t.frozen_s:.3f} s of wall time"
    if totals.rate_changes:
        line += f"; the rate changed {totals.rate_changes} times"
    return [line]
