"""What a guest is asked to run."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from tickless.axes import GuestKind, Method, TickMode, TimerPath, Wait
from tickless.errors import InputError
from tickless.guest.abi import (
    LINUX_MAX_EVENTS,
    LINUX_RAM_BYTES,
    MAX_EVENTS,
    MIN_MEMORY_BYTES,
    RESULTS_GPA,
    Scenario,
)
from tickless.host.realtime import RealtimePolicy

HUGE_PAGE = 2 << 20
SECOND_NS = 1_000_000_000


@dataclass(frozen=True)
class GuestConfig:
    guest: GuestKind = GuestKind.SMALL
    kernel_path: Path | None = None  # Linux: a user's vmlinux (None: the one we build)
    scenario: Scenario = Scenario.MEASURE
    timer: TimerPath = TimerPath.PV
    method: Method = Method.RELATIVE
    wait: Wait = Wait.HALT
    mode: TickMode = TickMode.TICKLESS
    interval_ns: int = 100_000
    count: int = 0
    hz: int = 1000
    duration_ns: int = 0
    housekeeping_ns: tuple[int, int] = (1 * SECOND_NS, 4 * SECOND_NS)
    housekeeping_phase_ns: int = 0  # idle: its timers run as if it started this long ago
    rate: Fraction = Fraction(1)  # guest seconds per host second (time dilation)
    halt_poll_ns: int | None = None  # None: the host's default
    max_hypercall_rate: float = 50_000.0
    io_rate_per_s: float = 0.0  # I/O interrupts into the timer's vCPU (0: none)
    io_handler_ns: int = 20_000  # how long the guest's I/O handler stays busy
    hold_back_ns: int = 0  # precise: hold other interrupts back this long before a deadline
    spin_threshold_ns: int = 200_000  # precise: closer deadlines are spun to, no interrupt
    second_vcpu_busy: bool = False  # CPU load inside the VM: vCPU 1 runs a busy loop
    vcpu_policy: RealtimePolicy | None = None  # pin / SCHED_FIFO the vCPU thread
    seed: int = 0
    watchdog_s: float | None = None  # stop it after this long busy without progress
    explain: bool = False  # pv: the guest records each event's wake-up and clock gaps too

    def __post_init__(self) -> None:
        if self.guest is GuestKind.LINUX and self.count > LINUX_MAX_EVENTS:
            raise InputError(f"a Linux guest records at most {LINUX_MAX_EVENTS:,} events")
        if not 0 <= self.count <= MAX_EVENTS:
            raise InputError(f"count must be between 1 and {MAX_EVENTS:,}")
        if self.interval_ns <= 0:
            raise InputError("interval must be positive")
        if self.hz <= 0 or self.hz > 100_000:
            raise InputError("hz must be between 1 and 100000")
        if self.rate <= 0:
            raise InputError("time dilation rate must be positive")
        if self.io_rate_per_s < 0 or self.io_rate_per_s > 100_000:
            raise InputError("the I/O interrupt rate must be between 0 and 100000/s")
        if self.io_handler_ns < 0 or self.hold_back_ns < 0 or self.spin_threshold_ns < 0:
            raise InputError("handler cost, hold-back window and spin threshold must be >= 0")
        if self.max_hypercall_rate < 100:
            raise InputError("the hypercall rate limit must be at least 100/s")

    @property
    def period_ns(self) -> int:
        return SECOND_NS // self.hz

    @property
    def results_capacity(self) -> int:
        """Timestamps the guest may write: one reference plus one per event."""
        return self.count + 1

    @property
    def results_arrays(self) -> int:
        """u64 arrays of results_capacity: timestamps, and with explain the ring-3 wake-up
        time and the longest clock gap seen while spinning, per event."""
        return 3 if self.explain else 1

    @property
    def memory_bytes(self) -> int:
        if self.guest is GuestKind.LINUX:
            return LINUX_RAM_BYTES
        need = RESULTS_GPA + self.results_capacity * 8 * self.results_arrays
        return max(MIN_MEMORY_BYTES, -(-need // HUGE_PAGE) * HUGE_PAGE)
