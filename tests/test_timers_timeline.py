"""A group's guest clock (``timers/timeline.py``) and what follows it, pure Python, no KVM:
re-anchoring on a new rate, freeze and thaw, the idle warp, the clock-event device
re-armed on the re-anchored clock, and the PV clock page's update protocol.

Host ticks come from a fake tick source the test moves by hand (``Ticks``), so every
property is checked at exact host ticks, with no sleeping.
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickless.devices.pvclock import PvclockPage
from tickless.guest.abi import MIN_PERIOD_NS, PvclockVcpuTimeInfo
from tickless.timers.clock import GuestClock
from tickless.timers.clockevents import ClockEventDevice, ClockEventState
from tickless.timers.hrtimer import TimerQueue
from tickless.timers.timeline import HOLD_POLL_NS, WARP_TAKE_TIMEOUT_NS, Member, Timeline

S = 10**9
TICK_HZ = 10**9  # host ticks are nanoseconds: at rate 1 a guest ns is a host tick
TSC_HZ = 2_400_000_000  # a realistic TSC, where ticks and guest ns differ
START = 1 << 40  # the host has been up for a while

RATES = [Fraction(1), Fraction(1, 10), Fraction(1, 2), Fraction(2), Fraction(10), Fraction(3, 7)]


class Ticks:
    """The host's tick source: ``now``, moved only by the test."""

    def __init__(self, now: int = START) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.now


@dataclass(eq=False)  # listeners are told apart by identity
class Recorder:
    """A listener that records the order of its calls and the host tick it was told."""

    ticks: Ticks
    calls: list[tuple[str, int]] = field(default_factory=list)
    clocks: list[GuestClock] = field(default_factory=list)

    def begin_clock_change(self) -> None:
        self.calls.append(("begin", self.ticks.reads))

    def clock_changed(self, clock: GuestClock, now_ticks: int) -> None:
        self.calls.append(("changed", now_ticks))
        self.clocks.append(clock)


def timeline(
    rate: Fraction | int = 1, warp: bool = False, hz: int = TICK_HZ
) -> tuple[Timeline, Ticks]:
    ticks = Ticks()
    return Timeline(hz, ticks, rate, warp), ticks


def scaled_close(got: int, rate: Fraction, dt_ticks: int, hz: int) -> bool:
    """``got`` guest ns is what ``dt_ticks`` at ``rate`` give, up to pvclock's fixed point
    (a 32-bit multiplier: a relative error under 1e-8, and a few ns of truncation)."""
    want = rate * dt_ticks * 10**9 / hz
    return abs(got - want) <= 4 + want * Fraction(1, 10**8)


# --- 1. re-anchoring: no jump, never backwards -------------------------------------------------


@pytest.mark.parametrize("old", RATES)
@pytest.mark.parametrize("new", RATES)
def test_set_rate_reanchors_without_a_jump(old: Fraction, new: Fraction) -> None:
    """The new anchor reads what the old clock read at that host tick, and from there the
    new rate applies (at a TSC-like tick rate, so ticks and ns differ)."""
    tl, ticks = timeline(old, hz=TSC_HZ)
    ticks.now += 12_345_678_901
    before = tl.now_ns()
    tl.set_rate(new)
    assert tl.clock.tsc_timestamp == ticks.now
    assert tl.clock.system_time_ns == before
    assert tl.now_ns() == before
    assert tl.rate == new and tl.clock.rate == new and tl.rate_changes == 1
    ticks.now += TSC_HZ  # one wall second
    assert scaled_close(tl.now_ns() - before, new, TSC_HZ, TSC_HZ)


@pytest.mark.parametrize("rate", [0, -1, Fraction(-1, 2)])
def test_set_rate_refuses_a_clock_that_stands_still_or_runs_back(rate: Fraction | int) -> None:
    """Freezing is ``freeze``; a rate of 0 or less is refused and changes nothing."""
    tl, _ = timeline(Fraction(1, 2))
    clock = tl.clock
    with pytest.raises(ValueError):
        tl.set_rate(rate)
    assert tl.clock is clock and tl.rate == Fraction(1, 2) and tl.rate_changes == 0


