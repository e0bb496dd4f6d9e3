"""The PV deadline device: its host loop (driven here through a page of our own, playing
the guest) and the device in real guests (kvm marker).

The loop runs against the real TSC, so these tests wait for what they expect with a
generous deadline and then assert on counts and on the guest-clock times the loop logs;
nothing passes by a lucky sleep.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from collections.abc import Callable, Iterator

import pytest
from never_early import assert_never_early

from tickless.axes import Load, Method
from tickless.backends import measure
from tickless.guest.abi import MAX_DELTA_NS, Shared
from tickless.host.deadline_loop import (
    EVENT_FIELDS,
    ChannelKind,
    ChannelStats,
    DeadlineLoop,
    advance_step,
)
from tickless.host.tsc import rdtsc
from tickless.results.spec import MeasureSpec
from tickless.timers.clock import GuestClock
from tickless.timers.precise import AdaptiveAdvance

MS = 1_000_000


def _tsc_hz() -> int:
    t0, m0 = rdtsc(), time.monotonic_ns()
    time.sleep(0.05)
    return (rdtsc() - t0) * 1_000_000_000 // (time.monotonic_ns() - m0)


class FakeGuest:
    """A shared page in host memory and the guest's side of the protocol (``pv_wait``)."""

    def __init__(self, loop: DeadlineLoop, tsc_hz: int, advance: AdaptiveAdvance) -> None:
        self.page = Shared()
        self.clock = GuestClock.create(tsc_hz, rdtsc())
        self.kick_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.loop = loop
        self.kicks = 0
        # vm_fd -1: the injection's ioctl fails (EBADF): the loop counts each expiry as a
        # failed injection (``expiries`` counts both kinds) and logs it.
        self.channel = loop.add(
            ChannelKind.PAGE,
            -1,
            0xE0,
            self.clock,
            advance,
            page_address=ctypes.addressof(self.page),
            kick_fd=self.kick_fd,
            log_capacity=1000,
        )

    def now_ns(self) -> int:
        return self.clock.ns_at(rdtsc())

    def kick(self) -> None:
        self.kicks += 1
        os.eventfd_write(self.kick_fd, 1)

    def publish(self, deadline_ns: int) -> bool:
        """Write the deadline, kick only if it is earlier than the promise; True if kicked."""
        self.page.pv_deadline_ns = deadline_ns
        promise = int(self.page.pv_host_armed_ns)
        if promise == 0 or deadline_ns < promise:
            self.kick()
            return True
        return False

    def stats(self) -> ChannelStats:
        return self.loop.stats(self.channel)

    def close(self) -> None:
        self.loop.remove(self.channel)
        os.close(self.kick_fd)


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("the deadline loop did not get there in time")
        time.sleep(0.0005)


@pytest.fixture
def loop() -> Iterator[DeadlineLoop]:
    tsc_hz = _tsc_hz()
    loop = DeadlineLoop(tsc_hz)
    loop.test_tsc_hz = tsc_hz  # type: ignore[attr-defined]
    yield loop
    loop.close()


def guest(loop: DeadlineLoop, advance_ns: int = 20_000) -> FakeGuest:
    advance = AdaptiveAdvance(advance_ns=advance_ns, min_ns=advance_ns, max_ns=advance_ns)
    return FakeGuest(loop, loop.test_tsc_hz, advance)  # type: ignore[attr-defined]


# --- the advance ----------------------------------------------------------------------------


@pytest.mark.parametrize("start_ns", [1_000, 50_000, 250_000])
@pytest.mark.parametrize("grow_shift", [0, 7])
def test_the_advance_converges_on_the_chain_plus_the_target(start_ns: int, grow_shift: int) -> None:
    """The loop's own arithmetic (C), fed the margins a constant 80 us wake-up chain gives."""
    chain_ns = 80_000
    advance = AdaptiveAdvance(advance_ns=start_ns, grow_shift=grow_shift)
    for _ in range(5_000):
        advance.advance_ns = advance_step(advance, advance.advance_ns - chain_ns)
    target = chain_ns + advance.target_margin_ns
    assert abs(advance.advance_ns - target) <= 1 << max(grow_shift, advance.shrink_shift)


# --- the loop, driven by a fake guest ----------------------------------------------------------


