"""What an idle run asks for (``IdleSpec``) and its record (``tickless idle --json``,
``kind`` = "idle").

Shared by the real idle runner (``tickless.measure.idle``) and the simulated fleet
(``tickless.sim.fleet``), which writes the same fields; neither owns it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tickless.axes import GuestKind, TickMode
from tickless.errors import InputError
from tickless.timers.clock import NSEC_PER_SEC

__all__ = ["IDLE_SCHEMA_VERSION", "MAX_GUESTS", "GuestIdleCounts", "IdleResult", "IdleSpec"]

IDLE_SCHEMA_VERSION = 1
MAX_GUESTS = 64


@dataclass(frozen=True)
class IdleSpec:
    guests: int = 10
    guest: GuestKind = GuestKind.SMALL
    kernel_path: Path | None = None  # --guest linux: a user's vmlinux (None: ours)
    mode: TickMode = TickMode.TICKLESS
    hz: int = 1000
    duration_ns: int = 2 * NSEC_PER_SEC
    housekeeping_ns: tuple[int, int] = (1 * NSEC_PER_SEC, 4 * NSEC_PER_SEC)
    slop_ns: int = 0
    halt_poll_ns: int | None = None
    realtime: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.guests <= MAX_GUESTS:
            raise InputError(f"--guests must be between 1 and {MAX_GUESTS}")
        try:
            object.__setattr__(self, "mode", TickMode(self.mode))
        except ValueError:
            raise InputError("--mode must be periodic or tickless") from None
        object.__setattr__(self, "guest", GuestKind(self.guest))
        if self.kernel_path is not None and self.guest is not GuestKind.LINUX:
            raise InputError("--kernel needs --guest linux")
        if not 1 <= self.hz <= 10_000:
            raise InputError("--hz must be between 1 and 10000")
        if self.duration_ns < 10_000_000:
            raise InputError("--duration must be at least 10ms")


@dataclass
class GuestIdleCounts:
    name: str
    timer_interrupts: int  # PV timer interrupts the guest took
    wakeups: int  # times the guest's idle loop woke
    housekeeping_runs: int  # its own timers that ran
    hypercalls: int
    exits: int
    vcpu_cpu_s: float  # host CPU of its vCPU thread (guest code included)


class IdleRates:
    """The per-second rates of an idle run, real (``IdleResult``) or simulated (the
    simulator's ``FleetResult``), from the counts both carry."""

    duration_s: float
    host_timer_wakeups: int
    host_timer_expiries: int
    process_cpu_s: float
    per_guest: Sequence[GuestIdleCounts]

    @property
    def wakeups_per_s(self) -> float:
        return self.host_timer_wakeups / self.duration_s

    @property
    def expiries_per_s(self) -> float:
        return self.host_timer_expiries / self.duration_s

    @property
    def interrupts_per_guest_per_s(self) -> float:
        total = sum(g.timer_interrupts for g in self.per_guest)
        return total / len(self.per_guest) / self.duration_s

    @property
    def cpu_percent_of_core(self) -> float:
        return 100.0 * self.process_cpu_s / self.duration_s


@dataclass
class IdleResult(IdleRates):
    """One idle run; written as JSON by ``tickless idle --json`` (``kind`` = "idle")."""

    guests: int
    mode: str
    hz: int | None
    duration_s: float
    host_timer_wakeups: int  # returns of the host timer thread from its timerfd
    host_timer_expiries: int  # guest timer events the host ran (one per injection)
    injections: int
    timer_thread_cpu_s: float
    vcpu_cpu_s: float
    process_cpu_s: float
    per_guest: list[GuestIdleCounts]
    machine: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    schema_version: int = IDLE_SCHEMA_VERSION
    kind: str = "idle"
    guest: str = GuestKind.SMALL.value
    guest_kernel: str | None = None  # Linux: the kernel release
    guest_clockevent: str | None = None  # Linux: the tick's clock-event device
    guest_clocksource: str | None = None  # Linux: the clocksource it chose
    boot_s: float = 0.0  # until every guest ran its workload (Linux: excluded from the rates)
    assists: dict[str, int] = field(default_factory=dict)  # emulator gaps filled, all guests

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["wakeups_per_s"] = self.wakeups_per_s
        d["expiries_per_s"] = self.expiries_per_s
        d["interrupts_per_guest_per_s"] = self.interrupts_per_guest_per_s
        d["cpu_percent_of_core"] = self.cpu_percent_of_core
        return d