def test_freeze_stands_still_and_thaw_resumes_from_the_same_reading() -> None:
    tl, ticks = timeline(Fraction(1, 2))
    ticks.now += 4_000
    frozen_at = tl.now_ns()
    assert frozen_at == 2_000
    tl.freeze()
    tl.freeze()  # idempotent: no second anchor, the frozen time counts from the first
    assert tl.frozen and tl.clock.frozen and tl.clock.scale.mul == 0
    ticks.now += 10**12
    assert tl.now_ns() == frozen_at
    tl.set_rate(4)  # while frozen: stored, applied at the thaw
    assert tl.now_ns() == frozen_at and tl.clock.frozen
    tl.thaw()
    tl.thaw()
    assert not tl.frozen and tl.clock.rate == 4
    assert tl.now_ns() == frozen_at
    ticks.now += 1_000
    assert tl.now_ns() == frozen_at + 4_000
    totals = tl.totals()
    assert totals.frozen_ns == 10**12
    assert totals.wall_ns == 4_000 + 10**12 + 1_000
    assert totals.guest_ns == frozen_at + 4_000
    assert totals.rate_changes == 1 and totals.warps == 0


def test_listeners_mark_the_change_before_now_is_read() -> None:
    """Every listener's ``begin_clock_change`` runs before the timeline reads "now" for the
    new anchor (a guest reading the old page after that instant must retry), and every
    ``clock_changed`` gets that anchor's tick and clock."""
    tl, ticks = timeline()
    a, b = Recorder(ticks), Recorder(ticks)
    tl.subscribe(a)
    tl.subscribe(b)
    ticks.now += 777
    reads_before = ticks.reads
    tl.set_rate(3)
    for rec in (a, b):
        (begin, begun_after), (changed, at) = rec.calls
        assert (begin, changed) == ("begin", "changed")
        assert begun_after == reads_before  # begun before the anchor's tick was read
        assert at == ticks.now == tl.clock.tsc_timestamp
        assert rec.clocks == [tl.clock]
    tl.unsubscribe(b)
    tl.freeze()
    assert len(a.calls) == 4 and len(b.calls) == 2


@dataclass(frozen=True)
class Op:
    kind: str  # "rate", "freeze", "thaw", "block", "wake", "leave", "join"
    dt: int  # host ticks that pass before it
    rate: Fraction = Fraction(1)
    who: int = 0
    ahead_ns: int = 0  # block: the deadline, this far after the group's reading


ops = st.builds(
    Op,
    kind=st.sampled_from(["rate", "freeze", "thaw", "block", "block", "wake", "leave", "join"]),
    dt=st.integers(0, 5 * 10**9),
    rate=st.sampled_from(RATES),
    who=st.integers(0, 2),
    ahead_ns=st.integers(-(10**9), 10**10),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=40), st.booleans(), st.sampled_from([TICK_HZ, TSC_HZ]))
def test_random_bending_keeps_guest_time_continuous_and_monotonic(
    script: list[Op], warp: bool, hz: int
) -> None:
    """Any sequence of rate changes, freezes, thaws, blocks, wakes, leaves and joins at
    increasing host ticks: the reading never goes backwards, stands still while frozen,
    advances at the rate in force between changes (plus exactly the warps), every warp
    lands on the earliest deadline of an all-blocked group, and a member marked running by
    a warp was due."""
    tl, ticks = timeline(1, warp, hz)
    members = [tl.join(f"vcpu{i}") for i in range(3)]
    joined = [True, True, True]
    last = tl.now_ns()
    for op in script:
        rate_before, frozen_before = tl.clock.rate, tl.frozen
        warped_before, warps_before = tl.warped_ns, tl.warps
        ticks.now += op.dt
        now = tl.now_ns()
        # between operations: the rate in force, or standing still while frozen
        assert now >= last
        if frozen_before:
            assert now == last
        else:
            assert scaled_close(now - last, rate_before, op.dt, hz)
        m = members[op.who]
        deadlines = {}
        if op.kind == "rate":
            tl.set_rate(op.rate)
        elif op.kind == "freeze":
            tl.freeze()
        elif op.kind == "thaw":  # members may all have blocked while frozen: it may warp
            deadlines = {id(x): x.deadline_ns for x in members}
            tl.thaw()
        elif op.kind == "block" and joined[op.who]:
            deadlines = {id(x): x.deadline_ns for x in members}
            deadlines[id(m)] = max(0, now + op.ahead_ns)
            tl.block(m, max(0, now + op.ahead_ns))
        elif op.kind == "wake":
            m.wake()
        elif op.kind == "leave" and joined[op.who]:
            deadlines = {id(x): x.deadline_ns for x in members}
            joined[op.who] = False
            tl.leave(m)
        elif op.kind == "join" and not joined[op.who]:
            members[op.who] = tl.join(f"again{op.who}")
            joined[op.who] = True
        after = tl.now_ns()
        assert after >= now  # an operation at one tick never takes time back
        if tl.warps == warps_before:
            assert after == now  # nothing but a warp moves the reading at one tick
            if warp and deadlines and not tl.frozen:  # a block or a leave: was one due?
                live = [deadlines[id(x)] for x, j in zip(members, joined, strict=True) if j]
                all_idle = bool(live) and all(d is not None for d in live)
                assert not all_idle or min(d for d in live if d is not None) <= now
        else:
            assert tl.warps == warps_before + 1 and warp and not tl.frozen
            live = [deadlines[id(x)] for x, j in zip(members, joined, strict=True) if j]
            assert all(d is not None for d in live)  # everyone was blocked
            earliest = min(d for d in live if d is not None)
            assert after == earliest > now
            assert tl.warped_ns - warped_before == earliest - now
            for x, j in zip(members, joined, strict=True):
                d = deadlines[id(x)]
                if j and d is not None:
                    # due at the warp: running; later: still blocked at its deadline
                    assert x.deadline_ns == (None if d <= earliest else d)
        last = after
    assert tl.totals().warped_ns == tl.warped_ns


