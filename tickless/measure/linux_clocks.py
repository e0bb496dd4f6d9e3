"""What a Linux guest's clocks did, seen from inside and from outside.

Inside: the stock kernel's workload samples every clock it has (``guest/linux/drivers/
tickless/clocks.c``), each beside a reading of the group's timeline, at the start and every
few guest seconds; two samples give each clock's rate against the timeline
(``clock_agreement_ppm``). Outside: the console's lines carry printk's time and the host
stamps each with the wall time its first byte arrived, so printk seconds per wall second
(``console_time_ratio``) checks the dilation without trusting anything in the guest; and
the console says which clocksources the kernel gave up on (``clocksource_unstable``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from scipy import stats

from tickless.guest import abi
from tickless.vmm.linux_boot import read_clock_samples, tsc_told_khz
from tickless.vmm.machine import GuestMachine

# The HPET's 32-bit main counter wraps every 42.9 s at 100 MHz: samples further apart than
# this cannot be trusted to have seen every wrap (the guest extends the counter at each
# sample; they come every 5 s in idle, but only at the start and end of measure).
HPET_TRUSTED_SPAN_NS = 40_000_000_000
MIN_RATIO_SPAN_S = 1.0
# A clock's two readings closer than this say nothing of its rate: jiffies (a 10 ms
# quantum) start over when the tick changes mode, which can come late in a run
MIN_AGREEMENT_SPAN_NS = 1_000_000_000  # console lines over less wall time than this give no ratio
_UNSTABLE = (
    re.compile(r"Marking clocksource '([^']+)' as unstable"),
    re.compile(r"(tsc): Marking TSC unstable"),
)
_PRINTK = re.compile(r"^\[\s*(\d+\.\d+)\]")
_TSC_REFINED = re.compile(r"tsc: Refined TSC clocksource calibration: (\d{1,7}\.\d{3}) MHz")


@dataclass(frozen=True)
class GuestClocks:
    clock_agreement_ppm: dict[str, float | None] | None
    clocksource_unstable: list[str]
    console_time_ratio: float | None

    def fields(self) -> dict[str, Any]:
        """The record's fields, by their names."""
        return {
            "clock_agreement_ppm": self.clock_agreement_ppm,
            "clocksource_unstable": list(self.clocksource_unstable),
            "console_time_ratio": self.console_time_ratio,
        }


def agreement_ppm(
    first: abi.ClockSample, last: abi.ClockSample, samples: int = 2
) -> dict[str, float | None]:
    """Each clock's rate against the timeline between the first and the last of
    ``samples`` samples, in ppm (None: the kernel does not have it, or the samples cannot
    say: less than ``MIN_AGREEMENT_SPAN_NS`` between them, samples further apart than an
    HPET wrap). Clocks and
    timeline come from an untrusted guest: nonsense gives None."""
    out: dict[str, float | None] = {}
    for bit, name in enumerate(abi.CLOCK_NAMES):
        value: float | None = None
        if (first.valid >> bit) & 1 and (last.valid >> bit) & 1:
            clock = int(getattr(last, f"{name}_ns")) - int(getattr(first, f"{name}_ns"))
            timeline = int(getattr(last, f"{name}_at_ns")) - int(getattr(first, f"{name}_at_ns"))
            gap = timeline // max(1, samples - 1)  # the guest extends the counter at each
            trusted = name != "hpet" or gap <= HPET_TRUSTED_SPAN_NS
            if timeline >= MIN_AGREEMENT_SPAN_NS and trusted:
                value = round((clock / timeline - 1) * 1e6, 1)
        out[name] = value
    return out


def unstable_clocksources(console: str) -> list[str]:
    """Every clocksource the kernel marked unstable, in the order it said so."""
    found: list[str] = []
    for line in console.splitlines():
        for pattern in _UNSTABLE:
            match = pattern.search(line)
            if match and match.group(1) not in found:
                found.append(match.group(1))
    return found


def printk_seconds(line: str) -> float | None:
    """printk's time stamp of a console line, if it has one."""
    match = _PRINTK.match(line)
    return float(match.group(1)) if match else None


def time_ratio(stamps: list[tuple[int, float]]) -> float | None:
    """printk seconds per wall second: the Theil-Sen slope (the median of every pair's)
    over (wall ns, printk s), robust to the few lines a busy host stamped milliseconds
    late (a stamp waits for the vCPU thread and Python's lock); None for fewer than three
    lines or less than ``MIN_RATIO_SPAN_S`` of wall time."""
    if len(stamps) < 3:
        return None
    wall = np.array([w for w, _ in stamps], dtype=np.float64) / 1e9
    printk = np.array([p for _, p in stamps], dtype=np.float64)
    if wall.max() - wall.min() < MIN_RATIO_SPAN_S:
        return None
    slope = stats.theilslopes(printk, wall - wall.min())[0]
    return round(float(slope), 6)


