"""The host timer queue: never early, at most ``slop`` late on an ideal host, nothing lost,
nothing fired twice, and coalescing exactly as Xen's timer_slop describes."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickless.timers.hrtimer import HostTimer, TimerQueue

N_TIMERS = 4

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("arm"),
            st.integers(0, N_TIMERS - 1),
            # expiry offset from now (never in the past); small ones make expiries collide
            st.integers(0, 8) | st.integers(0, 60),
        ),
        st.tuples(st.just("cancel"), st.integers(0, N_TIMERS - 1), st.just(0)),
        st.tuples(st.just("advance"), st.just(0), st.integers(0, 8) | st.integers(0, 60)),
    ),
    max_size=60,
)


def _noop(now: int) -> None:
    pass


@dataclass
class Model:
    """What the queue should hold, kept independently of it."""

    slop: int
    now: int = 0
    armed: dict[int, tuple[int, int]] = field(default_factory=dict)  # timer -> (arming, exp)
    armings: int = 0
    superseded: set[int] = field(default_factory=set)  # armings replaced or cancelled
    fired: list[int] = field(default_factory=list)  # armings, in firing order
    wakeups: int = 0


class Harness:
    """An ideal host: it wakes exactly at ``next_wakeup()`` and expires what is due."""

    def __init__(self, slop: int) -> None:
        self.queue = TimerQueue(slop_ticks=slop)
        self.timers = [HostTimer(_noop, name=f"t{i}") for i in range(N_TIMERS)]
        self.index = {id(t): i for i, t in enumerate(self.timers)}
        self.model = Model(slop)

    def arm(self, i: int, offset: int) -> None:
        m = self.model
        if i in m.armed:
            m.superseded.add(m.armed[i][0])
        m.armed[i] = (m.armings, m.now + offset)
        m.armings += 1
        self.queue.arm(self.timers[i], m.now + offset)

    def cancel(self, i: int) -> None:
        m = self.model
        was_armed = i in m.armed
        if was_armed:
            m.superseded.add(m.armed.pop(i)[0])
        assert self.queue.cancel(self.timers[i]) is was_armed
        assert self.timers[i].expires is None

    def run_until(self, target: int | None) -> None:
        """Let virtual time pass to ``target`` (None: until the queue is empty)."""
        m = self.model
        while True:
            wake = self.queue.next_wakeup()
            if wake is None or (target is not None and wake > target):
                break
            m.now = max(m.now, wake)
            m.wakeups += 1
            due = self.queue.expire(m.now)
            assert due, "the host woke for nothing"
            expiries = []
            for timer in due:
                i = self.index[id(timer)]
                assert i in m.armed, f"{timer.name} fired while not armed"
                arming, expires = m.armed.pop(i)
                assert expires <= m.now, "fired early"
                assert m.now - expires <= m.slop, "fired more than slop late"
                assert timer.expires is None, "an expired timer still reads as armed"
                expiries.append(expires)
                m.fired.append(arming)
            assert expiries == sorted(expiries), "expire() out of expiry order"
            self.check_len()
        if target is not None:
            m.now = max(m.now, target)

    def check_len(self) -> None:
        assert len(self.queue) == len(self.model.armed)
        for i, timer in enumerate(self.timers):
            expected = self.model.armed.get(i)
            assert timer.expires == (None if expected is None else expected[1])


@settings(max_examples=300)
@given(st.sampled_from([0, 1, 5, 10, 50]), ops)
def test_queue_against_model(slop: int, program: list[tuple[str, int, int]]) -> None:
    """Random arm / re-arm / cancel / advance sequences on an ideal host: never early, at
    most slop late, in expiry order, each arming fires once, replaced armings never."""
    h = Harness(slop)
    for op, i, value in program:
        if op == "arm":
            h.arm(i, value)
        elif op == "cancel":
            h.cancel(i)
        else:
            h.run_until(h.model.now + value)
        h.check_len()
    h.run_until(None)
    m = h.model
    assert len(h.queue) == 0
    assert h.queue.next_wakeup() is None
    assert len(m.fired) == len(set(m.fired)), "an arming fired twice"
    live = set(range(m.armings)) - m.superseded
    assert set(m.fired) == live, "an armed timer was lost, or a replaced arming fired"


def test_rearm_fires_only_at_latest_expiry() -> None:
    """Re-arming forgets the earlier expiry, whether it moves the timer later or earlier."""
    q = TimerQueue()
    a = HostTimer(_noop, "a")
    q.arm(a, 10)
    q.arm(a, 30)
    assert len(q) == 1
    assert q.next_wakeup() == 30
    assert q.expire(29) == []
    assert q.expire(30) == [a]
    q.arm(a, 50)
    q.arm(a, 40)
    assert q.expire(45) == [a]
    assert q.expire(10**9) == []
    assert len(q) == 0


def test_cancel_returns_whether_armed() -> None:
    """cancel() reports an armed timer once, and a cancelled timer never fires."""
    q = TimerQueue()
    a = HostTimer(_noop)
    assert q.cancel(a) is False
    q.arm(a, 5)
    assert q.cancel(a) is True
    assert q.cancel(a) is False
    assert len(q) == 0
    assert q.next_wakeup() is None
    assert q.expire(100) == []


@pytest.mark.parametrize("slop", [1, 7, 100])
def test_coalescing_window(slop: int) -> None:
    """e0 < e1 <= e0+S < e2: one wake-up at e1 runs the first two, the third waits."""
    q = TimerQueue(slop_ticks=slop)
    e0 = 1000
    e1, e2 = e0 + slop, e0 + slop + 1
    t0, t1, t2 = HostTimer(_noop, "t0"), HostTimer(_noop, "t1"), HostTimer(_noop, "t2")
    q.arm(t2, e2)
    q.arm(t1, e1)
    q.arm(t0, e0)
    assert q.next_wakeup() == e1
    assert q.expire(e1) == [t0, t1]
    assert len(q) == 1
    assert q.next_wakeup() == e2
    assert q.expire(e2) == [t2]


def test_no_slop_one_wakeup_per_timer() -> None:
    """Slop 0: three timers at distinct expiries need three wake-ups, one timer each."""
    q = TimerQueue(slop_ticks=0)
    timers = [HostTimer(_noop, f"t{i}") for i in range(3)]
    for timer, e in zip(timers, (100, 101, 105), strict=True):
        q.arm(timer, e)
    batches = []
    while (wake := q.next_wakeup()) is not None:
        batches.append((wake, q.expire(wake)))
    assert batches == [(100, [timers[0]]), (101, [timers[1]]), (105, [timers[2]])]


def test_coalescing_ignores_cancelled_timer_in_window() -> None:
    """A cancelled timer inside the window does not stretch the wake-up to its expiry."""
    q = TimerQueue(slop_ticks=100)
    t0, t1 = HostTimer(_noop), HostTimer(_noop)
    q.arm(t0, 1000)
    q.arm(t1, 1090)
    q.cancel(t1)
    assert q.next_wakeup() == 1000
    q.arm(t1, 1050)
    q.arm(t1, 2000)  # re-armed out of the window: its old entry must not count
    assert q.next_wakeup() == 1000


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=40))
def test_wakeup_counts(expiries: list[int]) -> None:
    """Slop 0: one wake-up per distinct expiry. Slop S: each wake-up drains the window
    [first, first+S] of its earliest timer, so batches start more than S apart and there
    are never more wake-ups than with slop 0; every timer runs exactly once either way."""
    for slop in (0, 250):
        q = TimerQueue(slop_ticks=slop)
        timers = [HostTimer(_noop) for _ in expiries]
        expiry_of = {id(t): e for t, e in zip(timers, expiries, strict=True)}
        for timer, e in zip(timers, expiries, strict=True):
            q.arm(timer, e)
        wakes: list[int] = []
        firsts: list[int] = []
        fired: list[HostTimer] = []
        while (wake := q.next_wakeup()) is not None:
            batch = q.expire(wake)
            wakes.append(wake)
            firsts.append(expiry_of[id(batch[0])])
            assert max(expiry_of[id(t)] for t in batch) == wake
            fired += batch
        assert sorted(map(id, fired)) == sorted(map(id, timers))
        if slop == 0:
            assert wakes == sorted(set(expiries))
        else:
            assert len(wakes) <= len(set(expiries))
            assert all(b - a > slop for a, b in itertools.pairwise(firsts))
            assert all(w - f <= slop for w, f in zip(wakes, firsts, strict=True))


def test_negative_slop_rejected() -> None:
    """A negative slop would let timers fire early."""
    with pytest.raises(ValueError):
        TimerQueue(slop_ticks=-1)
