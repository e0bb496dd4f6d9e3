"""The host side of the PV clock-event device, driven by a TimerQueue in virtual time.

tick_hz is 1e9, so at rate 1 host ticks are nanoseconds; at other rates deadlines are on
the guest's (dilated) clock and the host tick is whatever the guest reads as due.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickless.guest.abi import EINVAL, ETIME, MAX_DELTA_NS, MIN_DELTA_NS, MIN_PERIOD_NS
from tickless.timers.clock import GuestClock
from tickless.timers.clockevents import ClockEventDevice, ClockEventState, check_delta
from tickless.timers.hrtimer import TimerQueue

TICK_HZ = 10**9
SYSTEM_TIME_NS = 5_000_000_000

valid_deltas = st.integers(min_value=MIN_DELTA_NS, max_value=10**8)
starts = st.integers(min_value=0, max_value=1 << 50)
rates = st.sampled_from([Fraction(1), Fraction(1, 2), Fraction(2)])


class Sim:
    """One device on a TimerQueue, with a host that wakes exactly when asked (or late)."""

    def __init__(self, tsc_timestamp: int, rate: Fraction | int = 1, slop: int = 0) -> None:
        self.queue = TimerQueue(slop_ticks=slop)
        self.clock = GuestClock.create(
            TICK_HZ, now_ticks=tsc_timestamp, system_time_ns=SYSTEM_TIME_NS, rate=rate
        )
        self.now = tsc_timestamp
        self.fired: list[int] = []  # host ticks at which an interrupt was raised
        self.dev = ClockEventDevice(self.clock, self.queue, self.fired.append)

    @property
    def now_ns(self) -> int:
        return self.clock.ns_at(self.now)

    def wake(self, ticks: int) -> None:
        """The host wakes at ``ticks`` and runs every due timer's callback."""
        self.now = max(self.now, ticks)
        for timer in self.queue.expire(self.now):
            timer.callback(self.now)

    def run_until(self, target: int) -> None:
        """Ideal host: wake at every ``next_wakeup()`` up to ``target``."""
        while (wake := self.queue.next_wakeup()) is not None and wake <= target:
            self.wake(wake)
        self.now = max(self.now, target)


# --- delta codes ----------------------------------------------------------------------------

DELTA_TABLE = [
    (0, 0),
    (1, -ETIME),
    (MIN_DELTA_NS - 1, -ETIME),
    (MIN_DELTA_NS, 0),
    (MIN_DELTA_NS + 1, 0),
    (10**6, 0),
    (MAX_DELTA_NS, 0),
    (MAX_DELTA_NS + 1, -EINVAL),
    (-1, -EINVAL),
    (-(1 << 63), -EINVAL),
    ((1 << 63) - 1, -EINVAL),
]


@pytest.mark.parametrize(("delta", "code"), DELTA_TABLE)
def test_check_delta_table(delta: int, code: int) -> None:
    """The hypercall ABI's answer for each class of delta (lguest's -ETIME for tiny ones)."""
    assert check_delta(delta) == code


@pytest.mark.parametrize(("delta", "code"), DELTA_TABLE)
def test_set_next_event_codes(delta: int, code: int) -> None:
    """The device answers as check_delta(); a refused call leaves the pending event alone,
    an accepted one (re)arms it and 0 cancels it."""
    sim = Sim(1000)
    assert sim.dev.set_next_event(50_000, sim.now) == 0
    armed_at = sim.dev.timer.expires
    assert sim.dev.set_next_event(delta, sim.now) == code
    if code:
        assert sim.dev.timer.expires == armed_at
        assert sim.dev.state is ClockEventState.ONESHOT
        assert sim.dev.stats.rejected == 1
    elif delta == 0:
        assert sim.dev.timer.expires is None
        assert sim.dev.state is ClockEventState.SHUTDOWN
        assert len(sim.queue) == 0
    else:
        assert sim.dev.next_event_ns == sim.now_ns + delta
        assert sim.dev.stats.programmed == 2
    assert len(sim.queue) == (0 if delta == 0 else 1)


