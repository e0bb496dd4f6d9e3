"""Fakes for the host timer thread's seams (its clock and its waker) and a gate that holds
a callback mid-way, so tests can force an interleaving with events instead of sleeps."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from tickless.host.timer_thread import HostTimerThread
from tickless.timers.clock import GuestClock

TICK_HZ = 10**9  # ticks are nanoseconds
WAIT_S = 10.0  # only bounds a failing test; a passing one never waits this long


class FakeClock:
    """Host ticks: ``now``, or the next of ``readings`` while any are left."""

    def __init__(self) -> None:
        self.now = 0
        self.readings: Iterator[int] = iter(())

    def __call__(self) -> int:
        self.now = next(self.readings, self.now)
        return self.now


class FakeWaker:
    """Records what the thread asks for; ``wait`` returns at once (the test steps)."""

    def __init__(self) -> None:
        self.armed_at: int | None = None
        self.arms = 0
        self.resyncs = 0
        self.woken = self.closed = False

    def arm_at(self, ticks: int | None) -> None:
        self.armed_at = ticks
        self.arms += 1

    def wake_now(self) -> None:
        self.woken = True

    def wait(self) -> None:
        pass

    def resync(self) -> None:
        self.resyncs += 1

    def close(self) -> None:
        self.closed = True


def fake_thread(slop: int = 0) -> tuple[HostTimerThread, FakeClock, FakeWaker]:
    clock, waker = FakeClock(), FakeWaker()
    return HostTimerThread(TICK_HZ, slop_ticks=slop, clock=clock, waker=waker), clock, waker


def wait_until(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class GatedClock:
    """A guest clock whose reading, on the thread named ``gate_thread``, stops at a gate
    once: the device's expiry reads the clock between its state check and its re-arm."""

    def __init__(self, clock: GuestClock, gate_thread: str) -> None:
        self.clock = clock
        self.gate_thread = gate_thread
        self.reached = threading.Event()
        self.proceed = threading.Event()
        self.armed = False

    def ns_at(self, ticks: int) -> int:
        if self.armed and threading.current_thread().name == self.gate_thread:
            self.armed = False
            self.reached.set()
            assert self.proceed.wait(WAIT_S)
        return self.clock.ns_at(ticks)

    def ticks_at_or_after(self, ns: int) -> int:
        return self.clock.ticks_at_or_after(ns)

    def delta_ticks_at_least(self, delta_ns: int) -> int:
        return self.clock.delta_ticks_at_least(delta_ns)

    @property
    def tsc_timestamp(self) -> int:
        return self.clock.tsc_timestamp

    @property
    def frozen(self) -> bool:
        return self.clock.frozen