# --- 2. the idle warp ------------------------------------------------------------------------


def test_warp_only_when_every_member_is_blocked_to_the_earliest_deadline() -> None:
    tl, ticks = timeline(Fraction(1, 10), warp=True)
    a, b, c = tl.join("a"), tl.join("b"), tl.join("c")
    ticks.now += 10_000
    now = tl.now_ns()
    assert scaled_close(now, Fraction(1, 10), 10_000, TICK_HZ)
    assert not tl.block(a, now + 5_000_000)
    assert not tl.block(b, now + 3_000_000)
    assert tl.now_ns() == now and tl.warps == 0  # c runs: no warp
    assert tl.block(c, now + 3_000_000)  # a tie for the earliest
    assert tl.now_ns() == now + 3_000_000  # exactly the earliest deadline, at the same tick
    assert tl.clock.tsc_timestamp == ticks.now
    assert b.deadline_ns is None and c.deadline_ns is None  # due: running
    assert a.deadline_ns == now + 5_000_000  # not due: still waits
    assert (tl.warps, tl.warped_ns) == (1, 3_000_000)
    assert a.blocks == b.blocks == c.blocks == 1
    # b and c block again past a: the group warps on to a's deadline, no further
    assert not tl.block(b, now + 9_000_000)
    assert tl.block(c, now + 7_000_000)
    assert tl.now_ns() == now + 5_000_000
    assert a.deadline_ns is None and b.deadline_ns and c.deadline_ns
    assert (tl.warps, tl.warped_ns) == (2, 5_000_000)
    # and the rate applies again after a warp
    ticks.now += 20_000
    assert scaled_close(tl.now_ns() - now - 5_000_000, Fraction(1, 10), 20_000, TICK_HZ)
    t = tl.totals()
    assert (t.warps, t.warped_ns, t.guest_ns) == (2, 5_000_000, tl.now_ns())
    assert t.wall_ns == 30_000


def test_no_warp_to_a_deadline_already_reached() -> None:
    """A blocked member whose deadline has come is (about to be) running: the group does not
    warp, and never backwards."""
    tl, ticks = timeline(warp=True)
    a, b = tl.join("a"), tl.join("b")
    assert not tl.block(a, 500)
    ticks.now += 1_000  # a's deadline passes before its interrupt is delivered
    assert not tl.block(b, 10**9)
    assert tl.now_ns() == 1_000 and tl.warps == 0 and tl.warped_ns == 0
    assert not tl.block(a, 1_000)  # exactly now: reached
    assert tl.now_ns() == 1_000 and tl.warps == 0


