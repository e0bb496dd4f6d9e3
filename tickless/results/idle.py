"""What an idle run asks for (``IdleSpec``) and its record (``tickless idle --json``,
``kind`` = "idle").

Shared by the real idle runner (``tickless.measure.idle``) and the simulated fleet
(``tickless.sim.fleet``), which writes the same fields; neither owns it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

from tickless.axes import GuestKind, LinuxDrivers, TickMode, TimerPath, check_stock
from tickless.errors import InputError
from tickless.guest.abi import PV_IDLE_WAYS
from tickless.timers.clock import NSEC_PER_SEC

__all__ = [
    "IDLE_SCHEMA_VERSION",
    "GuestIdleCounts",
    "IdleResult",
    "IdleSpec",
    "RampStep",
    "fleet_fields",
    "time_fields",
]

# 2: the fleet fields (boot rate, RSS and steady CPU after boot, wake-ups against guest
# interrupts, missed ticks and the saturation ramp); version 1 records read with them unset.
# 3: time that bends: ``dilation``, ``guest_time_s``, ``wall_time_s``, ``warped_s``; older
# records read as dilation 1, no warp, guest time = wall time = ``duration_s``.
# 4: a Linux guest's clocks: ``clock_agreement_ppm``, ``clocksource_unstable`` and
# ``console_time_ratio`` (measure/linux_clocks.py); older records read as null (not known).
# 5: the whole host over the window: ``host_busy_percent_of_core``,
# ``other_tasks_percent_of_core``, ``other_tasks_top`` (host/hostcpu.py); older: null.
IDLE_SCHEMA_VERSION = 5
DEFAULT_MISS_THRESHOLD = 0.05  # a ramp step that misses more ticks than this saturates


@dataclass(frozen=True)
class IdleSpec:
    guests: int = 10
    guest: GuestKind = GuestKind.SMALL
    kernel_path: Path | None = None  # --guest linux: a user's vmlinux (None: ours)
    linux_drivers: LinuxDrivers = LinuxDrivers.TICKLESS  # --guest linux: our clocks, or its own
    mode: TickMode = TickMode.TICKLESS
    hz: int = 1000
    duration_ns: int = 2 * NSEC_PER_SEC
    housekeeping_ns: tuple[int, int] = (1 * NSEC_PER_SEC, 4 * NSEC_PER_SEC)
    slop_ns: int = 0
    halt_poll_ns: int | None = None
    realtime: bool = True
    ramp_step: int | None = None  # periodic: guests added per ramp step (None: a tenth)
    miss_threshold: float = DEFAULT_MISS_THRESHOLD
    seed: int = 0  # the guests' housekeeping phases are drawn from it
    timer: TimerPath | None = None  # None: pv for tickless small guests, else lguest
    rate: Fraction = Fraction(1)  # time dilation: guest seconds per wall second
    warp_idle: bool = False  # duration is guest time; idle stretches are jumped over
    # pv: HLT until the loop's interrupt, "block" in the host, or "lapic" (HLT with KVM's
    # LAPIC timer armed for the deadline); None: lapic where it runs (the cheapest, issue
    # 21: small tickless guests on pv, unwarped, without the loop's slop), else halt
    pv_idle: str | None = None
    # The fleet's guests split over this many VMM processes (measure/idle_processes.py):
    # KVM's MMU notifiers hang off a process's address space, one per VM in it, so the
    # host's page scans pay for every VM of a process on each of its pages.
    processes: int = 1

    def __post_init__(self) -> None:
        if self.guests < 1:
            raise InputError("--guests must be at least 1")
        try:
            object.__setattr__(self, "mode", TickMode(self.mode))
        except ValueError:
            raise InputError("--mode must be periodic or tickless") from None
        object.__setattr__(self, "guest", GuestKind(self.guest))
        object.__setattr__(self, "linux_drivers", LinuxDrivers(self.linux_drivers))
        self._check_processes()
        self._check_timer()
        if self.kernel_path is not None and self.guest is not GuestKind.LINUX:
            raise InputError("--kernel needs --guest linux")
        if not 1 <= self.hz <= 10_000:
            raise InputError("--hz must be between 1 and 10000")
        if self.duration_ns < 10_000_000:
            raise InputError("--duration must be at least 10ms")
        if self.ramp_step is not None:
            if self.mode is not TickMode.PERIODIC:
                raise InputError("--step needs --mode periodic (tickless guests boot at once)")
            if not 1 <= self.ramp_step <= self.guests:
                raise InputError("--step must be between 1 and --guests")
        if not 0 < self.miss_threshold < 1:
            raise InputError("--miss-threshold must be between 0 and 1 (exclusive)")
        if self.warp_idle and self.mode is TickMode.PERIODIC:
            raise InputError("--warp-idle needs a tickless guest: a ticking one is never idle")

    def _check_timer(self) -> None:
        """Tickless guests re-arm through the PV deadline device (exitless) unless told
        otherwise, Linux's driver too; periodic ticks use the lguest device."""
        wants_lguest = self.mode is TickMode.PERIODIC
        if self.linux_drivers is LinuxDrivers.STOCK:  # Linux's own clocks: GuestConfig checks
            timer = TimerPath(self.timer or TimerPath.LAPIC)
            object.__setattr__(self, "timer", timer)
            if self.guest is not GuestKind.LINUX:
                raise InputError("--linux-drivers stock needs --guest linux")
            check_stock(timer, self.warp_idle)
            return
        if self.timer is None:  # a warped Linux BLOCKs on the lguest device's event
            warped_linux = self.warp_idle and self.guest is GuestKind.LINUX
            timer = TimerPath.LGUEST if wants_lguest or warped_linux else TimerPath.PV
        else:
            try:
                timer = TimerPath(self.timer)
            except ValueError:
                raise InputError("--timer must be pv or lguest") from None
        if timer not in (TimerPath.PV, TimerPath.LGUEST):
            raise InputError("--timer must be pv or lguest")
        if timer is TimerPath.PV and wants_lguest:
            raise InputError(
                "--timer pv runs tickless guests; periodic ticks use the lguest device "
                "(--timer lguest)"
            )
        object.__setattr__(self, "timer", timer)
        if self.pv_idle is None:
            small_pv = timer is TimerPath.PV and self.guest is GuestKind.SMALL
            lapic = small_pv and not self.warp_idle and not self.slop_ns
            object.__setattr__(self, "pv_idle", "lapic" if lapic else "halt")
        if self.pv_idle not in PV_IDLE_WAYS:
            raise InputError(f"--pv-idle must be one of {', '.join(PV_IDLE_WAYS)}")
        if self.pv_idle != "halt" and (
            timer is not TimerPath.PV or self.warp_idle or self.guest is not GuestKind.SMALL
        ):
            raise InputError(f"--pv-idle {self.pv_idle} needs tickless small guests on --timer pv")
        if self.pv_idle == "lapic" and self.slop_ns:
            raise InputError("--slop is the deadline loop's: --pv-idle lapic does not use it")

    def _check_processes(self) -> None:
        if not 1 <= self.processes <= self.guests:
            raise InputError("--processes must be between 1 and --guests")
        if self.processes > 1 and (
            self.guest is not GuestKind.SMALL or self.mode is TickMode.PERIODIC or self.warp_idle
        ):
            raise InputError(
                "--processes is for tickless small guests without --warp-idle (a periodic "
                "ramp or a warp is one process's)"
            )

    @property
    def step(self) -> int:
        """Guests booted per step: periodic guests ramp up (a tenth at a time unless told),
        so that a host that saturates is found, not fallen over; tickless boot at once."""
        if self.mode is not TickMode.PERIODIC:
            return self.guests
        return self.ramp_step or -(-self.guests // 10)


@dataclass
class RampStep:
    """One step of a periodic ramp: the ticks every guest booted so far got in a short
    window, against what ``guests x HZ x window`` asks for."""

    guests: int
    window_s: float
    ticks_expected: float
    ticks_delivered: int
    cpu_percent_of_core: float

    @property
    def missed_fraction(self) -> float:
        if self.ticks_expected <= 0:
            return 0.0
        return max(0.0, 1.0 - self.ticks_delivered / self.ticks_expected)


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

    @property
    def guest_timer_irqs_per_s(self) -> float:
        """Timer interrupts all guests took a second: what the host's wake-ups served."""
        return sum(g.timer_interrupts for g in self.per_guest) / self.duration_s

    def rate_fields(self) -> dict[str, float]:
        """The rates both ``tickless idle`` and ``tickless sim fleet`` report, side by side."""
        return {
            "wakeups_per_s": self.wakeups_per_s,
            "expiries_per_s": self.expiries_per_s,
            "interrupts_per_guest_per_s": self.interrupts_per_guest_per_s,
            "cpu_percent_of_core": self.cpu_percent_of_core,
            "host_wakeups_per_s": self.wakeups_per_s,
            "guest_timer_irqs_per_s": self.guest_timer_irqs_per_s,
            "steady_cpu_percent_of_core": self.cpu_percent_of_core,
        }


def fleet_fields(
    *,
    guests_requested: int,
    boot_rate_guests_per_s: float | None,
    rss_per_guest_mib: float | None,
    ticks_expected: float | None,
    ticks_delivered: int,
    saturation_guests: int | None,
    ramp: Sequence[RampStep] = (),
) -> dict[str, Any]:
    """The fleet report's fields beyond the rates (None: the run cannot know it, e.g. a
    simulator's boot rate); the same keys in both kinds of record."""
    missed = None
    if ticks_expected:
        missed = max(0.0, 1.0 - ticks_delivered / ticks_expected)
    return {
        "guests_requested": guests_requested,
        "boot_rate_guests_per_s": boot_rate_guests_per_s,
        "rss_per_guest_mib": rss_per_guest_mib,
        "ticks_expected": ticks_expected,
        "ticks_missed_fraction": missed,
        "saturation_guests": saturation_guests,
        "ramp": [{**asdict(r), "missed_fraction": r.missed_fraction} for r in ramp],
    }


def time_fields(
    *, rate: Fraction, guest_time_s: float, wall_time_s: float, warped_s: float
) -> dict[str, Any]:
    """How time ran in a run, the same keys in both kinds of record: ``dilation`` (guest
    seconds per wall second, a fraction's text: "1/10"), the guest time simulated, the wall
    time it took (the rates are per wall second) and the guest time idle warp skipped."""
    return {
        "dilation": str(Fraction(rate)),
        "guest_time_s": guest_time_s,
        "wall_time_s": wall_time_s,
        "warped_s": warped_s,
    }


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
    boot_s: float = 0.0  # until every guest ran its workload (excluded from the rates)
    assists: dict[str, int] = field(default_factory=dict)  # emulator gaps filled, all guests
    # Version 2: the rates above are over a window that starts once every guest has booted.
    guests_requested: int = 0  # 0: as many as ran (a periodic ramp may stop short)
    slop_ns: int = 0
    boot_cpu_s: float | None = None  # process CPU while the guests booted
    rss_mib: float | None = None  # the VMM's resident memory with every guest booted
    rss_per_guest_mib: float | None = None  # VmRSS growth over the boot, per guest
    host_mem_per_guest_mib: float | None = None  # MemAvailable drop, per guest (KVM's too)
    ticks_expected: float | None = None  # periodic: guests x HZ x window
    saturation_guests: int | None = None  # periodic: first ramp step that missed ticks
    miss_threshold: float | None = None  # what "missed" means for that step
    ramp: list[RampStep] = field(default_factory=list)
    partial: bool = False  # interrupted: the window is shorter than asked
    # Version 3: time that bends. The rates are per wall second, over duration_s.
    dilation: str = "1"  # guest seconds per wall second, a Fraction's text ("1/10")
    wall_time_s: float | None = None  # None: duration_s (the window)
    guest_time_s: float | None = None  # None: wall_time_s x dilation (no warp)
    warped_s: float = 0.0  # guest time skipped by idle warp
    # Per housekeeping timer (1 s, 4 s), runs summed over the guests, and runs that came
    # before their deadline in guest time (must be 0); None: not recorded (Linux guests).
    timer_runs: list[int] | None = None
    early_timer_runs: int | None = None
    # Version 4: a Linux guest's clocks (guest0's; schema.py says what each is)
    clock_agreement_ppm: dict[str, float | None] | None = None
    clocksource_unstable: list[str] | None = None
    console_time_ratio: float | None = None
    # Of vcpu_cpu_s: the small guests' ring-3 spin to their deadlines (their own count,
    # each clamped to its thread's CPU); the rest is wake-ups, interrupt entries, exits.
    guest_spin_s: float = 0.0
    # Version 5: the whole host over the window (host/hostcpu.py; None: not measured)
    host_busy_percent_of_core: float | None = None  # /proc/stat: every task, ours too
    other_tasks_percent_of_core: float | None = None  # every task outside the fleet's
    other_tasks_top: dict[str, float] = field(default_factory=dict)  # the busiest, by name

    def __post_init__(self) -> None:
        """Runs that do not say how time ran ran it straight: unwarped, at ``dilation``."""
        if self.wall_time_s is None:
            self.wall_time_s = self.duration_s
        if self.guest_time_s is None:
            self.guest_time_s = float(self.wall_time_s * Fraction(self.dilation))

    @property
    def boot_rate_guests_per_s(self) -> float | None:
        return self.guests / self.boot_s if self.boot_s > 0 else None

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(self.rate_fields())
        d.update(
            fleet_fields(
                guests_requested=self.guests_requested or self.guests,
                boot_rate_guests_per_s=self.boot_rate_guests_per_s,
                rss_per_guest_mib=self.rss_per_guest_mib,
                ticks_expected=self.ticks_expected,
                ticks_delivered=sum(g.timer_interrupts for g in self.per_guest),
                saturation_guests=self.saturation_guests,
                ramp=self.ramp,
            )
        )
        return d

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> IdleResult:
        """A record ``to_json_dict`` wrote, of this version or an older one (version 1
        records lack the fleet fields: they read as unset; versions 1 and 2 the time
        fields: they read as dilation 1, no warp)."""
        if d.get("kind") != "idle" or d.get("schema_version", 0) > IDLE_SCHEMA_VERSION:
            raise ValueError("not an idle record this version of tickless can read")
        names = {f.name for f in fields(cls)}
        kept = {k: v for k, v in d.items() if k in names}
        kept["per_guest"] = [GuestIdleCounts(**g) for g in d["per_guest"]]
        kept["ramp"] = [
            RampStep(**{k: v for k, v in r.items() if k != "missed_fraction"})
            for r in d.get("ramp", [])
        ]
        kept["schema_version"] = IDLE_SCHEMA_VERSION
        return cls(**kept)
