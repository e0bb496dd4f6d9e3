"""A cron run: guests that live by timers, on one timeline (``tickless cron``).

Each guest runs a schedule of periodic timers and records, for every run, the timer, its
deadline and the time it ran — all in guest time. The guests of a run share one clock
(dilated, warpable), and their schedules count from one origin, so the merged sequence of
events says whether bending time kept them in the order real time would: every run at or
after its deadline, deadlines further apart than the resolution run in deadline order,
and with a fixed seed and warp on the sequence is the same run to run (its hash).

A guest on ``pv`` (or warped) spins to its deadline after the interrupt before it runs its
timers, so "no run early" holds there by construction; the record also keeps when the
interrupt each wake-up was for reached the guest (``interrupt_*``, per run the wake-up was
for), early on purpose by the PV device's advance, and what the spin cost (``spin_cpu_s``).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from tickless.axes import TimerPath
from tickless.errors import InputError
from tickless.guest.abi import CRON_MAX_TIMERS, MAX_DELTA_NS
from tickless.timers.clock import NSEC_PER_SEC

KIND = "cron"
VERSION = 2  # 2: interrupt_* and spin_cpu_s
MIN_PERIOD_NS = 1_000_000
# First runs are drawn on a grid of the resolution, distinct in the group: deadlines of
# different timers are then at least that far apart (or equal), and runs must keep their
# order. Host scheduling on this machine delays a wake-up by milliseconds now and then
# (README, "Bending time"), hence 10 ms.
DEFAULT_RESOLUTION_NS = 10_000_000
MAX_CRON_GUESTS = 64
MAX_RUNS_PER_GUEST = 200_000  # the guest's record buffer (runs beyond it are counted only)


@dataclass(frozen=True)
class CronSpec:
    periods_ns: tuple[int, ...]  # each guest's timers
    duration_ns: int  # guest time, from the common origin
    guests: int = 1
    rate: Fraction = Fraction(1)
    warp_idle: bool = False
    seed: int = 0
    timer: TimerPath = TimerPath.PV
    resolution_ns: int = DEFAULT_RESOLUTION_NS

    def __post_init__(self) -> None:
        if not 1 <= len(self.periods_ns) <= CRON_MAX_TIMERS:
            raise InputError(f"--every takes 1 to {CRON_MAX_TIMERS} timer periods")
        if any(not MIN_PERIOD_NS <= p <= MAX_DELTA_NS for p in self.periods_ns):
            raise InputError("--every: a timer period must be between 1ms and 1h")
        if not MIN_PERIOD_NS <= self.resolution_ns <= min(self.periods_ns):
            raise InputError("--resolution must be between 1ms and the shortest period")
        if not 1 <= self.guests <= MAX_CRON_GUESTS:
            raise InputError(f"--guests must be between 1 and {MAX_CRON_GUESTS}")
        if self.duration_ns < MIN_PERIOD_NS:
            raise InputError("--duration must be at least 1ms")
        if self.expected_runs_per_guest > MAX_RUNS_PER_GUEST:
            raise InputError(
                f"that schedule makes {self.expected_runs_per_guest:,} runs a guest; "
                f"at most {MAX_RUNS_PER_GUEST:,} are recorded (shorten --duration)"
            )
        if self.timer not in (TimerPath.PV, TimerPath.LGUEST):
            raise InputError("a cron guest waits on --timer pv or lguest")

    @property
    def expected_runs_per_guest(self) -> int:
        return sum(self.duration_ns // p + 1 for p in self.periods_ns)

    def schedules(self) -> list[tuple[tuple[int, int], ...]]:
        """Per guest, (period, first run after the origin) per timer: first runs drawn from
        the seed on the resolution's grid, distinct across the group."""
        rng = np.random.default_rng(self.seed)
        taken: set[int] = set()
        out = []
        for _ in range(self.guests):
            timers = []
            for period in self.periods_ns:
                slots = max(1, period // self.resolution_ns)
                for _attempt in range(64):
                    first = (1 + int(rng.integers(0, slots))) * self.resolution_ns
                    if first not in taken:
                        break
                taken.add(first)
                timers.append((period, first))
            out.append(tuple(timers))
        return out


@dataclass
class CronEvent:
    guest: int
    timer: int
    deadline_ns: int  # guest time, from the timeline's start
    ran_ns: int
    woke_ns: int = 0  # when the interrupt of the wake-up it was due at arrived (0: none)


@dataclass
class CronRecord:
    """One cron run; ``tickless cron --json`` writes it (``kind`` = "cron")."""

    periods_ns: list[int]
    guests: int
    duration_s: float
    dilation: str
    warp_idle: bool
    seed: int
    timer: str
    origin_ns: int
    runs: int = 0  # timer runs the guests made (recorded or not)
    early: int = 0  # runs before their deadline in guest time (must be 0)
    lateness_mean_ns: float = 0.0  # ran - deadline, guest time
    lateness_max_ns: int = 0
    out_of_order: int = 0  # neighbours whose run order contradicts deadlines > resolution apart
    resolution_ns: int = DEFAULT_RESOLUTION_NS
    sequence_sha256: str = ""  # of (guest, timer, deadline - origin) in the order they ran
    guest_time_s: float = 0.0  # the group's clock over the run (boot included)
    wall_time_s: float = 0.0
    warped_s: float = 0.0
    warps: int = 0
    blocks: int = 0
    host_wakeups: int = 0
    host_cpu_s: float = 0.0
    interrupts: int = 0  # runs whose wake-up came by an interrupt, timed before any spin
    interrupt_early: int = 0  # of those, interrupts before the run's deadline (the advance)
    interrupt_lateness_mean_ns: float | None = None  # interrupt arrival - deadline, guest time
    interrupt_lateness_max_ns: int | None = None
    spin_cpu_s: float = 0.0  # guest time spent spinning to deadlines (guest s / dilation)
    partial: bool = False
    notes: list[str] = field(default_factory=list)
    events: list[list[int]] = field(default_factory=list)  # [guest, timer, deadline, ran]
    interrupt_lateness_ns: list[int] = field(default_factory=list)  # per interrupt, run order
    kind: str = KIND
    version: int = VERSION

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def merge_events(
    per_guest: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]],
    wakes: list[npt.NDArray[np.int64]] | None = None,
) -> list[CronEvent]:
    """Every guest's (ran, deadline, timer) arrays as one sequence in the order the runs
    happened on the shared clock (ties: by guest, then deadline); ``wakes``: per guest,
    when each run's interrupt arrived (``checked_wakes``)."""
    woke = wakes or [np.zeros(len(runs[0]), dtype=np.int64) for runs in per_guest]
    events = [
        CronEvent(g, int(t), int(d), int(r), int(w))
        for g, ((ran, deadline, timer), wk) in enumerate(zip(per_guest, woke, strict=True))
        for r, d, t, w in zip(ran, deadline, timer, wk, strict=True)
    ]
    events.sort(key=lambda e: (e.ran_ns, e.guest, e.deadline_ns))
    return events


