"""What a guest is asked to run."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from tickless.guest.abi import (
    MIN_MEMORY_BYTES,
    RESULTS_GPA,
    Method,
    Scenario,
    TickMode,
    TimerKind,
    Wait,
)

MAX_EVENTS = 10_000_000
HUGE_PAGE = 2 << 20
SECOND_NS = 1_000_000_000


@dataclass(frozen=True)
class GuestConfig:
    scenario: Scenario = Scenario.MEASURE
    timer: TimerKind = TimerKind.PV
    method: Method = Method.RELATIVE
    wait: Wait = Wait.HALT
    mode: TickMode = TickMode.TICKLESS
    interval_ns: int = 100_000
    count: int = 0
    hz: int = 1000
    duration_ns: int = 0
    housekeeping_ns: tuple[int, int] = (1 * SECOND_NS, 4 * SECOND_NS)
    rate: Fraction = Fraction(1)  # guest seconds per host second (time dilation)
    halt_poll_ns: int | None = None  # None: the host's default
    max_hypercall_rate: float = 50_000.0

    def __post_init__(self) -> None:
        if not 0 <= self.count <= MAX_EVENTS:
            raise ValueError(f"count must be between 1 and {MAX_EVENTS:,}")
        if self.interval_ns <= 0:
            raise ValueError("interval must be positive")
        if self.hz <= 0 or self.hz > 100_000:
            raise ValueError("hz must be between 1 and 100000")
        if self.rate <= 0:
            raise ValueError("time dilation rate must be positive")
        if self.max_hypercall_rate < 100:
            raise ValueError("the hypercall rate limit must be at least 100/s")

    @property
    def period_ns(self) -> int:
        return SECOND_NS // self.hz

    @property
    def results_capacity(self) -> int:
        """Timestamps the guest may write: one reference plus one per event."""
        return self.count + 1

    @property
    def memory_bytes(self) -> int:
        need = RESULTS_GPA + self.results_capacity * 8
        return max(MIN_MEMORY_BYTES, -(-need // HUGE_PAGE) * HUGE_PAGE)
