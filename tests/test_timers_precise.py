"""The precise timer channel, host side, on a fake clock: its answers, its early wake-up,
its adaptive advance, and its expiry racing a new deadline on the host timer thread."""

from __future__ import annotations

import threading

import pytest
from fake_timers import TICK_HZ, WAIT_S, GatedClock, fake_thread, wait_until

from tickless.guest.abi import EINVAL, ETIME, MAX_DELTA_NS
from tickless.timers.clock import GuestClock
from tickless.timers.hrtimer import TimerQueue
from tickless.timers.precise import AdaptiveAdvance, PreciseTimerChannel

START_NS = 10**12


class Host:
    """A channel on a TimerQueue, with a host that wakes exactly when asked."""

    def __init__(self, advance_ns: int = 80_000) -> None:
        self.queue = TimerQueue()
        self.clock = GuestClock.create(TICK_HZ, now_ticks=0, system_time_ns=START_NS)
        self.fired: list[int] = []
        self.chan = PreciseTimerChannel(
            self.clock, self.queue, self.fired.append, AdaptiveAdvance(advance_ns=advance_ns)
        )

    def wake(self, ticks: int) -> None:
        for timer in self.queue.expire(ticks):
            timer.callback(ticks)


@pytest.mark.parametrize(
    ("delta_ns", "code"),
    [(-1, -ETIME), (0, -ETIME), (MAX_DELTA_NS + 1, -EINVAL)],
)
def test_refused_deadlines_arm_nothing(delta_ns: int, code: int) -> None:
    """A deadline not in the future gets -ETIME (the guest runs it itself), one beyond the
    maximum delta -EINVAL; a refusal is counted and leaves the channel as it was."""
    h = Host()
    now = 1_000
    assert h.chan.set_deadline(START_NS + now + delta_ns, now, None) == code
    assert h.chan.stats.rejected == 1 and h.chan.stats.armed == 0
    assert h.chan.deadline_ns is None and len(h.queue) == 0


def test_the_host_wakes_early_by_the_advance() -> None:
    h = Host(advance_ns=30_000)
    deadline_ns = START_NS + 1_000_000
    assert h.chan.set_deadline(deadline_ns, 0, None) == 0
    assert h.chan.timer.expires == 1_000_000 - 30_000
    assert h.chan.deadline_ns == deadline_ns
    h.wake(970_000)
    assert h.fired == [970_000]
    assert h.chan.stats.fired == 1 and h.chan.stats.late_wakeups == 0
    assert h.chan.deadline_ns is None


def test_an_advance_past_now_wakes_at_once() -> None:
    """A deadline closer than the advance: the host timer is armed for now, not the past."""
    h = Host(advance_ns=80_000)
    assert h.chan.set_deadline(START_NS + 5_000 + 10_000, 5_000, None) == 0
    assert h.chan.timer.expires == 5_000


def test_a_wakeup_after_the_deadline_is_counted_late() -> None:
    h = Host(advance_ns=1_000)
    h.chan.set_deadline(START_NS + 50_000, 0, None)
    h.wake(60_000)
    assert h.chan.stats.late_wakeups == 1


def test_zero_cancels() -> None:
    h = Host()
    h.chan.set_deadline(START_NS + 1_000_000, 0, None)
    assert h.chan.set_deadline(0, 10, None) == 0
    assert h.chan.deadline_ns is None and len(h.queue) == 0
    h.wake(10**9)
    assert h.fired == []


def test_the_advance_grows_on_late_margins_and_shrinks_slowly() -> None:
    """A late guest (negative margin) grows the advance by the shortfall; a needlessly
    early one shrinks it by 1/32 of the surplus; it stays within its bounds."""
    h = Host(advance_ns=80_000)
    h.chan.set_deadline(START_NS + 10**6, 0, last_margin_ns=-2_000)
    assert h.chan.advance.advance_ns == 80_000 + 7_000  # target margin 5 us
    h.chan.set_deadline(START_NS + 10**6, 0, last_margin_ns=5_000 + 32_000)
    assert h.chan.advance.advance_ns == 87_000 - 1_000
    h.chan.set_deadline(START_NS + 10**6, 0, last_margin_ns=-(10**9))  # clamped
    assert h.chan.advance.advance_ns == AdaptiveAdvance().max_ns
    assert h.chan.timer.expires == 10**6 - AdaptiveAdvance().max_ns


def test_a_new_deadline_during_the_expiry_stands() -> None:
    """SET_PRECISE from the vCPU while the previous expiry runs on the timer thread: the
    call waits for it, so the expiry cannot clear the new deadline."""
    thread, clock, _ = fake_thread()
    gate = GatedClock(GuestClock.create(TICK_HZ, now_ticks=0), "host-timer")
    chan = PreciseTimerChannel(gate, thread, lambda now: None, AdaptiveAdvance(advance_ns=1_000))  # type: ignore[arg-type]
    assert chan.set_deadline(100_000, 0, None) == 0
    clock.now = 99_000
    gate.armed = True  # the expiry reads the clock for its lateness check, and stops
    step = threading.Thread(target=thread.run_once, name="host-timer")
    step.start()
    assert gate.reached.wait(WAIT_S)
    done = threading.Event()

    def vcpu() -> None:
        assert chan.set_deadline(500_000, 99_500, None) == 0
        done.set()

    worker = threading.Thread(target=vcpu, name="vcpu")
    worker.start()
    wait_until(lambda: done.is_set() or thread.stats.cancel_waits > 0)
    gate.proceed.set()
    step.join(WAIT_S)
    worker.join(WAIT_S)
    assert done.is_set()
    assert chan.deadline_ns == 500_000 and chan.timer.expires == 499_000
    assert chan.stats.fired == 1 and chan.stats.armed == 2