def test_an_expiry_comes_early_by_the_advance_and_never_twice(loop: DeadlineLoop) -> None:
    g = guest(loop)
    deadline = g.now_ns() + 20 * MS
    # Nothing armed yet, so the first deadline needs a kick, unless the loop's first look at
    # the new channel came between our write and our read of its promise (Dekker's order).
    kicked = g.publish(deadline)
    in_time = g.now_ns() < deadline - 20_000  # else this thread was descheduled for long
    wait_until(lambda: g.stats().expiries == 1)
    row = loop.stats(g.channel)
    assert row.kicks == int(kicked)
    if not in_time:
        pytest.skip("the test thread published its deadline too late to check the plan")
    assert row.past_deadlines == 0
    log = g.channel.log
    assert log is not None
    logged = dict(zip(EVENT_FIELDS, (int(v) for v in log[0]), strict=True))
    assert logged["deadline_ns"] == deadline
    planned = g.clock.ns_at(logged["planned_wake_tsc"])
    assert deadline - 20_000 <= planned <= deadline - 20_000 + 1  # early by the advance
    assert g.clock.ns_at(logged["wake_tsc"]) >= planned  # the loop never wakes before plan
    time.sleep(0.03)
    assert g.stats().expiries == 1  # the page still holds that deadline: delivered once


def test_a_steady_stream_re_arms_without_kicks(loop: DeadlineLoop) -> None:
    """The exit-only-when-earlier rule: after the first few expiries the loop knows the
    stream's interval and, as it fires one deadline, promises to look again just before
    the next is due, so a guest that writes it in time never kicks. Whether this test's
    thread writes in time depends on the host's load, so what is asserted is the loop's
    side: whenever the promise is read before the loop could have looked again (half a
    step before the next deadline), it covers that deadline (no kick needed); and every
    kick is counted once."""
    g = guest(loop)
    step_ns = 10 * MS
    deadline = g.now_ns() + step_ns
    predicted = 0
    for i in range(40):
        promise = int(g.page.pv_host_armed_ns)
        read_by_ns = g.now_ns()  # after the promise was read
        if i >= 20 and read_by_ns < deadline - step_ns // 2:
            assert 0 < promise <= deadline, (i, promise, deadline)
            assert not g.publish(deadline)  # in time: no kick
            predicted += 1
            wait_until(lambda i=i: g.stats().expiries == i + 1)
            deadline += step_ns
            continue
        g.publish(deadline)
        wait_until(lambda i=i: g.stats().expiries == i + 1)
        deadline += step_ns
    assert g.stats().expiries == 40 and g.stats().kicks == g.kicks
    print(f"{predicted} of 20 deadlines were written in time, each without a kick")


def test_an_earlier_deadline_needs_its_kick_and_gets_it_on_time(loop: DeadlineLoop) -> None:
    g = guest(loop)
    later = g.now_ns() + 400 * MS
    g.publish(later)
    wait_until(lambda: int(g.page.pv_host_armed_ns) == later)  # the loop armed it
    earlier = g.now_ns() + 30 * MS
    assert g.publish(earlier)  # earlier than the promise: the rule says kick
    wait_until(lambda: g.stats().expiries == 1)
    log = g.channel.log
    assert log is not None and int(log[0][0]) == earlier


def test_without_its_kick_an_earlier_deadline_waits_for_the_promise(loop: DeadlineLoop) -> None:
    """What the kick is for: unkicked, the loop sees the earlier deadline only when it looks
    again, at the promise it made (here 150 ms later than the deadline)."""
    g = guest(loop)
    later = g.now_ns() + 200 * MS
    g.publish(later)
    wait_until(lambda: int(g.page.pv_host_armed_ns) == later)
    earlier = g.now_ns() + 50 * MS
    g.page.pv_deadline_ns = earlier  # no kick
    wait_until(lambda: g.stats().expiries == 1)
    log = g.channel.log
    assert log is not None
    woke_ns = g.clock.ns_at(int(log[0][2]))
    assert int(log[0][0]) == earlier and woke_ns >= later - 20_000


# --- a guest that writes garbage ----------------------------------------------------------------


def test_a_past_deadline_fires_once_at_once_and_is_counted(loop: DeadlineLoop) -> None:
    g = guest(loop)
    g.publish(max(1, g.now_ns() - 5 * MS))
    wait_until(lambda: g.stats().expiries == 1)
    time.sleep(0.02)
    stats = g.stats()
    assert stats.expiries == 1 and stats.past_deadlines == 1


def test_a_far_deadline_is_looked_at_again_not_slept_on(loop: DeadlineLoop) -> None:
    g = guest(loop)
    now = g.now_ns()
    g.publish(now + 10 * MAX_DELTA_NS)
    wait_until(lambda: g.stats().far_deadlines == 1)
    promise = int(g.page.pv_host_armed_ns)
    assert now < promise <= now + MAX_DELTA_NS + 20_000 + 1_000_000_000
    assert g.stats().expiries == 0


