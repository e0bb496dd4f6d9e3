"""A record's labels say what ran, not what was asked: the scheduling policy read back from
the kernel for the thread that served the timer, and the wait a warped guest really used."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from tickless.axes import TimerPath
from tickless.backends import measure
from tickless.host.deadline_loop import DeadlineLoop
from tickless.host.realtime import RealtimePolicy
from tickless.host.timer_thread import HostTimerThread
from tickless.results.spec import MeasureSpec

START_BOUND_S = 30.0  # a thread starts within this on any machine
MS, S = 1_000_000, 1_000_000_000
TSC_HZ = 2_000_000_000  # any rate: no timer runs in these threads
INVALID_PRIORITY = 100  # SCHED_FIFO priorities end at 99: refused even for root


def _wait_for(condition: Callable[[], bool]) -> None:
    end = time.monotonic() + START_BOUND_S
    while not condition():
        assert time.monotonic() < end, "the thread never started"
        time.sleep(0.001)


def test_a_refused_fifo_priority_is_recorded_as_sched_other() -> None:
    """Asking for SCHED_FIFO 100 fails in both host threads: each must say SCHED_OTHER
    (the record used to say "SCHED_FIFO 90" whenever real time was asked)."""
    policy = RealtimePolicy(fifo_priority=INVALID_PRIORITY, hold_cpu_dma_latency=False)
    timers = HostTimerThread(TSC_HZ, policy=policy)
    timers.start()
    loop = DeadlineLoop(TSC_HZ, policy)
    try:
        _wait_for(lambda: timers.native_id is not None)
        assert any("SCHED_FIFO" in p for p in timers.problems), timers.problems
        assert timers.scheduling == "SCHED_OTHER"
        _wait_for(lambda: loop.scheduling != "not running")
        assert any("SCHED_FIFO" in p for p in loop.problems), loop.problems
        assert loop.scheduling == "SCHED_OTHER"
    finally:
        loop.close()
        timers.stop()
    assert timers.scheduling == "not running"  # a stopped thread has no policy to report


@pytest.mark.skipif(os.geteuid() != 0, reason="SCHED_FIFO needs root (CI runs as root)")
def test_an_applied_fifo_priority_is_read_back() -> None:
    policy = RealtimePolicy(fifo_priority=7, hold_cpu_dma_latency=False)
    timers = HostTimerThread(TSC_HZ, policy=policy)
    timers.start()
    loop = DeadlineLoop(TSC_HZ, RealtimePolicy(fifo_priority=11, hold_cpu_dma_latency=False))
    try:
        _wait_for(lambda: timers.native_id is not None)
        _wait_for(lambda: loop.scheduling != "not running")
        assert (timers.scheduling, loop.scheduling) == ("SCHED_FIFO 7", "SCHED_FIFO 11")
    finally:
        loop.close()
        timers.stop()


@pytest.mark.kvm
@pytest.mark.parametrize("timer", [TimerPath.PV, TimerPath.LGUEST])
def test_warped_pv_and_lguest_guests_both_wait_through_block(timer: TimerPath) -> None:
    """Under --warp-idle the two paths are one: every idle wait is a BLOCK hypercall whose
    one-shot is the host timer thread's, whichever device the guest was given. What
    differs is only without the warp: pv is served by the deadline loop, lguest by the
    host timer thread. The record says which."""
    warped = measure(MeasureSpec(timer=timer, interval_ns=100 * MS, count=5, warp_idle=True))
    plain = measure(MeasureSpec(timer=timer, interval_ns=1 * MS, count=5))
    assert warped.machine["guest_wait"].startswith("block"), warped.machine
    assert warped.machine["timer_thread"].startswith("host timer thread, "), warped.machine
    assert plain.machine["guest_wait"] == "halt", plain.machine
    served_by = "deadline loop, " if timer is TimerPath.PV else "host timer thread, "
    assert plain.machine["timer_thread"].startswith(served_by), plain.machine
