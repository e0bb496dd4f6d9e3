"""The host timer thread on a fake clock and a fake waker, its loop driven step by step.

And the race it exists to prevent: ``ClockEventDevice``'s expiry runs on the timer thread
and re-arms a periodic timer; a ``SET_PERIODIC(0)`` from the vCPU thread landing between
its mode check and its re-arm must not leave the timer armed (Linux's ``hrtimer_cancel``
waits for a running callback). The interleaving is forced with events, not sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from fake_timers import TICK_HZ, WAIT_S, GatedClock, fake_thread, wait_until

from tickless.guest.abi import MIN_DELTA_NS, MIN_PERIOD_NS
from tickless.timers.clock import GuestClock
from tickless.timers.clockevents import ClockEventDevice, ClockEventState
from tickless.timers.hrtimer import HostTimer

# --- the loop, step by step ---------------------------------------------------------------


def test_arming_programs_the_waker_for_the_slop_wakeup() -> None:
    thread, _, waker = fake_thread(slop=100)
    a, b, c = (HostTimer(lambda now: None, name) for name in "abc")
    thread.arm(a, 1_000)
    assert waker.armed_at == 1_000
    thread.arm(b, 1_050)  # within slop: one wake-up runs both
    assert waker.armed_at == 1_050
    arms = waker.arms
    thread.arm(c, 5_000)  # later: the wake-up stays
    assert (waker.armed_at, waker.arms) == (1_050, arms)


def test_a_wakeup_runs_the_due_callbacks_in_order_and_counts() -> None:
    thread, clock, waker = fake_thread()
    ran: list[tuple[str, int]] = []
    timers = [HostTimer(lambda now, n=n: ran.append((n, now)), n) for n in "abc"]
    for timer, expires in zip(timers, (300, 100, 900), strict=True):
        thread.arm(timer, expires)
    clock.now = 320  # 20 ticks late for the wake-up planned at 100
    assert thread.run_once()
    assert ran == [("b", 320), ("a", 320)]
    assert waker.armed_at == 900
    s = thread.stats
    assert (s.wakeups, s.expiries, s.early_wakeups) == (1, 2, 0)
    assert (s.late_ticks_total, s.late_ticks_max) == (220, 220)
    assert timers[0].expires is None and timers[2].expires == 900


def test_woken_just_early_it_spins_to_the_tick() -> None:
    thread, clock, waker = fake_thread()
    ran: list[int] = []
    thread.arm(HostTimer(ran.append), 10_000)
    clock.readings = iter([9_000, 9_500, 10_000])  # 1 us early: within the spin limit
    thread.run_once()
    assert ran == [10_000]
    assert thread.stats.early_wakeups == 1 and waker.resyncs == 0


def test_woken_far_too_early_it_resyncs_and_sleeps_again() -> None:
    thread, clock, waker = fake_thread()
    ran: list[int] = []
    thread.arm(HostTimer(ran.append), 1_000_000)
    arms = waker.arms
    clock.now = 10_000
    thread.run_once()
    assert ran == []
    assert waker.resyncs == 1 and waker.arms == arms + 1 and waker.armed_at == 1_000_000
    clock.now = 1_000_000
    thread.run_once()
    assert ran == [1_000_000]


def test_a_callback_may_cancel_or_rearm_a_timer_taken_with_it() -> None:
    """Timers due in one wake-up run one at a time; an earlier one may still cancel or
    re-arm a later one, which then does not run now (as in Linux, where it is still queued)."""
    thread, clock, _ = fake_thread()
    ran: list[str] = []
    victim = HostTimer(lambda now: ran.append("victim"), "victim")
    moved = HostTimer(lambda now: ran.append("moved"), "moved")

    def first(now: int) -> None:
        ran.append("first")
        assert thread.cancel(victim)
        thread.arm(moved, 5_000)

    thread.arm(HostTimer(first, "first"), 100)
    thread.arm(victim, 200)
    thread.arm(moved, 300)
    clock.now = 300
    thread.run_once()
    assert ran == ["first"]
    assert thread.stats.expiries == 1 and victim.expires is None and moved.expires == 5_000
    clock.now = 5_000
    thread.run_once()
    assert ran == ["first", "moved"]


def test_a_failing_callback_does_not_stop_the_others() -> None:
    thread, clock, _ = fake_thread()
    ran: list[int] = []

    def boom(now: int) -> None:
        raise ValueError("guest gone")

    thread.arm(HostTimer(boom, "bad"), 10)
    thread.arm(HostTimer(ran.append, "good"), 20)
    clock.now = 20
    thread.run_once()
    assert ran == [20]
    assert thread.callback_errors == ["bad: ValueError('guest gone')"]


def test_stop_ends_the_loop_and_closes_the_waker() -> None:
    thread, _, waker = fake_thread()
    thread.stop()  # never started: nothing to join
    assert waker.woken and waker.closed
    assert not thread.run_once()


def test_a_device_may_cancel_its_own_timer_from_its_expiry() -> None:
    """No deadlock: the expiry's interrupt handler stops the device on the timer thread."""
    thread, clock, _ = fake_thread()
    dev: ClockEventDevice

    def interrupt(now: int) -> None:
        assert dev.set_next_event(0, now) == 0

    dev = ClockEventDevice(GuestClock.create(TICK_HZ, now_ticks=0), thread, interrupt)
    dev.set_periodic(MIN_PERIOD_NS, 0)
    clock.now = MIN_PERIOD_NS
    thread.run_once()
    assert dev.state is ClockEventState.SHUTDOWN
    assert dev.timer.expires is None and len(thread.queue) == 0


