"""What a fleet run asks for: its guests, host CPUs, I/O and model, checked in one place
(the CLI turns each refusal into one line), and what it will cost in memory.

Time that bends: ``rate`` is guest seconds per wall second. Whatever a guest schedules
(``duration_ns``, its timers, its tick, the measure interval) is guest time; what the host
spends or schedules (``slop_ns``, I/O arrival rates and handler times, the cost model) is
wall time. With ``warp_idle`` every VM's clock jumps to its next deadline whenever it idles
(``tickless.sim.warp``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from tickless.guest.abi import MAX_DELTA_NS, MIN_DELTA_NS, MIN_PERIOD_NS
from tickless.results.paper import PAPER_EVENTS
from tickless.sim import guest_model as gm
from tickless.sim.cost import CostModel, resolve_cost_model
from tickless.sim.layout import BYTES_PER_GUEST, N_CPU_FIELDS

SECOND_NS = 1_000_000_000
MAX_DURATION_NS = 30 * 24 * 3600 * SECOND_NS  # keeps every sum of times far inside int64
MAX_CPUS = 4096
REPORT_BYTES_PER_GUEST = 2_000  # its per_guest entry: Python objects and JSON text
IO_BYTES_PER_ARRIVAL = 40  # int64 time and handler, plus the float64 draws while building
MEMORY_HEADROOM = 0.8  # use at most this share of the memory available now
MIN_RATE, MAX_RATE = Fraction(1, 1000), Fraction(1000)  # as --dilation of tickless measure


@dataclass(frozen=True)
class IoSource:
    """Host device interrupts: Poisson arrivals at ``rate_per_s`` on host CPU ``cpu``, each
    keeping it busy for ``handler_ns`` (timer wake-ups wait for the handler to finish)."""

    rate_per_s: float
    handler_ns: int
    cpu: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        return {"rate_per_s": self.rate_per_s, "handler_ns": self.handler_ns, "cpu": self.cpu}


@dataclass(frozen=True)
class FleetSpec:
    """A fleet run. ``mode`` and ``workload`` may list several values (comma-separated):
    they are dealt to guests round-robin, so fleets can mix kinds of guests."""

    guests: int = 10
    mode: str = "periodic"
    hz: int = 1000
    duration_ns: int = 60 * SECOND_NS
    cpus: int = 2
    slop_ns: int = 0
    workload: str = "idle"
    placement: str = "round-robin"  # round-robin | block | cpu:N (all vCPUs pinned to N)
    housekeeping_ns: tuple[int, ...] = (1 * SECOND_NS, 4 * SECOND_NS)
    measure_count: int = PAPER_EVENTS
    measure_interval_ns: int = 1_000_000
    io: tuple[IoSource, ...] = ()
    seed: int = 0
    cost_model: str = "box"
    rate: Fraction = Fraction(1)  # time dilation: guest seconds per wall second
    warp_idle: bool = False  # an idle VM's clock jumps to its next deadline

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", Fraction(self.rate))
        problem = self._problem()
        if problem:
            raise ValueError(problem)
        # A name or a fitted model's file, read once: the run uses the model as it was then.
        object.__setattr__(self, "_cost", resolve_cost_model(self.cost_model))

    def _problem(self) -> str | None:
        """The first thing wrong with the spec, as one line, or None."""
        if self.guests < 1:
            return "--guests must be at least 1"
        unknown = [m for m in self.modes if m not in gm.MODES]
        if unknown:
            return f"unknown mode {unknown[0]!r}: use {', '.join(gm.MODES)}"
        unknown = [w for w in self.workloads if w not in gm.WORKLOADS]
        if unknown:
            return f"unknown workload {unknown[0]!r}: use {', '.join(gm.WORKLOADS)}"
        if not 1 <= self.hz <= 10_000:
            return "--hz must be between 1 and 10000"
        if not 0 < self.duration_ns <= MAX_DURATION_NS:
            return "--duration must be positive and at most 30 days"
        if not 1 <= self.cpus <= MAX_CPUS:
            return f"--cpus must be between 1 and {MAX_CPUS}"
        if not 0 <= self.slop_ns <= SECOND_NS:
            return "--slop must be between 0 and 1s"
        if self.placement not in ("round-robin", "block") and not self._pinned_ok():
            return f"--placement {self.placement!r}: use round-robin, block or cpu:N (N < cpus)"
        if len(self.housekeeping_ns) > gm.N_HOUSEKEEPING or not all(
            MIN_PERIOD_NS <= p <= MAX_DELTA_NS for p in self.housekeeping_ns
        ):
            return "at most two housekeeping timers, each between 10us and 1h"
        if self.measure_count < 1:
            return "--count must be at least 1"
        if not MIN_DELTA_NS <= self.measure_interval_ns <= MAX_DELTA_NS:
            return "--interval must be between 100ns and 1h"
        if self.seed < 0:
            return "--seed must not be negative"
        if not MIN_RATE <= self.rate <= MAX_RATE:
            return "--dilation must be between 1/1000 and 1000"
        return self._warp_problem() or self._io_problem()

    def _warp_problem(self) -> str | None:
        """What warp cannot model: a VM warps only while every vCPU idles on a deadline."""
        if not self.warp_idle:
            return None
        if "periodic" in self.modes:
            return (
                "--warp-idle needs tickless guests (--mode nohz-full or nohz-idle): "
                "a periodic tick never idles on a deadline"
            )
        if "cpu" in self.workloads:
            return "--warp-idle: busy guests (--workload cpu) never idle, so never warp"
        if self.io:
            return "--warp-idle does not model host I/O interrupts (--io)"
        return None

    def _pinned_ok(self) -> bool:
        name, _, num = self.placement.partition(":")
        return name == "cpu" and num.isdigit() and int(num) < self.cpus

    def _io_problem(self) -> str | None:
        load = [0.0] * self.cpus
        for src in self.io:
            if not 0 < src.rate_per_s <= 10_000_000 or src.handler_ns < 0:
                return "--io: rate must be in (0, 1e7]/s and handler time not negative"
            if not 0 <= src.cpu < self.cpus:
                return f"--io: cpu {src.cpu} does not exist (--cpus {self.cpus})"
            load[src.cpu] += src.rate_per_s * src.handler_ns / SECOND_NS
        busiest = max(range(self.cpus), key=load.__getitem__)
        if load[busiest] >= 1.0:
            return f"--io keeps cpu {busiest} busy {100 * load[busiest]:.0f} % of the time"
        return None

    @property
    def modes(self) -> list[str]:
        return self.mode.split(",")

    @property
    def workloads(self) -> list[str]:
        return self.workload.split(",")

    @property
    def period_ns(self) -> int:
        """The tick period: TICK_NSEC, NSEC_PER_SEC / HZ rounded to nearest."""
        return (SECOND_NS + self.hz // 2) // self.hz

    @property
    def cost(self) -> CostModel:
        cost: CostModel = self.__dict__["_cost"]
        return cost

    def guest_ns(self, wall_ns: float) -> int:
        """A host (wall) span as the guests' clocks see it, rounded to the nearest ns."""
        return round(Fraction(wall_ns) * self.rate)

    def wall_s(self, guest_ns: int) -> float:
        """A span of guest time, in wall seconds when the guests' clocks run at ``rate``."""
        return float(Fraction(guest_ns, SECOND_NS) / self.rate)

    def io_arrivals_expected(self) -> float:
        """I/O rates are per wall second; a run without warp lasts duration / rate of wall."""
        return sum(src.rate_per_s for src in self.io) * self.wall_s(self.duration_ns)

    def memory_bytes(self) -> int:
        """What the run will hold: the struct of arrays, the result, the I/O arrivals."""
        per_guest = BYTES_PER_GUEST + REPORT_BYTES_PER_GUEST
        io = IO_BYTES_PER_ARRIVAL * (self.io_arrivals_expected() * 1.01 + 64 * len(self.io))
        return int(self.guests * per_guest + io + self.cpus * 8 * N_CPU_FIELDS)

    def expected_events(self) -> float:
        """A rough count of simulated events, to decide whether a progress bar is worth it."""
        pattern = math.lcm(len(self.modes), len(self.workloads))
        kinds = [
            (
                gm.MODES[self.modes[g % len(self.modes)]],
                gm.WORKLOADS[self.workloads[g % len(self.workloads)]],
            )
            for g in range(pattern)
        ]
        per_guest_per_s = sum(self.hz if gm.ticking(m, w) else 2 for m, w in kinds) / pattern
        timers = per_guest_per_s * self.guests * self.duration_ns / SECOND_NS
        return timers + self.io_arrivals_expected()


def available_memory_bytes() -> int:
    """Memory free right now (``os.sysconf``), the budget a run must fit in."""
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(spec: FleetSpec, available: int | None = None) -> None:
    """Refuse, in one line, a fleet that would not fit in memory (before allocating any)."""
    budget = int(MEMORY_HEADROOM * (available_memory_bytes() if available is None else available))
    need = spec.memory_bytes()
    if need > budget:
        per_guest = BYTES_PER_GUEST + REPORT_BYTES_PER_GUEST
        fits = max(0, (budget - need + spec.guests * per_guest) // per_guest)
        raise MemoryError(
            f"{spec.guests:,} guests need ~{need / 2**30:,.1f} GiB but only "
            f"{budget / 2**30:.1f} GiB is available: at most ~{fits:,} guests fit"
        )