def test_a_member_that_leaves_lets_the_others_warp() -> None:
    tl, ticks = timeline(warp=True)
    a, b = tl.join("a"), tl.join("b")
    assert not tl.block(a, 4_000)
    ticks.now += 1_000
    tl.leave(b)  # b stopped: the group is a alone, and a waits
    assert tl.now_ns() == 4_000 and tl.warps == 1 and tl.warped_ns == 3_000
    assert a.deadline_ns is None
    tl.leave(a)
    tl.leave(a)  # twice is harmless
    ticks.now += 1_000
    assert tl.now_ns() == 5_000 and tl.warps == 1


def test_members_are_told_apart_by_identity_not_by_name() -> None:
    """Two vCPUs with the same name and state (a host reuses ``guest{N}`` after a
    ``destroy``; a stopped machine leaves twice, from its vCPU thread and from ``close``):
    leaving is the leaver's, so the other still holds the group's warps back, and once it
    alone waits, the group warps."""
    tl, _ = timeline(warp=True)
    gone, running = tl.join("guest1"), tl.join("guest1")
    other = tl.join("guest0")
    tl.leave(gone)
    tl.leave(gone)  # close() after the vCPU thread's own leave
    assert not tl.block(other, 10**6)
    assert tl.warps == 0, "the group warped while a running vCPU was still a member"
    assert tl.block(running, 2 * 10**6)
    assert tl.now_ns() == 10**6


def test_a_member_woken_by_its_timer_holds_the_warp_back() -> None:
    tl, _ = timeline(warp=True)
    a, b = tl.join("a"), tl.join("b")
    tl.block(a, 10**6)
    a.wake()  # delivered (another timer of its, say): it runs
    assert not tl.block(b, 2 * 10**6)
    assert tl.warps == 0 and tl.now_ns() == 0


def test_no_warp_without_warp_idle_or_while_frozen() -> None:
    tl, _ = timeline(warp=False)
    a = tl.join("a")
    assert not tl.block(a, 10**9)
    assert tl.now_ns() == 0 and tl.warps == 0
    tl, _ = timeline(warp=True)
    a = tl.join("a")
    tl.freeze()
    assert not tl.block(a, 10**9)
    assert tl.now_ns() == 0 and tl.warps == 0


def test_thaw_warps_a_group_that_blocked_while_frozen() -> None:
    """Every member blocked while the clock was frozen (a vCPU already inside its BLOCK
    call when ``freeze`` came; another guest of a group, whose own vCPUs a freeze of one
    machine does not pause): at the thaw the group is all idle, and it must warp then.
    Nothing else will ask again: every vCPU waits for its timer, so without it the group
    would sit out the whole idle stretch in wall time (at the dilation)."""
    tl, ticks = timeline(warp=True)
    a, b = tl.join("a"), tl.join("b")
    tl.freeze()
    assert not tl.block(a, 5 * 10**9)
    assert not tl.block(b, 3 * 10**9)
    ticks.now += 1_000
    tl.thaw()
    assert tl.now_ns() == 3 * 10**9, "the thawed all-idle group did not warp"
    assert tl.warps == 1 and b.deadline_ns is None


def test_a_busy_member_never_blocks_so_the_group_never_warps() -> None:
    """A second vCPU under CPU load joins and never blocks: the guest's idle waits take
    their time (wall time at the rate), as they must."""
    tl, ticks = timeline(warp=True)
    a = tl.join("a")
    tl.join("a-vcpu1")
    for k in range(1, 5):
        assert not tl.block(a, k * 10**6)
        ticks.now += 10**6
        a.wake()
    assert tl.warps == 0 and tl.now_ns() == 4 * 10**6


# --- 3. the clock-event device on a re-anchored clock ----------------------------------------


class Host:
    """A ClockEventDevice on a TimerQueue and a timeline, with a host that wakes exactly when
    asked; ``fired`` has the guest reading at each interrupt."""

    def __init__(self, rate: Fraction | int = 1, warp: bool = False) -> None:
        self.tl, self.ticks = timeline(rate, warp)
        self.queue = TimerQueue()
        self.fired: list[int] = []
        self.fired_ticks: list[int] = []
        self.dev = ClockEventDevice(self.tl.clock, self.queue, self._raise)
        self.tl.subscribe(self.dev)

    def _raise(self, now_ticks: int) -> None:
        self.fired_ticks.append(now_ticks)
        self.fired.append(self.tl.clock.ns_at(now_ticks))

    def run_until(self, target: int) -> None:
        while (wake := self.queue.next_wakeup()) is not None and wake <= target:
            self.ticks.now = max(self.ticks.now, wake)
            for timer in self.queue.expire(self.ticks.now):
                timer.callback(self.ticks.now)
        self.ticks.now = max(self.ticks.now, target)

    def wake_late(self, at: int) -> None:
        """The host wakes once, at ``at`` (however late), and runs what is due."""
        self.ticks.now = max(self.ticks.now, at)
        for timer in self.queue.expire(self.ticks.now):
            timer.callback(self.ticks.now)


