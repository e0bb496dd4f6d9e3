"""How a run's timestamps become its result record, the same for every backend
(``tickless.backends``: the KVM runner, the host baseline and the simulator all take a
``MeasureSpec`` and hand back a ``ResultRecord`` built by ``build_record``), and the deadline
each event asked for: the interval after the last event, a grid, or a chip's own grid (the
periodic PIT's edges, the RTC's 2^-k s from its divider release).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import numpy.typing as npt

from tickless.axes import Advance, Backend, GuestKind, Method, TickMode, TimerPath
from tickless.errors import GuestStopped
from tickless.guest.abi import PIT_HZ, pit_count, pit_edge_ns, pit_edges
from tickless.results.interrupts import NO_SPIN, summarize_interrupts
from tickless.results.schema import HostCounts, ResultRecord
from tickless.results.spec import MeasureSpec
from tickless.results.stats import summarize, summarize_lateness

__all__ = [
    "build_record",
    "event_deadlines_ns",
    "intervals_and_lateness",
    "record_interval_ns",
    "rtc_deadlines_ns",
    "spec_deadlines_ns",
    "spec_intervals_and_lateness",
]


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
    bracket [t0, t1] of PV clock reads around it (t0 = timestamps[0], t1 = t0 +
    bracket_ns). Event i comes at edge k_i, and k_i is at least i (each event takes an
    edge) and at least the first k with t1 + k*p after the event before (the guest reads
    register C after recording it; the chip then waits for the next edge): the deadline
    is t0 + k*p for the larger, k_i's lower bound. An edge lost while the one before was
    pending (register C read after the next edge) thus moves the following deadlines on
    instead of counting a period of lateness each; the chip counts the lost ones."""
    num, den = period_ns.numerator, period_ns.denominator
    t0 = int(timestamps_ns[0])
    t1 = t0 + max(bracket_ns, 0)
    index = np.arange(1, len(timestamps_ns), dtype=np.int64)
    after_previous = (timestamps_ns[:-1] - t1) * den // num + 1
    after_previous[0] = 1
    k = index + np.maximum.accumulate(np.maximum(after_previous - index, 0))
    deadlines: npt.NDArray[np.int64] = t0 - (-k * num // den)
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
