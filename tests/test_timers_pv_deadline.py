"""The PV deadline device's host rules in pure Python (``timers/pv_deadline.py``): held
against the C deadline loop they model, and the PAGE channel's promise, looks and kicks."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tickless.host import deadline_loop as c_loop
from tickless.timers.clock import GuestClock
from tickless.timers.hrtimer import TimerQueue
from tickless.timers.precise import AdaptiveAdvance
from tickless.timers.pv_deadline import (
    LOOK_DELAY_NS,
    LOOK_GUARD_NS,
    LOOK_INTERVALS,
    SPIN_LIMIT_NS,
    PvDeadlineChannel,
    look_offset,
    pv_advance,
)

US = 1000
MS = 1_000_000


@settings(max_examples=400, deadline=None)
@given(
    intervals=st.lists(
        st.one_of(st.integers(0, 3 * MS), st.integers(0, 10**12)), max_size=LOOK_INTERVALS
    ),
    advance_ns=st.integers(0, 250 * US),
    delay_ns=st.integers(0, 50 * US),
)
def test_look_rule_is_the_c_loops(intervals: list[int], advance_ns: int, delay_ns: int) -> None:
    assert look_offset(intervals, advance_ns, delay_ns) == c_loop.look_offset(
        intervals, advance_ns, delay_ns
    )


@settings(max_examples=300, deadline=None)
@given(
    grow_shift=st.sampled_from([0, 7]),
    target_ns=st.integers(0, 10 * US),
    start_ns=st.integers(1_000, 200_000),
    margins=st.lists(st.integers(-(10**9), 10**9) | st.integers(-50 * US, 50 * US), max_size=30),
)
def test_advance_update_is_the_c_loops(
    grow_shift: int, target_ns: int, start_ns: int, margins: list[int]
) -> None:
    advance = AdaptiveAdvance(
        advance_ns=start_ns, target_margin_ns=target_ns, grow_shift=grow_shift, max_ns=200_000
    )
    for margin in margins:
        expected = c_loop.advance_step(advance, margin)  # from the state before the update
        assert advance.update(margin) == expected


def test_constants_are_the_c_loops() -> None:
    """One definition each: the C source's copies must not drift from these (the wrapper
    passes LOOK_DELAY_NS to the loop from here)."""
    source = c_loop.SRC.read_text(encoding="utf-8")
    defines = dict(re.findall(r"#define (DL_\w+) (\d+)", source))
    assert int(defines["DL_INTERVALS"]) == LOOK_INTERVALS
    assert int(defines["DL_LOOK_GUARD_NS"]) == LOOK_GUARD_NS
    assert int(defines["DL_SPIN_LIMIT_NS"]) == SPIN_LIMIT_NS
    assert c_loop.LOOK_DELAY_NS == LOOK_DELAY_NS


def test_look_rule_steady_and_not() -> None:
    assert look_offset([0] * LOOK_INTERVALS, 20 * US, LOOK_DELAY_NS) == LOOK_DELAY_NS  # none
    assert look_offset([], 20 * US, LOOK_DELAY_NS) == LOOK_DELAY_NS
    one = [0] * 15 + [MS]  # unfilled slots are not intervals
    assert look_offset(one, 20 * US, LOOK_DELAY_NS) == MS - 20 * US - LOOK_GUARD_NS
    steady = [MS + i for i in range(LOOK_INTERVALS)]
    assert look_offset(steady, 20 * US, LOOK_DELAY_NS) == MS - 20 * US - LOOK_GUARD_NS
    short = [16 * US] * LOOK_INTERVALS  # the guard is at most an eighth of the interval
    assert look_offset(short, 10 * US, 0) == 16 * US - 10 * US - 2 * US
    assert look_offset([80 * US] * 16, 20 * US, LOOK_DELAY_NS) == 80 * US - 20 * US - LOOK_GUARD_NS
    assert look_offset([25 * US] * LOOK_INTERVALS, 20 * US, LOOK_DELAY_NS) == LOOK_DELAY_NS


class Host:
    """A channel on a bare queue in nanosecond ticks, and the interrupts it raised."""

    def __init__(self) -> None:
        self.clock = GuestClock.create(10**9, 0)
        self.queue = TimerQueue()
        self.raised: list[int] = []
        self.channel = PvDeadlineChannel(self.clock, self.queue, self.raised.append)

    def run_until(self, until: int) -> None:
        while (wake := self.queue.next_wakeup()) is not None and wake <= until:
            for timer in self.queue.expire(wake):
                timer.callback(wake)


def test_promise_kicks_and_the_early_interrupt() -> None:
    host = Host()
    page, channel = host.channel.page, host.channel
    advance = pv_advance().advance_ns
    assert page.host_armed_ns == 0 and page.advance_ns == advance  # nothing promised yet
    page.deadline_ns = 1 * MS
    channel.kick(0)
    assert page.host_armed_ns == 1 * MS  # it will see anything later than that in time
    host.run_until(MS - advance - 1)
    assert host.raised == []
    host.run_until(MS - advance)
    assert host.raised == [MS - advance]  # early by the advance, never more than once
    look = MS + LOOK_DELAY_NS  # no steady interval yet
    assert page.host_armed_ns == look + advance
    page.margin_ns, page.margin_seq = 30 * US, page.margin_seq + 1  # woke 30 us early
    page.deadline_ns = 2 * MS  # later than the promise: no kick, the look finds it
    host.run_until(look)
    assert channel.stats.looks == 1 and channel.stats.margins == 1
    assert page.advance_ns == channel.advance.advance_ns < advance  # early: it shrinks
    assert page.host_armed_ns == 2 * MS
    assert channel.stats.kicks == 1 and channel.stats.fired == 1


def test_a_steady_stream_is_looked_at_just_before_its_next_wakeup() -> None:
    host = Host()
    page, channel = host.channel.page, host.channel
    page.deadline_ns = MS
    channel.kick(0)
    for i in range(1, LOOK_INTERVALS + 3):
        host.run_until(i * MS)  # the expiry (and, after it, the guest's event at i ms)
        page.deadline_ns = (i + 1) * MS
        assert page.deadline_ns >= page.host_armed_ns  # never earlier than the promise
    advance = channel.advance.advance_ns
    assert channel.look_ns == (LOOK_INTERVALS + 2) * MS + MS - advance - LOOK_GUARD_NS
    assert channel.stats.kicks == 1 and channel.stats.fired == LOOK_INTERVALS + 2


def test_an_earlier_deadline_than_the_promise_needs_a_kick() -> None:
    host = Host()
    page, channel = host.channel.page, host.channel
    page.deadline_ns = 5 * MS
    channel.kick(0)
    page.deadline_ns = 2 * MS  # earlier than promised: without a kick, fired at 5 ms - adv
    assert page.deadline_ns < page.host_armed_ns
    channel.kick(10 * US)
    host.run_until(3 * MS)
    assert host.raised == [2 * MS - channel.advance.advance_ns]