# --- the race ------------------------------------------------------------------------------


class Race:
    """A periodic device whose first expiry is held at the gate on a timer-thread step,
    while a "vCPU" thread makes ``call``; returns the order things happened in."""

    def __init__(self) -> None:
        self.thread, self.clock, _ = fake_thread()
        self.gate = GatedClock(GuestClock.create(TICK_HZ, now_ticks=0), "host-timer")
        self.log: list[str] = []
        self.dev = ClockEventDevice(self.gate, self.thread, self._interrupt)  # type: ignore[arg-type]

    def _interrupt(self, now: int) -> None:
        self.log.append("interrupt")

    def run(self, call: Callable[[ClockEventDevice], int]) -> None:
        assert self.dev.set_periodic(MIN_PERIOD_NS, 0) == 0
        self.clock.now = MIN_PERIOD_NS
        self.gate.armed = True
        step = threading.Thread(target=self.thread.run_once, name="host-timer")
        step.start()
        assert self.gate.reached.wait(WAIT_S)  # the expiry checked the state, and stops
        done = threading.Event()

        def vcpu() -> None:
            assert call(self.dev) == 0
            self.log.append("call returned")
            done.set()

        worker = threading.Thread(target=vcpu, name="vcpu")
        worker.start()
        # The vCPU's call either returned at once (the bug) or waits for the running expiry.
        wait_until(lambda: done.is_set() or self.thread.stats.cancel_waits > 0)
        self.gate.proceed.set()
        step.join(WAIT_S)
        worker.join(WAIT_S)
        assert done.is_set() and not step.is_alive()
        assert self.thread.callback_errors == []


def test_set_periodic_zero_during_the_expiry_leaves_nothing_armed() -> None:
    """SET_PERIODIC(0) while the periodic expiry is between its state check and its
    re-arm: the call returns only after the expiry finished, and nothing stays armed."""
    race = Race()
    race.run(lambda dev: dev.set_periodic(0, MIN_PERIOD_NS))
    assert race.log == ["interrupt", "call returned"]
    assert race.thread.stats.cancel_waits == 1
    assert race.dev.state is ClockEventState.SHUTDOWN and race.dev.next_event_ns is None
    assert race.dev.timer.expires is None and len(race.thread.queue) == 0


@pytest.mark.parametrize("delta", [MIN_DELTA_NS, 5 * MIN_PERIOD_NS])
def test_a_oneshot_during_the_expiry_replaces_the_periodic_tick(delta: int) -> None:
    """SET_CLOCKEVENT during a periodic expiry: the one-shot stands, the periodic re-arm
    does not overwrite it."""
    race = Race()
    race.run(lambda dev: dev.set_next_event(delta, MIN_PERIOD_NS))
    assert race.log == ["interrupt", "call returned"]
    assert race.dev.state is ClockEventState.ONESHOT
    assert race.dev.next_event_ns == MIN_PERIOD_NS + delta
    assert race.dev.timer.expires == MIN_PERIOD_NS + delta and len(race.thread.queue) == 1


def test_cancel_waits_only_for_its_own_timer() -> None:
    """A cancel of another timer returns while a callback runs."""
    thread, clock, _ = fake_thread()
    proceed = threading.Event()
    thread.arm(HostTimer(lambda now: proceed.wait(WAIT_S), "slow"), 10)
    other = HostTimer(lambda now: None, "other")
    thread.arm(other, 1_000)
    clock.now = 10
    step = threading.Thread(target=thread.run_once, name="host-timer")
    step.start()
    wait_until(lambda: thread.stats.expiries == 1)  # "slow" is running
    assert thread.cancel(other)
    assert thread.stats.cancel_waits == 0
    proceed.set()
    step.join(WAIT_S)
