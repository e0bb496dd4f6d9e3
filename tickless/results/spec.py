"""What one measurement asks for, and how its timestamps become a result record.

Shared by every backend (``tickless.backends``): the KVM runner, the host baseline and the
simulator all take a ``MeasureSpec`` and hand back a ``ResultRecord`` built by
``build_record``, so a record means the same whichever backend wrote it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from tickless.axes import (
    Advance,
    Backend,
    GuestKind,
    IoCpu,
    Load,
    Method,
    TickMode,
    TimerPath,
    Wait,
    check_dilation,
    choices,
    format_loads,
)
from tickless.errors import GuestStopped, InputError
from tickless.guest.abi import (
    LINUX_MAX_EVENTS,
    MAX_EVENTS,
    PIT_HZ,
    PIT_MAX_COUNT,
    PIT_MIN_PERIODIC_COUNT,
    RTC_MAX_RATE_HZ,
    RTC_MIN_RATE_HZ,
    pit_count,
    pit_edge_ns,
    pit_edges,
)
from tickless.results.interrupts import NO_SPIN, summarize_interrupts
from tickless.results.paper import PAPER_IO_RATE_PER_S
from tickless.results.schema import HostCounts, ResultRecord
from tickless.results.stats import summarize, summarize_lateness

__all__ = [
    "MAX_EVENTS",
    "MeasureSpec",
    "MeasurementInterrupted",
    "Progress",
    "build_record",
    "default_timer",
    "event_deadlines_ns",
    "intervals_and_lateness",
    "record_interval_ns",
    "spec_deadlines_ns",
    "spec_intervals_and_lateness",
]

ASSUMED_LATENCY_NS = 60_000  # only for progress estimates

# Timers with a periodic mode of their own: lguest's SET_PERIODIC and the zoo's chips.
PERIODIC_TIMERS = frozenset({TimerPath.LGUEST, TimerPath.HPET, TimerPath.PIT, TimerPath.RTC})
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


def default_timer(guest: GuestKind) -> TimerPath:
    """``pv``, the device that wins, for every guest (Linux's driver drives it too)."""
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
        check_dilation(self.timer, self.rate)
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
        if self.timer not in (TimerPath.PV, TimerPath.LGUEST, TimerPath.LAPIC):
            raise InputError(
                "--guest linux measures --timer pv (its driver on the PV deadline device), "
                "lguest (its driver on the lguest device) or lapic"
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


def event_deadlines_ns(
    timestamps_ns: npt.NDArray[np.int64], interval_ns: int | Fraction, method: Method
) -> npt.NDArray[np.int64]:
    """The deadline each event 1..N asked for, as the guest computed it: on the grid
    t0 + i*d (absolute; a fractional d, the RTC's 2^-k s, rounds each point up: the first
    nanosecond the device may fire), or d after the event before it (relative)."""
    if method is Method.ABSOLUTE:
        steps = np.arange(1, len(timestamps_ns), dtype=np.int64)
        d = Fraction(interval_ns)
        grid: npt.NDArray[np.int64] = timestamps_ns[0] - (-steps * d.numerator // d.denominator)
        return grid
    relative: npt.NDArray[np.int64] = timestamps_ns[:-1] + int(interval_ns)
    return relative


def pit_grid(spec: MeasureSpec) -> bool:
    """The small guest's periodic PIT: one event per interrupt, on the 8254's own grid."""
    return (
        spec.timer is TimerPath.PIT
        and spec.mode is TickMode.PERIODIC
        and spec.guest is GuestKind.SMALL
        and spec.backend is Backend.KVM
    )


def spec_deadlines_ns(
    spec: MeasureSpec, timestamps_ns: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """The deadline of each event 1..N of a run of ``spec``: ``event_deadlines_ns``, except
    the periodic PIT's, whose interrupt i rises at clock edge ``L + i*N``, ``L`` the load
    edge: at least one edge after the guest's clock read before the count write
    (``timestamps_ns[0]``), so the earliest it may legally come (``user.c: measure``)."""
    if pit_grid(spec):
        first = pit_edges(int(timestamps_ns[0])) + 1
        count = pit_count(spec.interval_ns)
        edges = [first + i * count for i in range(1, len(timestamps_ns))]
        return np.array([pit_edge_ns(e) for e in edges], dtype=np.int64)
    return event_deadlines_ns(timestamps_ns, spec.device_period_ns, spec.method)


def record_interval_ns(spec: MeasureSpec) -> int:
    """The interval the device really ran at, to the ns: the periodic PIT's N clocks
    (1 ms: N = 1193, 999847 ns), else the one asked for."""
    if pit_grid(spec):
        return round(pit_count(spec.interval_ns) * 10**9 / PIT_HZ)
    return round(spec.device_period_ns)  # the RTC's own 2^-k s (rtc_notes), else --interval


def spec_intervals_and_lateness(
    spec: MeasureSpec, timestamps_ns: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Measured intervals, and each event's lateness against ``spec_deadlines_ns``."""
    return np.diff(timestamps_ns), timestamps_ns[1:] - spec_deadlines_ns(spec, timestamps_ns)


def rtc_deadlines_ns(
    timestamps_ns: npt.NDArray[np.int64], period_ns: Fraction, bracket_ns: int
) -> npt.NDArray[np.int64]:
    """The earliest time the RTC may raise each event 1..N, knowing only how the guest
    programmed it. Its edges lie at t_w + k*p, t_w the releasing write, somewhere in the
    bracket [t0, t0 + bracket_ns] of PV clock reads around it (t0 = timestamps[0]). The
    first cannot come before t0 + p; each later one comes at the first edge after the guest
    read register C, which it does after recording the event before (at c): so not before
    the first t0-grid point after c, unless c lies within the bracket's width after a
    grid point (that edge may be just after c: then c itself is the bound). A lost edge
    (register C read after the next one) thus moves the next deadline on by a period
    instead of counting as a period of lateness; the chip counts the lost ones."""
    num, den = period_ns.numerator, period_ns.denominator
    t0 = int(timestamps_ns[0])
    delta = min(max(bracket_ns, 0), int(period_ns))
    prev = timestamps_ns[:-1] - t0
    k = prev * den // num
    frac = prev * den - k * num  # in 1/den ns past the t0-grid point k
    grid = t0 - (-(k + 1) * num // den)
    deadlines: npt.NDArray[np.int64] = np.where(frac < delta * den, timestamps_ns[:-1], grid)
    deadlines[0] = t0 - (-num // den)
    return deadlines


def intervals_and_lateness(
    timestamps_ns: npt.NDArray[np.int64], interval_ns: int | Fraction, method: Method
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Measured intervals, and each event's lateness against the deadline it asked for."""
    deadlines = event_deadlines_ns(timestamps_ns, interval_ns, method)
    return np.diff(timestamps_ns), timestamps_ns[1:] - deadlines


def rtc_notes(spec: MeasureSpec) -> list[str]:
    """What ``--timer rtc`` made of the options: the rate it really ran at."""
    if spec.timer is not TimerPath.RTC:
        return []
    period = spec.device_period_ns
    rs = 16 - spec.hz.bit_length() + 1
    return [
        f"rtc: periodic interrupt at {spec.hz} Hz (register A RS={rs}): every "
        f"{float(period) / 1000:.7g} us, the power-of-two rate nearest to the --interval of "
        f"{spec.interval_ns / 1000:g} us; its events lie on the chip's grid from the divider "
        "release (mode periodic, method absolute, whatever was asked); an edge lost while "
        "the one before was pending moves the next deadline on (the chip counts them)"
    ]


def build_record(
    spec: MeasureSpec,
    backend: Backend,
    timestamps_ns: npt.NDArray[np.int64],
    host: HostCounts,
    machine: dict[str, str],
    notes: list[str],
    deadlines_ns: npt.NDArray[np.int64] | None = None,
) -> ResultRecord:
    """The record of a run that produced ``timestamps_ns``; the strings come from the enums.
    ``deadlines_ns``: each event's, where the timestamps alone do not tell (the RTC's)."""
    if len(timestamps_ns) < 2:
        raise GuestStopped("no timer event was recorded")
    if deadlines_ns is None:
        intervals, lateness = spec_intervals_and_lateness(spec, timestamps_ns)
    else:
        intervals, lateness = np.diff(timestamps_ns), timestamps_ns[1:] - deadlines_ns
    record = ResultRecord(
        backend=backend.value,
        timer=spec.timer.value,
        mode=spec.mode.value,
        method=spec.method.value,
        hz=spec.hz if spec.mode is TickMode.PERIODIC else None,
        load=spec.load,
        interval_ns=record_interval_ns(spec),
        stats=summarize(intervals),
        lateness=summarize_lateness(lateness),
        host=host,
        intervals_ns=intervals.tolist(),
        lateness_ns=lateness.tolist(),
        machine=machine,
        notes=notes,
        guest=spec.guest.value if backend is Backend.KVM else None,
        advance=(Advance.AUTO if spec.spins else Advance.OFF).value,
    )
    record.notes.extend(rtc_notes(spec))
    if not spec.spins:  # the event is the interrupt's arrival: no spin in between
        record.interrupt_lateness = summarize_interrupts(lateness)
        record.interrupt_lateness_ns = lateness.tolist()
        record.spin = NO_SPIN
    return record