def checked_wakes(ran: npt.NDArray[np.int64], woke: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """A guest's wake times, untrusted: one that is not after the guest's previous distinct
    run time and at or before its own run is dropped (0)."""
    before = np.searchsorted(ran, ran, side="left") - 1
    floor = np.where(before >= 0, ran[np.maximum(before, 0)], 0)
    fits = (woke > floor) & (woke <= ran)
    kept: npt.NDArray[np.int64] = np.where(fits, woke, 0)
    return kept


def canonical_order(events: list[CronEvent]) -> list[CronEvent]:
    """The run order, with runs of one deadline (timers of different guests that are due
    together: their order is not the design's to keep) by guest and timer."""
    out: list[CronEvent] = []
    for _, tied in itertools.groupby(events, key=lambda e: e.deadline_ns):
        out.extend(sorted(tied, key=lambda e: (e.guest, e.timer)))
    return out


def summarize(record: CronRecord, events: list[CronEvent]) -> None:
    """Fill ``record``'s checks from the merged events."""
    record.events = [[e.guest, e.timer, e.deadline_ns, e.ran_ns] for e in events]
    late = np.array([e.ran_ns - e.deadline_ns for e in events], dtype=np.int64)
    record.early = int(np.count_nonzero(late < 0))
    if late.size:
        record.lateness_mean_ns = float(late.mean())
        record.lateness_max_ns = int(late.max())
    irq = np.array([e.woke_ns - e.deadline_ns for e in events if e.woke_ns], dtype=np.int64)
    record.interrupt_lateness_ns = irq.tolist()
    record.interrupts, record.interrupt_early = int(irq.size), int(np.count_nonzero(irq < 0))
    if irq.size:
        record.interrupt_lateness_mean_ns = float(irq.mean())
        record.interrupt_lateness_max_ns = int(irq.max())
    record.out_of_order = sum(
        1
        for a, b in itertools.pairwise(events)
        if a.deadline_ns - b.deadline_ns > record.resolution_ns
    )
    digest = hashlib.sha256()  # deadlines from the origin: "now" differs run to run
    for e in canonical_order(events):
        digest.update(f"{e.guest},{e.timer},{e.deadline_ns - record.origin_ns};".encode())
    record.sequence_sha256 = digest.hexdigest()


def seconds(ns: int) -> float:
    return ns / NSEC_PER_SEC