def workload_stamps(
    lines: list[tuple[int, str]], marker: str = "tickless: "
) -> list[tuple[int, float]]:
    """(wall ns, printk s) of our workload's lines from the first that announces the kernel
    (``tickless: Linux``) on: boot's own lines come before sched_clock counts guest time."""
    out: list[tuple[int, float]] = []
    started = False
    for wall_ns, text in lines:
        started = started or f"{marker}Linux " in text
        seconds = printk_seconds(text)
        if started and marker in text and seconds is not None:
            out.append((wall_ns, seconds))
    return out


def fleet_clocks(each: list[GuestClocks]) -> GuestClocks:
    """A fleet's clocks: each clock's rate furthest from the timeline in any guest and
    every clocksource any guest gave up on (one guest's clocks can fail where the others'
    hold), and the median console ratio: that one is the host's view, and a saturated host
    stamps some guest's few lines tens of ms late (``console_ratio_note`` gives the range)."""
    names = {name for c in each for name in (c.clock_agreement_ppm or {})}
    worst: dict[str, float | None] | None = None
    if any(c.clock_agreement_ppm is not None for c in each):
        worst = {}
        for name in sorted(names):
            values = [v for c in each if (v := (c.clock_agreement_ppm or {}).get(name)) is not None]
            worst[name] = max(values, key=abs) if values else None
    unstable: list[str] = []
    for c in each:
        unstable += [name for name in c.clocksource_unstable if name not in unstable]
    ratios = [c.console_time_ratio for c in each if c.console_time_ratio is not None]
    ratio = round(float(np.median(ratios)), 6) if ratios else None
    return GuestClocks(worst, unstable, ratio)


def console_ratio_note(each: list[GuestClocks]) -> str | None:
    """The spread of a fleet's console ratios (None for fewer than two)."""
    ratios = sorted(c.console_time_ratio for c in each if c.console_time_ratio is not None)
    if len(ratios) < 2:
        return None
    return (
        f"printk s per wall s: median of {len(ratios)} guests; they ranged {ratios[0]:.4f} to "
        f"{ratios[-1]:.4f} (the host stamps a line when its vCPU thread writes it: late on "
        "a busy host)"
    )


_SWITCHED = re.compile(r"clocksource: Switched to clocksource (\S+)")


def console_clocks(lines: list[tuple[int, str]]) -> list[str]:
    """What any Linux kernel's console says of its clocks, for ``tickless console``: the
    clocksource it ended on, the ones it marked unstable, and printk seconds per wall
    second over our workload's lines or, for a kernel without it, every line after its
    last clocksource switch (its printk time is on its final clocks from there)."""
    text = "\n".join(line for _, line in lines)
    switched = _SWITCHED.findall(text)
    stamps = workload_stamps(lines)
    if not stamps:
        last = max((i for i, (_, line) in enumerate(lines) if _SWITCHED.search(line)), default=0)
        stamps = [
            (wall_ns, seconds)
            for wall_ns, line in lines[last:]
            if (seconds := printk_seconds(line)) is not None
        ]
    ratio = time_ratio(stamps)
    unstable = unstable_clocksources(text)
    return [
        f"clocksource: {switched[-1] if switched else 'not said'}",
        f"clocksources marked unstable: {', '.join(unstable) or 'none'}",
        f"printk s per wall s: {'too few lines' if ratio is None else f'{ratio:.4f}'}",
    ]


def guest_clocks(machine: GuestMachine) -> GuestClocks:
    """A Linux guest's clocks: its samples (if it took two), its console's word on
    unstable clocksources, and its printk time against the host's wall time."""
    samples = read_clock_samples(machine.memory, machine.boot.layout)
    agreement = None if samples is None else agreement_ppm(*samples)
    console = machine.console
    return GuestClocks(
        clock_agreement_ppm=agreement,
        clocksource_unstable=unstable_clocksources(console.text()),
        console_time_ratio=time_ratio(workload_stamps(list(console.lines))),
    )


def stock_tsc_note(console: str, tsc_hz: int, rate: Fraction) -> str:
    """How a stock kernel learnt its TSC's rate in guest time: told at boot
    (``tsc_told_khz``), then Linux's own refinement against the dilated HPET, if it
    completed, and how far that is from the host's TSC rate / R. The console is the
    guest's: parsed for numbers only."""
    want_khz = Fraction(tsc_hz, 1000) / rate
    refined = _TSC_REFINED.findall(console)
    if refined:
        mhz = Fraction(refined[-1])
        ppm = float((mhz * 1000 / want_khz - 1) * 1_000_000)
        how = f"refined by Linux against the dilated HPET: {float(mhz):.3f} MHz ({ppm:+.0f} ppm)"
    else:
        how = "not refined (above R ~ 2 this host's HPET reads are too slow for Linux's refinement)"
    return (
        "stock kernel: Linux's own clocks (no kvm-clock, TSC_ADJUST cleared so that its "
        f"watchdog checks the TSC); its TSC told tsc_early_khz={tsc_told_khz(tsc_hz, rate)} "
        f"at boot, {how}"
    )