def test_consecutive_rejected_counts_and_resets() -> None:
    """consecutive_rejected counts refusals in a row and drops to 0 on an accepted call."""
    sim = Sim(0)
    for n, bad in enumerate((1, -5, MAX_DELTA_NS + 1), start=1):
        sim.dev.set_next_event(bad, 0)
        assert sim.dev.stats.consecutive_rejected == n
    assert sim.dev.set_next_event(MIN_DELTA_NS, 0) == 0
    assert sim.dev.stats.consecutive_rejected == 0
    assert sim.dev.stats.rejected == 3
    assert sim.dev.stats.programmed == 1
    assert sim.dev.set_periodic(MIN_PERIOD_NS - 1, 0) == -EINVAL
    assert sim.dev.stats.consecutive_rejected == 1
    assert sim.dev.set_next_event(0, 0) == 0  # cancelling is a success too
    assert sim.dev.stats.consecutive_rejected == 0


# --- one-shot -------------------------------------------------------------------------------


@given(valid_deltas, starts, st.integers(0, 10**9), rates)
def test_oneshot_fires_once_never_early(delta: int, tsc0: int, later: int, rate: Fraction) -> None:
    """A one-shot fires exactly once, at the first host tick at which the guest's clock
    reads now+delta or later (never before), then the device is shut down."""
    sim = Sim(tsc0, rate=rate)
    sim.run_until(tsc0 + later)
    deadline_ns = sim.now_ns + delta
    assert sim.dev.set_next_event(delta, sim.now) == 0
    assert sim.dev.next_event_ns == deadline_ns
    due = sim.dev.timer.expires
    assert due is not None
    sim.run_until(due - 1)
    assert sim.fired == []
    sim.run_until(due + 10 * delta * TICK_HZ)
    assert len(sim.fired) == 1
    t = sim.fired[0]
    assert sim.clock.ns_at(t) >= deadline_ns
    assert sim.clock.ns_at(t - 1) < deadline_ns
    assert sim.dev.stats.expiries == 1
    assert sim.dev.state is ClockEventState.SHUTDOWN
    assert sim.dev.next_event_ns is None
    assert len(sim.queue) == 0


@given(valid_deltas, starts, st.sampled_from([0, 1, 1000, 10**6]))
def test_oneshot_with_slop_within_bound(delta: int, tsc0: int, slop: int) -> None:
    """With host slop the interrupt is still never early and at most slop ticks late."""
    sim = Sim(tsc0, slop=slop)
    deadline_ns = sim.now_ns + delta
    sim.dev.set_next_event(delta, sim.now)
    sim.run_until(tsc0 + delta + slop + 1)
    assert len(sim.fired) == 1
    assert deadline_ns <= sim.clock.ns_at(sim.fired[0]) <= deadline_ns + slop


@pytest.mark.parametrize(("first", "second"), [(1_000, 50_000), (50_000, 1_000)])
def test_reprogramming_replaces_event(first: int, second: int) -> None:
    """set_next_event replaces the pending event, whether the new one is later or earlier."""
    sim = Sim(0)
    sim.dev.set_next_event(first, 0)
    sim.run_until(500)
    sim.dev.set_next_event(second, sim.now)
    sim.run_until(10**9)
    assert sim.fired == [500 + second]
    assert sim.dev.stats.expiries == 1


def test_cancel_with_zero_delta() -> None:
    """SET_CLOCKEVENT(0) cancels the pending one-shot: no interrupt ever comes."""
    sim = Sim(0)
    sim.dev.set_next_event(10_000, 0)
    assert sim.dev.set_next_event(0, 100) == 0
    sim.run_until(10**9)
    assert sim.fired == []
    assert len(sim.queue) == 0


# --- periodic -------------------------------------------------------------------------------