@pytest.mark.parametrize("new", RATES)
def test_a_pending_oneshot_keeps_its_guest_deadline_across_a_rate_change(new: Fraction) -> None:
    h = Host(rate=1)
    assert h.dev.set_next_event(1_000_000, h.ticks.now) == 0
    deadline = h.dev.next_event_ns
    assert deadline == 1_000_000
    h.run_until(START + 400_000)
    h.tl.set_rate(new)
    assert h.dev.clock is h.tl.clock and h.dev.next_event_ns == deadline
    due = h.dev.timer.expires
    assert due == h.tl.clock.ticks_at_or_after(deadline)
    h.run_until(due - 1)
    assert h.fired == []
    h.run_until(due + 10**9)
    assert h.fired == [h.tl.clock.ns_at(due)]
    assert h.fired[0] >= deadline > h.tl.clock.ns_at(due - 1)
    assert h.dev.state is ClockEventState.SHUTDOWN and len(h.queue) == 0


def test_frozen_nothing_is_armed_and_the_thaw_arms_it_at_the_same_guest_time() -> None:
    h = Host(rate=Fraction(1, 2))
    h.dev.set_next_event(1_000_000, h.ticks.now)
    h.run_until(START + 1_000_000)  # guest 500 us
    h.tl.freeze()
    assert len(h.queue) == 0 and h.dev.timer.expires is None
    assert h.dev.next_event_ns == 1_000_000  # still pending
    # programming while frozen keeps the deadline without arming (no tick is ever due)
    assert h.dev.set_next_event(800_000, h.ticks.now) == 0
    assert len(h.queue) == 0 and h.dev.next_event_ns == 500_000 + 800_000
    h.run_until(START + 10**12)
    assert h.fired == []
    h.tl.thaw()
    assert h.dev.timer.expires == h.ticks.now + 1_600_000  # 800 us of guest time at 1/2
    h.run_until(h.ticks.now + 10**9)
    assert h.fired == [1_300_000]


def test_a_warp_fires_the_blocked_timer_at_once_and_never_early() -> None:
    """BLOCK's path: the one-shot is armed, the member blocks, the group warps to it: the
    re-anchored device is due at the warp's own host tick, and the guest reads its
    deadline there."""
    h = Host(rate=Fraction(1, 10), warp=True)
    m = h.tl.join("vcpu0")
    h.ticks.now += 1_000
    deadline = h.tl.now_ns() + 10**9
    assert h.dev.set_deadline(deadline, h.ticks.now) == 0
    assert h.tl.block(m, deadline)
    assert h.dev.timer.expires == h.ticks.now
    h.run_until(h.ticks.now)
    assert h.fired == [deadline]
    assert h.fired_ticks == [START + 1_000]


