"""Real guests on real KVM: the timer paths measured end to end, and the invariant that a
timer never fires early."""

from __future__ import annotations

import os
import signal
import threading
import time
from fractions import Fraction

import numpy as np
import pytest
from never_early import assert_never_early

from tickless.axes import TimerPath
from tickless.backends import measure
from tickless.devices.config import GuestConfig
from tickless.guest.abi import ETIME, RESULTS_GPA, Scenario
from tickless.results.spec import MeasureSpec
from tickless.vmm.host import VmmHost

pytestmark = pytest.mark.kvm


@pytest.mark.parametrize("timer", ["pv", "lguest", "lapic"])
def test_relative_method_never_fires_early(timer: str) -> None:
    """2000 events every 100 us: all recorded; lguest and lapic take an interrupt each,
    never early; pv spins to deadlines this near (no interrupt needed), so its check is on
    the interrupts it took (``tests/never_early.py``)."""
    record = measure(MeasureSpec(timer=timer, interval_ns=100_000, count=2000))
    assert record.stats.count == 2000
    assert len(record.intervals_ns) == 2000
    assert_never_early(record)
    assert record.advance == ("auto" if timer == "pv" else "off")
    assert record.stats.mean_ns > 100_000
    assert record.host.timer_events >= (0 if timer == "pv" else 2000)


@pytest.mark.parametrize("timer", ["pv", "lguest", "lapic"])
def test_absolute_method_deadlines_on_a_grid(timer: str) -> None:
    """cyclictest's mode: event i never before t0 + i*d. (That the mean interval tends
    to d itself on a grid depends on how late the last event was: a figure.)"""
    record = measure(MeasureSpec(timer=timer, interval_ns=200_000, count=300, method="absolute"))
    assert record.stats.count == 300
    assert len(record.lateness_ns) == 300
    assert min(record.lateness_ns) >= 0


def test_lguest_host_counts_match_the_events() -> None:
    """One hypercall per armed event (+ DONE), one injection, one exit and one host timer
    expiry each. (How many times the timer thread woke for them is a figure: an early
    wake-up sleeps again.)"""
    record = measure(MeasureSpec(timer="lguest", interval_ns=100_000, count=500))
    assert record.host.hypercalls == 501
    assert record.host.injections == 500
    assert record.host.exits == 501
    assert record.host.timer_events == 500


def test_periodic_guest_quantizes_to_ticks() -> None:
    """A 1000 HZ ticking guest asking for 50 us waits for a tick, 1 ms, per event: the
    median interval is a tick or more (tickless it would be ~50 us plus the latency).
    A loaded host can make it miss ticks, so there is no upper bound."""
    record = measure(
        MeasureSpec(timer="lguest", interval_ns=50_000, count=50, mode="periodic", hz=1000)
    )
    intervals = np.array(record.intervals_ns)
    assert intervals.min() >= 50_000
    assert float(np.median(intervals)) >= 900_000


def test_time_dilation_slows_the_guest_clock() -> None:
    """At rate 1/2, 200 events of 200 us guest time take at least 80 ms of host time
    (lower bounds: a slow host only makes them easier; the rate itself is checked
    between bracketing host reads in test_time_bending)."""
    t0 = time.monotonic()
    record = measure(MeasureSpec(timer="pv", interval_ns=200_000, count=200, rate=Fraction(1, 2)))
    wall_s = time.monotonic() - t0
    assert min(record.intervals_ns) >= 200_000  # in guest nanoseconds
    assert wall_s >= 200 * 2 * 200e-6
    # Guest intervals are about half the host's: d/2 of latency-free guest time per event.
    assert record.host.duration_s >= 2 * sum(record.intervals_ns) / 1e9 * 0.9


@pytest.mark.parametrize("timer", ["pv", "lguest"])
def test_spin_wait_also_never_early(timer: str) -> None:
    record = measure(MeasureSpec(timer=timer, interval_ns=300_000, count=300, wait="spin"))
    assert_never_early(record)


@pytest.mark.parametrize(
    ("scenario", "limits", "expected"),
    [
        (Scenario.BAD_DELTA, {}, "hypercall errors in a row (last: call SET_CLOCKEVENT -> -62)"),
        (Scenario.FLOOD, {"max_hypercall_rate": 2000.0}, "hypercall flood"),
        (Scenario.WILD_WRITE, {}, "outside its 4 MiB of memory"),
        (Scenario.TRIPLE_FAULT, {}, "triple-faulted"),
        (Scenario.BAD_LOG, {}, "lies outside guest memory"),
        (Scenario.EXCEPTION, {}, "#DE divide error"),
    ],
)
def test_misbehaving_guest_is_stopped_with_a_clear_message(
    scenario: Scenario, limits: dict[str, float], expected: str
) -> None:
    config = GuestConfig(scenario=scenario, **limits)  # type: ignore[arg-type]
    host = VmmHost()
    try:
        machine = host.boot(config)
        machine.start()
        assert machine.join(120), "the misbehaving guest was not stopped"
        assert not machine.outcome.ok
        assert expected in machine.outcome.reason
        # The host survives: its timer thread still serves a well-behaved guest.
        assert host.timers.error is None
        good = host.boot(GuestConfig(interval_ns=100_000, count=50))
        good.start()
        assert good.join(120)
        assert good.outcome.ok, good.outcome.reason
    finally:
        host.close()


def test_bad_delta_gets_etime_first() -> None:
    """lguest's ABI: a delta under the minimum returns -ETIME to the guest."""
    host = VmmHost()
    try:
        machine = host.boot(GuestConfig(scenario=Scenario.BAD_DELTA))
        machine.start()
        assert machine.join(120)
        first = machine.memory.read(RESULTS_GPA, 8, "test")
        assert int.from_bytes(first, "little", signed=True) == -ETIME
    finally:
        host.close()


def test_hypercall_round_trip_loop() -> None:
    """The benchmark's scenario: N NOP hypercalls, timestamped by the guest."""
    host = VmmHost()
    try:
        machine = host.boot(GuestConfig(scenario=Scenario.HYPERCALL_LOOP, count=1000))
        machine.start()
        assert machine.join(120)
        assert machine.outcome.ok, machine.outcome.reason
        stamps = machine.timestamps_ns(machine.outcome.events)
        assert len(stamps) == 1001
        assert machine.outcome.hypercalls == 1001
        assert np.all(np.diff(stamps) > 0)
    finally:
        host.close()


class _Interrupt(Exception):
    pass


def test_an_interrupted_join_leaves_the_guest_running_and_joinable() -> None:
    """A signal handler that raises while the main thread waits in ``join`` (Ctrl-C,
    SIGTERM) must not make a still-running guest look finished: Python < 3.13 marks a
    thread whose ``Thread.join`` was interrupted as stopped, and the machine was then
    closed under its vCPU (found by the SIGTERM test, a pv guest spinning in ring 3)."""

    def raise_interrupt(signum: int, frame: object) -> None:
        raise _Interrupt

    previous = signal.signal(signal.SIGUSR2, raise_interrupt)
    try:
        with VmmHost() as host:
            machine = host.boot(
                GuestConfig(timer=TimerPath.PV, interval_ns=100_000, count=1_000_000)
            )
            machine.start()
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR2)).start()
            with pytest.raises(_Interrupt):
                machine.join(30)
            assert machine.running
            machine.request_stop("test over")
            assert machine.join(5) and not machine.running
    finally:
        signal.signal(signal.SIGUSR2, previous)