def test_torn_writes_and_a_storm_of_kicks_leave_other_guests_served(loop: DeadlineLoop) -> None:
    """One guest writes its deadline 32 bits at a time, garbage and kicks as fast as it can;
    another guest's deadline still fires, and the loop is at most one expiry per value."""
    bad, good = guest(loop), guest(loop)
    offset = Shared.pv_deadline_ns.offset
    half = (ctypes.c_uint32 * 2).from_address(ctypes.addressof(bad.page) + offset)
    good_deadline = good.now_ns() + 50 * MS
    good.publish(good_deadline)
    values = 0
    end = time.monotonic() + 0.2
    while time.monotonic() < end:
        half[values % 2] = (values * 0x9E3779B9) & 0xFFFFFFFF
        bad.kick()
        values += 1
    wait_until(lambda: good.stats().expiries == 1)
    log = good.channel.log
    assert log is not None and int(log[0][0]) == good_deadline
    assert bad.stats().expiries <= values
    bad.close()  # returns: the loop is not wedged
    assert good.stats().expiries == 1


def test_a_refused_injection_counts_as_failed_never_as_fired(loop: DeadlineLoop) -> None:
    """The fake guest's VM descriptor is not one, so the injection's ioctl fails (EBADF):
    the expiry counts as a failed injection with its errno, the record's note says so, and
    ``fired`` (what reports call injections) stays 0."""
    g = guest(loop)
    g.publish(g.now_ns() + 2 * MS)
    wait_until(lambda: g.stats().expiries == 1)
    stats = g.stats()
    assert (stats.fired, stats.failed_injections) == (0, 1)
    assert stats.inject_errno == errno.EBADF
    assert stats.logged == 1  # the log still shows when the loop woke for it
    note = stats.failure_note("pv")
    assert note is not None and "1 of 1 injections failed" in note
    assert loop.totals().fired == 0  # host-wide: nothing was injected


# --- real guests -------------------------------------------------------------------------------


@pytest.mark.kvm
@pytest.mark.parametrize("load", [Load.IDLE, Load.CPU, Load.IO])
@pytest.mark.parametrize("method", [Method.RELATIVE, Method.ABSOLUTE])
def test_pv_is_never_early(load: Load, method: Method) -> None:
    spec = MeasureSpec(timer="pv", interval_ns=500_000, count=300, loads={load}, method=method)
    record = measure(spec)
    assert_never_early(record)  # pv spins: its interrupts, not its delivered events
    assert record.host.timer_events >= 1


@pytest.mark.kvm
def test_a_real_guest_re_arms_without_exits() -> None:
    """pv at 1 ms: its exits are its kicks and the one DONE hypercall, every re-arm through
    the page (how many kicks a run needs depends on the host's timing: a figure, in its
    note); lguest, the same stream, exits for every re-arm."""
    pv = measure(MeasureSpec(timer="pv", interval_ns=1_000_000, count=300))
    lguest = measure(MeasureSpec(timer="lguest", interval_ns=1_000_000, count=300))
    (note,) = [n for n in pv.notes if "the guest kicked the host" in n]
    kicks = int(note.split("the guest kicked the host ")[1].split(" ")[0])
    assert pv.host.hypercalls == 1, pv.host  # DONE only
    assert pv.host.exits == kicks + 1, (pv.host, note)
    # an interrupt fired for every event reached through one (a guest running late may
    # reach a near deadline by spinning alone, without one)
    assert pv.interrupt_lateness is not None
    assert pv.host.injections == pv.host.timer_events >= pv.interrupt_lateness.count >= 1
    assert lguest.host.hypercalls == lguest.host.exits == 301, lguest.host
    assert pv.lateness.early_count == lguest.lateness.early_count == 0


@pytest.mark.kvm
def test_explain_breaks_every_interrupt_event_down() -> None:
    record = measure(MeasureSpec(timer="pv", interval_ns=2_000_000, count=100, explain=True))
    b = record.explain
    assert b is not None
    # each event is explained (it came by interrupt) or spun to or neither, never both
    assert len(b.event_index) >= 1 and b.spun_events + len(b.event_index) <= 100
    assert len(set(b.event_index)) == len(b.event_index)
    assert all(1 <= i <= 100 for i in b.event_index)
    assert {len(v) for v in b.parts_ns.values()} == {len(b.event_index)}
    assert all(v >= 0 for v in b.parts_ns["spin"])
    assert set(b.dominant) == {"mean", "p99", "max"}
    assert set(b.dominant.values()) <= {"host_wake_late", "injection", "guest_entry", "clock_gap"}


@pytest.mark.kvm
def test_several_guests_measure_together() -> None:
    record = measure(MeasureSpec(timer="pv", interval_ns=1_000_000, count=100, guests=3))
    assert [row.name for row in record.guest_rows] == ["guest0", "guest1", "guest2"]
    assert all(row.events == 100 and row.early_count == 0 for row in record.guest_rows)
    assert record.stats.count == 300
    # each event reached through an interrupt had one fired for it; a late-running guest
    # may reach a near deadline by spinning alone, so not every event has one
    assert record.interrupt_lateness is not None
    assert record.host.timer_events >= record.interrupt_lateness.count >= 1