@given(st.integers(MIN_PERIOD_NS, 10**7), starts, rates)
def test_periodic_on_grid(period: int, tsc0: int, rate: Fraction) -> None:
    """On an ideal host, periodic ticks land exactly on the grid start + n*period of guest
    time (the first host tick reading it), with no overruns."""
    sim = Sim(tsc0, rate=rate)
    start_ns = sim.now_ns
    assert sim.dev.set_periodic(period, sim.now) == 0
    n = 20
    sim.run_until(sim.clock.ticks_at_or_after(start_ns + n * period))
    assert len(sim.fired) == n
    for i, t in enumerate(sim.fired, start=1):
        assert sim.clock.ns_at(t) >= start_ns + i * period
        assert sim.clock.ns_at(t - 1) < start_ns + i * period
    assert sim.dev.stats.overruns == 0
    assert sim.dev.stats.expiries == n
    assert sim.dev.next_event_ns == start_ns + (n + 1) * period
    assert sim.dev.state is ClockEventState.PERIODIC


@given(
    st.integers(MIN_PERIOD_NS, 10**7),
    starts,
    st.integers(0, 50),
    st.floats(0, 1, exclude_max=True),
)
def test_periodic_late_host_keeps_phase(period: int, tsc0: int, k: int, frac: float) -> None:
    """A host that wakes k whole periods (plus a fraction) late raises one interrupt, counts
    the k skipped ticks as overruns, and the next deadline stays on start + n*period."""
    sim = Sim(tsc0)  # rate 1: ticks are ns
    start_ns = sim.now_ns
    sim.dev.set_periodic(period, sim.now)
    first = sim.clock.ticks_at_or_after(start_ns + period)
    late = k * period + int(frac * period)
    sim.wake(first + late)
    assert sim.fired == [first + late]
    assert sim.dev.stats.overruns == k
    nxt = sim.dev.next_event_ns
    assert nxt is not None
    assert (nxt - start_ns) % period == 0
    assert sim.now_ns < nxt <= sim.now_ns + period
    # and then the ideal host carries on, on the same grid
    sim.run_until(sim.clock.ticks_at_or_after(nxt + 2 * period))
    assert [sim.clock.ns_at(t) - start_ns for t in sim.fired[1:]] == [
        nxt - start_ns + i * period for i in range(3)
    ]
    assert sim.dev.stats.overruns == k


@pytest.mark.parametrize("period", [MIN_PERIOD_NS - 1, 1, -1, -MIN_PERIOD_NS, MAX_DELTA_NS + 1])
def test_set_periodic_rejects_bad_period(period: int) -> None:
    """Periods below MIN_PERIOD_NS (or negative, or above an hour) get -EINVAL."""
    sim = Sim(0)
    assert sim.dev.set_periodic(period, 0) == -EINVAL
    assert sim.dev.state is ClockEventState.SHUTDOWN
    assert len(sim.queue) == 0
    assert sim.dev.stats.rejected == 1


def test_set_periodic_zero_stops() -> None:
    """SET_PERIODIC(0) stops the tick."""
    sim = Sim(0)
    sim.dev.set_periodic(MIN_PERIOD_NS, 0)
    sim.run_until(MIN_PERIOD_NS)
    assert sim.dev.set_periodic(0, sim.now) == 0
    sim.run_until(10**9)
    assert sim.fired == [MIN_PERIOD_NS]
    assert sim.dev.state is ClockEventState.SHUTDOWN


def test_shutdown_cancels_periodic() -> None:
    """shutdown() cancels the host timer: no interrupt after it, nothing left armed."""
    sim = Sim(0)
    sim.dev.set_periodic(MIN_PERIOD_NS, 0)
    sim.run_until(3 * MIN_PERIOD_NS + 5)
    assert len(sim.fired) == 3
    sim.dev.shutdown()
    assert len(sim.queue) == 0
    assert sim.dev.state is ClockEventState.SHUTDOWN
    assert sim.dev.next_event_ns is None
    sim.run_until(10**9)
    assert len(sim.fired) == 3


def test_oneshot_replaces_periodic() -> None:
    """A one-shot programmed while ticking ends the periodic mode after it fires."""
    sim = Sim(0)
    sim.dev.set_periodic(MIN_PERIOD_NS, 0)
    sim.dev.set_next_event(MIN_PERIOD_NS * 5, 100)
    sim.run_until(10**9)
    assert sim.fired == [100 + MIN_PERIOD_NS * 5]
    assert sim.dev.state is ClockEventState.SHUTDOWN
