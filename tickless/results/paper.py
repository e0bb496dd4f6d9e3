"""Table 1 of Adamczyk & Chydzinski, PLoS ONE 10(7): e0130887 (2015), as reference data.

4500 timer events every d µs inside a VM, for 4 intervals x 2 loads x 7 platforms, with the mean
interval, the uncorrected sd and a confidence interval labelled "99%". Those intervals are in fact
about ±1.96·sd/√n wide, i.e. 95% normal intervals: wherever a CI is wide enough for the table's
3-decimal rounding not to matter, its implied z (``stats.implied_z``, n = 4500) is 1.97-1.99,
never near the 2.58 a 99% interval needs (z, or t with 4499 degrees of freedom).
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources

from tickless.axes import Load

__all__ = [
    "INTERVALS_US",
    "LOADS",
    "PAPER_EVENTS",
    "PAPER_IDLE_IRQ_RATE_PER_S",
    "PAPER_IO_RATE_PER_S",
    "PLATFORMS",
    "PaperRow",
    "nearest_setting_us",
    "paper_rows",
]

PLATFORMS: tuple[str, ...] = (
    "VMware",
    "VirtualBox",
    "QEMU",
    "KVM",
    "Xen",
    "new timers",
    "Linux",
)
INTERVALS_US: tuple[int, ...] = (10, 50, 100, 150)
LOADS: tuple[str, ...] = (Load.IDLE, Load.IO)
PAPER_EVENTS = 4500  # timer events per setting, the n behind each mean and CI
# Interrupts per second on the timer's CPU, as the paper's text gives them (its Fig 7):
PAPER_IO_RATE_PER_S = 1733.35  # heavy disk reads pinned to the timer's CPU (load "io")
PAPER_IDLE_IRQ_RATE_PER_S = 11.52  # the idle system's background

_DATA_FILE = "data/paper_table1.csv"


@dataclass(frozen=True)
class PaperRow:
    """One cell group of Table 1, in the paper's unit (µs)."""

    interval_us: int
    load: str
    platform: str
    mean_us: float
    sd_us: float
    ci99_low_us: float
    ci99_high_us: float


@functools.cache
def _all_rows() -> tuple[PaperRow, ...]:
    """Parse the packaged CSV once; a tuple so the cached value cannot be mutated by callers."""
    text = resources.files("tickless.results").joinpath(_DATA_FILE).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return tuple(
        PaperRow(
            interval_us=int(row["interval_us"]),
            load=row["load"],
            platform=row["platform"],
            mean_us=float(row["mean_us"]),
            sd_us=float(row["sd_us"]),
            ci99_low_us=float(row["ci99_low_us"]),
            ci99_high_us=float(row["ci99_high_us"]),
        )
        for row in csv.DictReader(lines)
    )


def paper_rows(interval_us: int | None = None, load: str | None = None) -> list[PaperRow]:
    """Rows of Table 1 in the paper's order, optionally only one interval and/or load."""
    return [
        row
        for row in _all_rows()
        if (interval_us is None or row.interval_us == interval_us)
        and (load is None or row.load == load)
    ]


def nearest_setting_us(interval_ns: int) -> int | None:
    """The paper's interval (µs) equal to ``interval_ns``, else None: only exact matches compare."""
    interval_us, remainder_ns = divmod(interval_ns, 1000)
    if remainder_ns == 0 and interval_us in INTERVALS_US:
        return interval_us
    return None