@pytest.mark.parametrize("k", [1, 2, 7, 50])
def test_a_periodic_tick_late_by_k_periods_is_one_interrupt_and_k_overruns(k: int) -> None:
    """The documented choice: ticks the host missed are dropped, not caught up. Late by k
    whole periods (and a bit): one interrupt, k ticks skipped, none in a burst after it;
    also at a dilated rate (periods are guest time)."""
    h = Host(rate=Fraction(1, 2))
    period = MIN_PERIOD_NS * 10
    start_ns = h.tl.now_ns()
    h.dev.set_periodic(period, h.ticks.now)
    first = h.tl.clock.ticks_at_or_after(start_ns + period)
    late = h.tl.clock.delta_ticks_at_least(k * period + period // 3)
    h.wake_late(first + late)
    assert len(h.fired) == 1
    assert h.dev.stats.overruns == k
    nxt = h.dev.next_event_ns
    assert nxt is not None and (nxt - start_ns) % period == 0
    assert h.fired[0] < nxt <= h.fired[0] + period
    # the following stretch of n periods brings n ticks, not n + k
    n = 5
    h.run_until(h.tl.clock.ticks_at_or_after(nxt + (n - 1) * period))
    assert len(h.fired) == 1 + n
    assert h.dev.stats.overruns == k


def test_a_periodic_tick_frozen_for_many_periods_misses_nothing() -> None:
    """Frozen for 1000 periods of wall time, then thawed: no tick was due while frozen, so
    none is skipped and none comes in a burst; the grid goes on where it stopped."""
    h = Host(rate=1)
    period = MIN_PERIOD_NS * 10
    start_ns = h.tl.now_ns()
    h.dev.set_periodic(period, h.ticks.now)
    h.run_until(h.tl.clock.ticks_at_or_after(start_ns + 3 * period) + period // 2)
    assert len(h.fired) == 3
    frozen_ns = h.tl.now_ns()
    h.tl.freeze()
    h.run_until(h.ticks.now + 1000 * period)
    assert len(h.fired) == 3
    h.tl.thaw()
    h.run_until(h.ticks.now + 5 * period)
    assert len(h.fired) == 3 + 5
    assert h.dev.stats.overruns == 0
    assert h.fired[3:] == [start_ns + i * period for i in range(4, 9)]
    assert h.tl.now_ns() == frozen_ns + 5 * period


def test_a_periodic_tick_follows_a_new_rate_on_its_grid() -> None:
    h = Host(rate=1)
    period = MIN_PERIOD_NS * 10
    start_ns = h.tl.now_ns()
    h.dev.set_periodic(period, h.ticks.now)
    h.run_until(h.tl.clock.ticks_at_or_after(start_ns + 2 * period) + 1)
    h.tl.set_rate(10)
    t0 = h.ticks.now
    h.run_until(t0 + 10 * period)  # 10 periods of wall time: 100 of guest time at 10x
    assert len(h.fired) in (101, 102)
    for i, (ns, t) in enumerate(zip(h.fired, h.fired_ticks, strict=True), start=1):
        # on the grid: the first host tick reading it (a tick is 10 guest ns at 10x)
        assert ns >= start_ns + i * period
        if t > t0:
            assert h.tl.clock.ns_at(t - 1) < start_ns + i * period
    assert h.dev.stats.overruns == 0


# --- 4. the PV clock page's update protocol ---------------------------------------------------


def page() -> tuple[PvclockPage, bytearray]:
    buf = bytearray(ctypes.sizeof(PvclockVcpuTimeInfo))
    return PvclockPage(memoryview(buf)), buf


def test_begin_makes_the_version_odd_once_and_publish_makes_it_even_again() -> None:
    p, _ = page()
    assert p.info.version == 0
    p.begin()
    assert p.info.version == 1
    p.begin()
    assert p.info.version == 1  # once: a second begin must not make it even
    clock = GuestClock.create(TSC_HZ, 1234, 5678, Fraction(1, 3))
    p.publish(clock)
    assert p.info.version == 2
    assert (p.info.tsc_timestamp, p.info.system_time) == (1234, 5678)
    assert (p.info.tsc_to_system_mul, p.info.tsc_shift) == (clock.scale.mul, clock.scale.shift)
    p.publish(clock)  # without begin: odd while writing, even after, bumped
    assert p.info.version == 4
    p.publish(GuestClock.create(TSC_HZ, 99, 5678, 0))  # a frozen clock: mul 0
    assert p.info.version == 6 and p.info.tsc_to_system_mul == 0


def test_the_version_wraps_and_stays_even() -> None:
    p, _ = page()
    p.info.version = 0xFFFF_FFFE
    p.begin()
    assert p.info.version == 0xFFFF_FFFF
    p.publish(GuestClock.create(TSC_HZ, 0))
    assert p.info.version == 0


class Recording:
    """Stands in for the page's ctypes struct: every field write goes through to it, then
    snapshots the page, so a simulated guest can read any interleaving of the writes."""

    _info: PvclockVcpuTimeInfo
    _buf: bytearray
    _snaps: list[bytes]

    def __init__(self, info: PvclockVcpuTimeInfo, buf: bytearray, snaps: list[bytes]) -> None:
        object.__setattr__(self, "_info", info)
        object.__setattr__(self, "_buf", buf)
        object.__setattr__(self, "_snaps", snaps)

    def __getattr__(self, name: str) -> object:
        return getattr(self._info, name)

    def __setattr__(self, name: str, value: object) -> None:
        setattr(self._info, name, value)
        self._snaps.append(bytes(self._buf))


def guest_read(
    pages: list[PvclockVcpuTimeInfo], at: tuple[int, ...], tsc_of: list[int]
) -> tuple[bool, int, tuple[int, int, int, int]]:
    """The guest's ``clock_read`` (user.c): version, rdtsc, the fields, version again, each
    read while the page is as it was after the write of index ``at[k]`` (non-decreasing);
    accepted only if both versions are equal and even. Returns (accepted, the reading, the
    fields it used)."""
    v1 = pages[at[0]].version
    tsc = tsc_of[at[1]]
    fields = (
        pages[at[2]].tsc_timestamp,
        pages[at[3]].tsc_shift,
        pages[at[4]].system_time,
        pages[at[5]].tsc_to_system_mul,
    )
    v2 = pages[at[6]].version
    if v1 % 2 or v1 != v2:
        return False, 0, fields
    tsc_ts, shift, sys_t, mul = fields
    delta = tsc - tsc_ts
    assert delta >= 0, "accepted a clock anchored after the guest's TSC read"
    delta = delta >> -shift if shift < 0 else delta << shift
    return True, sys_t + ((delta * mul) >> 32), fields


def fields_of(clock: GuestClock) -> tuple[int, int, int, int]:
    return (clock.tsc_timestamp, clock.scale.shift, clock.system_time_ns, clock.scale.mul)


@pytest.mark.parametrize(
    ("old", "new"),
    [(Fraction(1), Fraction(1, 10)), (Fraction(1, 2), Fraction(10)), (Fraction(3, 7), Fraction(0))],
)
@pytest.mark.parametrize("gap", [1, 1000, 10**7])
def test_a_guest_never_accepts_a_torn_page_nor_reads_backwards(
    old: Fraction, new: Fraction, gap: int
) -> None:
    """A re-anchoring as the timeline does it (begin, read "now", publish), the host's TSC
    moving on between every two writes, and a guest read interleaved with those writes in
    every possible way (all non-decreasing placements of its seven reads): it retries, or
    it uses one whole clock (the old or the new, never a mix), and what it reads is never
    later than the new clock's reading at any later tick (never backwards)."""
    p, buf = page()
    tsc0 = 10**12
    old_clock = GuestClock.create(TSC_HZ, tsc0, 7 * 10**9, old)
    p.publish(old_clock)
    snaps = [bytes(buf)]
    tsc_of = [tsc0 + gap]
    p.info = Recording(p.info, buf, snaps)  # type: ignore[assignment]

    def tick() -> None:  # the host's TSC moves on between every two writes
        while len(tsc_of) < len(snaps):
            tsc_of.append(tsc_of[-1] + gap)

    p.begin()
    tick()
    now = tsc_of[-1] + gap  # "now" is read after begin
    new_clock = GuestClock.create(TSC_HZ, now, old_clock.ns_at(now), new)
    snaps.append(snaps[-1])
    tsc_of.append(now)
    p.publish(new_clock)
    tick()
    pages = [PvclockVcpuTimeInfo.from_buffer_copy(snap) for snap in snaps]
    outcomes = {"retry": 0, "old": 0, "new": 0}
    for at in itertools.combinations_with_replacement(range(len(snaps)), 7):
        ok, reading, used = guest_read(pages, at, tsc_of)
        if not ok:
            outcomes["retry"] += 1
            continue
        assert used in (fields_of(old_clock), fields_of(new_clock)), f"torn page read: {at}"
        assert reading <= new_clock.ns_at(max(now, tsc_of[at[6]])), f"backwards: {at}"
        if used == fields_of(old_clock):
            outcomes["old"] += 1
            assert tsc_of[at[1]] <= now
        else:
            outcomes["new"] += 1
    assert min(outcomes.values()) > 0, outcomes  # every case was exercised


# --- the hold after a warp ----------------------------------------------------------------


class HoldGuest:
    """A member whose guest has or has not yet run on after its warp (``ran``)."""

    def __init__(self) -> None:
        self.ran = False
        self.delivered: list[int] = []

    def deliver(self, now_ticks: int) -> Callable[[], bool]:
        self.delivered.append(now_ticks)
        self.ran = False
        return lambda: self.ran


def held_timeline() -> tuple[Timeline, Ticks, TimerQueue, list[Member], list[HoldGuest]]:
    ticks, queue = Ticks(), TimerQueue()
    tl = Timeline(TICK_HZ, ticks, 1, True, queue)
    members, guests = [], []
    for i in range(2):
        m, g = tl.join(f"vcpu{i}"), HoldGuest()
        m.deliver = g.deliver
        members.append(m)
        guests.append(g)
    return tl, ticks, queue, members, guests


def expire(queue: TimerQueue, ticks: Ticks) -> None:
    for timer in queue.expire(ticks.now):
        timer.callback(ticks.now)


def test_a_warp_holds_the_clock_at_the_deadline_until_the_woken_guest_ran_on() -> None:
    """The clock stands at the deadline after a warp while the woken guest has not run on
    (host work and scheduling delay cost no guest time), polled on the host timers; it runs
    at its rate again from the poll that sees the guest ran."""
    tl, ticks, queue, (a, b), (ga, gb) = held_timeline()
    now = tl.now_ns()
    tl.block(b, now + 5 * S)
    assert tl.block(a, now + 2 * S)  # warped to a's deadline
    assert ga.delivered and not gb.delivered
    ticks.now += 3_000_000  # 3 ms of host time: the guest has not run on yet
    expire(queue, ticks)
    assert tl.now_ns() == now + 2 * S  # held
    ga.ran = True
    ticks.now += HOLD_POLL_NS
    expire(queue, ticks)
    held_at = ticks.now
    ticks.now += 1_000_000
    assert tl.now_ns() == now + 2 * S + (ticks.now - held_at)  # running at rate 1 again
    assert tl.take_timeouts == 0


def test_a_block_proves_the_guest_ran_on_and_ends_the_hold() -> None:
    tl, ticks, _queue, (a, b), (ga, _) = held_timeline()
    now = tl.now_ns()
    tl.block(b, now + 5 * S)
    tl.block(a, now + 2 * S)
    ga.ran = True
    ticks.now += 50_000
    tl.block(a, now + 3 * S)  # ends the hold, then warps again (both blocked)
    assert tl.warps == 2 and tl.now_ns() == now + 3 * S
    assert len(ga.delivered) == 2


def test_a_guest_that_never_runs_on_holds_its_group_for_a_bounded_time() -> None:
    """Untrusted: a guest that never shows it ran on (interrupts off) stops the clock for
    at most ``WARP_TAKE_TIMEOUT_NS``; then it runs on and the timeout is counted."""
    tl, ticks, queue, (a, b), _ = held_timeline()
    now = tl.now_ns()
    tl.block(b, now + 5 * S)
    tl.block(a, now + 2 * S)
    for _ in range(WARP_TAKE_TIMEOUT_NS // HOLD_POLL_NS + 2):
        ticks.now += HOLD_POLL_NS
        expire(queue, ticks)
    assert tl.take_timeouts == 1
    before = tl.now_ns()
    ticks.now += 1_000
    assert tl.now_ns() == before + 1_000
    assert len(queue) == 0  # nothing left polling


def test_a_woken_member_that_leaves_ends_the_hold_and_is_not_looked_at_again() -> None:
    """A guest that stops (DONE) while its warp holds the clock: its memory may go, so its
    "ran on?" is never called again, and the clock runs on."""
    tl, ticks, queue, (a, b), (_, gb) = held_timeline()
    now = tl.now_ns()
    tl.block(b, now + 5 * S)
    tl.block(a, now + 2 * S)
    calls: list[int] = []

    def never_ran() -> bool:
        calls.append(1)
        return False

    tl._holding = [(m, never_ran) for m, _ in tl._holding]
    tl.leave(a)  # the hold ends; b alone is idle: the group warps to its deadline
    assert tl.now_ns() == now + 5 * S and gb.delivered
    gb.ran = True
    ticks.now += 1_000
    tl.block(b, now + 6 * S)
    assert tl.now_ns() == now + 6 * S
    for _ in range(5):
        ticks.now += HOLD_POLL_NS
        expire(queue, ticks)
    assert calls == [] and tl.take_timeouts == 0
