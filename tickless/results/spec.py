"""What one measurement asks for (``MeasureSpec``): every option checked, every
combination a path cannot run refused in one line. ``results/record.py`` turns a run's
timestamps into its record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

from tickless.axes import (
    Advance,
    Backend,
    GuestKind,
    IoCpu,
    LinuxDrivers,
    Load,
    Method,
    TickMode,
    TimerPath,
    Wait,
    check_dilation,
    check_stock,
    choices,
    format_loads,
)
from tickless.errors import InputError
from tickless.guest.abi import (
    LINUX_MAX_EVENTS,
    MAX_EVENTS,
    PIT_HZ,
    PIT_MAX_COUNT,
    PIT_MIN_PERIODIC_COUNT,
    RTC_MAX_RATE_HZ,
    RTC_MIN_RATE_HZ,
)
from tickless.results.paper import PAPER_IO_RATE_PER_S
from tickless.results.schema import ResultRecord

__all__ = [
    "MAX_EVENTS",
    "MeasureSpec",
    "MeasurementInterrupted",
    "Progress",
    "default_timer",
]

ASSUMED_LATENCY_NS = 60_000  # only for progress estimates

# Timers with a periodic mode of their own: lguest's SET_PERIODIC and the zoo's chips.
PERIODIC_TIMERS = frozenset({TimerPath.LGUEST, TimerPath.HPET, TimerPath.PIT, TimerPath.RTC})
# What --guest linux measures: our lguest driver, or Linux's own lapic-deadline, HPET and
# i8253 ("pit") drivers on the zoo's chips (vmm/linux_boot.py: the command line each needs).
# What the Linux guest's workload can measure: our drivers (pv, lguest) and Linux's own.
LINUX_TIMERS = frozenset(
    {TimerPath.PV, TimerPath.LGUEST, TimerPath.LAPIC, TimerPath.HPET, TimerPath.PIT}
)
MAX_MEASURE_GUESTS = 256  # one vCPU thread each, measuring at once on two cores

Progress = Callable[[int], None]


SECOND_NS = 1_000_000_000


def rtc_rate_hz(interval_ns: int) -> int:
    """The CMOS RTC's periodic rate nearest to one event per ``interval_ns`` (1 ms: 1024 Hz,
    976.5625 us); an interval outside its 2-8192 Hz is refused in one line."""
    lo_ns, hi_ns = SECOND_NS // RTC_MAX_RATE_HZ, SECOND_NS // RTC_MIN_RATE_HZ
    if not lo_ns <= interval_ns <= hi_ns:
        raise InputError(
            f"--timer rtc runs its periodic interrupt at {RTC_MIN_RATE_HZ} to {RTC_MAX_RATE_HZ} "
            f"Hz: --interval between {lo_ns / 1000:g}us and {hi_ns // 1_000_000}ms"
        )
    rates = [RTC_MIN_RATE_HZ << k for k in range((RTC_MAX_RATE_HZ // RTC_MIN_RATE_HZ).bit_length())]
    return min(rates, key=lambda hz: abs(Fraction(SECOND_NS, hz) - interval_ns))


def default_timer(guest: GuestKind, drivers: LinuxDrivers = LinuxDrivers.TICKLESS) -> TimerPath:
    """``pv``, the device that wins, for every guest (Linux's driver drives it too); a
    stock Linux has no driver for it and runs on what it chooses itself (``lapic``)."""
    if guest is GuestKind.LINUX and drivers is LinuxDrivers.STOCK:
        return TimerPath.LAPIC
    return TimerPath.PV


E = TypeVar("E", bound=Enum)


def _member(enum: type[E], value: object, option: str) -> E:
    """``value`` as a member of ``enum``: callers outside Python's type checks (JSON, tests)
    may pass the plain string, and a wrong one is the user's error, named by its option."""
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(choices(enum))
        raise InputError(f"--{option} must be one of {allowed}, not {value!r}") from None


def _loads(value: Iterable[Load | str]) -> frozenset[Load]:
    if isinstance(value, str):  # a bare string would iterate by character
        value = (value,)
    try:
        return frozenset(Load(part) for part in value)
    except ValueError:
        raise InputError(
            f"--load takes {', '.join(choices(Load))} (combine them), not {sorted(value)!r}"
        ) from None


@dataclass(frozen=True)
class MeasureSpec:
    timer: TimerPath
    interval_ns: int
    count: int
    mode: TickMode = TickMode.TICKLESS
    hz: int = 1000
    method: Method = Method.RELATIVE
    wait: Wait = Wait.HALT
    slop_ns: int = 0
    realtime: bool = True
    rate: Fraction = Fraction(1)
    warp_idle: bool = False  # idle waits are BLOCK calls; guest time jumps over them
    halt_poll_ns: int | None = None
    stall_timeout_s: float = 10.0
    loads: frozenset[Load] = field(default_factory=lambda: frozenset({Load.IDLE}))
    backend: Backend = Backend.KVM  # resolve "auto" with backends.resolve_backend first
    platform: str = "KVM"  # the simulator's platform profile
    seed: int = 0  # the simulator's random seed (runs are deterministic for a seed)
    io_rate_per_s: float = PAPER_IO_RATE_PER_S  # with load "io"
    io_handler_ns: int = 20_000  # busy time of the guest's I/O interrupt handler
    hold_back_ns: int | None = None  # precise: a fixed hold-back window; None: what one costs
    io_cpu: IoCpu = IoCpu.SAME  # the vCPU the I/O interrupts go to (other: vCPU 1)
    spin_threshold_ns: int = 200_000  # precise: nearer deadlines are spun to directly
    guest: GuestKind = GuestKind.SMALL  # what runs in the VM (kvm backend)
    kernel_path: Path | None = None  # --guest linux: a user's vmlinux (None: ours)
    linux_drivers: LinuxDrivers = LinuxDrivers.TICKLESS  # --guest linux: our clocks, or its own
    console_path: Path | None = None  # where to save what the guest printed
    boot_timeout_s: float = 120.0  # a guest that is not running its workload by then stops
    explain: bool = False  # pv: where each event's time went (host wake, injection, entry...)
    guests: int = 1  # run the measurement in this many guests at once (kvm)
    advance: Advance = Advance.OFF  # lapic: arm early by an adaptive advance, spin the rest
    rtc_epoch_ns: int | None = None  # the zoo's CMOS RTC: its time at the start (None: now)

    def __post_init__(self) -> None:
        for name, enum in (
            ("guest", GuestKind),
            ("timer", TimerPath),
            ("mode", TickMode),
            ("method", Method),
            ("wait", Wait),
            ("backend", Backend),
            ("advance", Advance),
            ("io_cpu", IoCpu),
            ("linux_drivers", LinuxDrivers),
        ):
            object.__setattr__(self, name, _member(enum, getattr(self, name), name))
        object.__setattr__(self, "loads", _loads(self.loads))
        if self.mode is TickMode.PERIODIC and self.timer is TimerPath.HPET:
            # A periodic HPET's events are its own grid from its start: absolute deadlines.
            object.__setattr__(self, "method", Method.ABSOLUTE)
        self._check_numbers()
        if self.timer is TimerPath.RTC:
            self._resolve_rtc()
        self._check_combinations()

    def _check_numbers(self) -> None:
        if self.interval_ns <= 0:
            raise InputError("--interval must be positive")
        if not 1 <= self.count <= MAX_EVENTS:
            raise InputError(f"--count must be between 1 and {MAX_EVENTS:,}")
        if not 1 <= self.hz <= 100_000:
            raise InputError("--hz must be between 1 and 100000")
        if self.slop_ns < 0:
            raise InputError("--slop must not be negative")
        if self.rate <= 0:
            raise InputError("--dilation must be positive")
        if not 1 <= self.guests <= MAX_MEASURE_GUESTS:
            raise InputError(f"--guests must be between 1 and {MAX_MEASURE_GUESTS}")
        if self.io_rate_per_s <= 0 or self.io_handler_ns < 0:
            raise InputError("--io-rate must be positive and --io-handler not negative")

    def _check_combinations(self) -> None:
        if self.mode is TickMode.PERIODIC and self.timer not in PERIODIC_TIMERS:
            raise InputError(
                "--mode periodic is offered by the lguest device and the timer zoo: "
                "--timer lguest, hpet, pit or rtc"
            )
        if self.explain and (
            self.timer not in (TimerPath.PV, TimerPath.PRECISE) or self.backend is not Backend.KVM
        ):
            raise InputError("--explain breaks down --timer pv and precise events on kvm")
        if self.io_cpu is IoCpu.OTHER and self.guest is not GuestKind.SMALL:
            raise InputError("--io-cpu other steers to the small guest's second vCPU")
        if self.guests > 1 and self.backend is not Backend.KVM:
            raise InputError("--guests runs several real guests: the kvm backend")
        if not self.loads:
            raise InputError(f"--load takes {', '.join(choices(Load))} (combine them)")
        if Load.IDLE in self.loads and len(self.loads) > 1:
            raise InputError("--load idle cannot be combined with other loads")
        if self.timer is TimerPath.HOST and Load.IO in self.loads:
            raise InputError("--load io is a device in the guest: --timer host has no guest")
        if self.backend is Backend.HOST and self.timer is not TimerPath.HOST:
            raise InputError("the host backend runs --timer host only")
        if self.kernel_path is not None and self.guest is not GuestKind.LINUX:
            raise InputError("--kernel needs --guest linux")
        self._check_advance()
        self._check_bending()
        if self.guest is GuestKind.LINUX:
            self._check_linux()
        if self.timer is TimerPath.PIT and self.guest is GuestKind.SMALL:
            self._check_pit()

    def _check_pit(self) -> None:
        """The small guest programs the 8254's 16-bit count from the interval."""
        longest_ns = (PIT_MAX_COUNT - 1) * 10**9 // PIT_HZ  # one clock of bracket to spare
        shortest_ns = -(-PIT_MIN_PERIODIC_COUNT * 10**9 // PIT_HZ)
        if not shortest_ns <= self.interval_ns <= longest_ns:
            raise InputError(
                f"--timer pit counts the interval in 1.193182 MHz clocks of a 16-bit "
                f"counter: between {shortest_ns} ns and {longest_ns / 1e6:.3f} ms"
            )

    def _resolve_rtc(self) -> None:
        """``--timer rtc`` is the chip's periodic interrupt, nothing else: its rate is the
        power of two nearest to 1/--interval (``hz``), its events lie on its own grid
        (method absolute, mode periodic), whatever --mode, --method and --hz said
        (``rtc_notes`` puts this in the record)."""
        if self.backend is not Backend.KVM:
            raise InputError("--timer rtc is a chip of the kvm backend: the simulator has none")
        object.__setattr__(self, "hz", rtc_rate_hz(self.interval_ns))
        object.__setattr__(self, "mode", TickMode.PERIODIC)
        object.__setattr__(self, "method", Method.ABSOLUTE)

    @property
    def device_period_ns(self) -> Fraction:
        """The interval the timer really runs at: the RTC's 2^-k s, else --interval."""
        if self.timer is TimerPath.RTC:
            return Fraction(SECOND_NS, self.hz)
        return Fraction(self.interval_ns)

    def _check_advance(self) -> None:
        """``--advance auto`` is the control experiment: the PV device's spin on the LAPIC
        timer of a real small guest (pv and precise always advance; the others cannot)."""
        if self.advance is Advance.OFF:
            return
        if self.timer is not TimerPath.LAPIC:
            raise InputError(
                "--advance auto applies to --timer lapic (pv and precise always advance)"
            )
        if self.backend is not Backend.KVM:
            raise InputError(
                "--advance auto runs real guests (kvm); the simulator does not model it"
            )
        if self.guest is not GuestKind.SMALL:
            raise InputError(
                "--advance auto is the small guest's: Linux's lapic driver never spins"
            )

    @property
    def spins(self) -> bool:
        """Whether the guest spins to its deadline after an (early) interrupt, so that the
        delivered event is never early by construction (the record's ``advance``)."""
        return (
            self.timer in (TimerPath.PV, TimerPath.PRECISE)
            or self.advance is Advance.AUTO
            or self.warp_idle
        )

    def _check_bending(self) -> None:
        """Dilation and warp where a path can honour them; one line where it cannot (the
        guest's own combinations are checked again by ``GuestConfig``)."""
        if self.timer is TimerPath.HOST and (self.rate != 1 or self.warp_idle):
            raise InputError(
                "--timer host runs on the host's own clock: it cannot be dilated or warped"
            )
        stock = self.linux_drivers is LinuxDrivers.STOCK
        check_dilation(self.timer, self.rate, stock=stock)
        if stock:
            if self.guest is not GuestKind.LINUX or self.kernel_path is not None:
                raise InputError(
                    "--linux-drivers stock needs --guest linux and the kernel tickless builds"
                )
            check_stock(self.timer, self.warp_idle)
        if not self.warp_idle:
            return
        if self.backend is not Backend.KVM:
            raise InputError("--warp-idle measures real guests (kvm); sim fleet models it")
        if self.timer not in (TimerPath.PV, TimerPath.LGUEST):
            raise InputError("--warp-idle needs --timer pv or lguest (an idle wait is a BLOCK)")
        if self.mode is TickMode.PERIODIC or self.wait is not Wait.HALT:
            raise InputError("--warp-idle needs a tickless guest that halts (--wait halt)")
        if Load.IO in self.loads:
            raise InputError("--warp-idle cannot run with --load io: a warp would skip arrivals")
        if self.explain:
            raise InputError("--explain breaks down the PV device's path; warped waits BLOCK")

    def _check_linux(self) -> None:
        """What the Linux guest's in-kernel workload offers (``guest/linux``)."""
        if self.backend is not Backend.KVM:
            raise InputError("--guest linux runs on the kvm backend only")
        if self.timer not in LINUX_TIMERS:
            raise InputError(
                "--guest linux measures --timer pv (its driver on the PV deadline device), "
                "lguest (its driver on the lguest device), lapic, hpet or pit (Linux's own "
                "drivers)"
            )
        if self.guests > 1:
            raise InputError("--guests runs small guests; --guest linux measures one")
        if self.loads != {Load.IDLE}:
            raise InputError("--guest linux runs with --load idle only")
        if self.mode is not TickMode.TICKLESS or self.method is not Method.RELATIVE:
            raise InputError("--guest linux measures the paper's way: tickless, relative")
        if self.wait is not Wait.HALT:
            raise InputError("--guest linux waits the kernel's way (--wait halt)")
        if self.count > LINUX_MAX_EVENTS:
            raise InputError(f"--guest linux records at most {LINUX_MAX_EVENTS:,} events")

    @property
    def load(self) -> str:
        """The loads as records store them ("idle", "io", "cpu+io")."""
        return format_loads(self.loads)

    @property
    def expected_duration_s(self) -> float:
        step_ns = self.interval_ns + ASSUMED_LATENCY_NS
        if self.mode is TickMode.PERIODIC:
            step_ns = max(step_ns, 1_000_000_000 // self.hz)
        return self.count * step_ns / 1e9


class MeasurementInterrupted(Exception):
    """Ctrl-C during a run; ``partial`` holds what was measured up to then."""

    def __init__(self, partial: ResultRecord | None) -> None:
        super().__init__("interrupted")
        self.partial = partial
