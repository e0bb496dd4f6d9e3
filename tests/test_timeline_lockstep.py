"""A lockstep timeline (``DrivenTimeline(lockstep=True)``, ``run_until``, ``at``): the clock holds
while guests run and moves only by warps to what is due, never past the bound. Pure Python:
host ticks come from a counter the test moves; fake guests are threads that block again."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tickless.timers.driven import Arrival, DrivenTimeline, LockstepStall
from tickless.timers.timeline import NO_TIMER_NS, Member

TICK_HZ = 10**9
MS = 1_000_000


class Ticks:
    def __init__(self) -> None:
        self.now = 1 << 40

    def __call__(self) -> int:
        self.now += 1_000  # every read, a microsecond of host time passes
        return self.now


class FakeGuest:
    """A vCPU that, woken at a deadline, reads the clock and blocks again ``period`` later
    (on its own thread, as a vCPU does), until ``until_ns``."""

    def __init__(self, timeline: DrivenTimeline, name: str, first_ns: int, period_ns: int) -> None:
        self.timeline, self.period_ns = timeline, period_ns
        self.member: Member = timeline.join(name)
        self.member.deliver = self._deliver
        self.seen: list[int] = []
        self.threads: list[threading.Thread] = []
        timeline.block(self.member, first_ns)

    def _deliver(self, now_ticks: int) -> None:
        thread = threading.Thread(target=self._run)
        self.threads.append(thread)
        thread.start()
        return None

    def _run(self) -> None:
        now_ns = self.timeline.now_ns()
        self.seen.append(now_ns)
        self.timeline.block(self.member, now_ns + self.period_ns)


def lockstep() -> DrivenTimeline:
    return DrivenTimeline(TICK_HZ, Ticks(), lockstep=True)


def test_the_clock_holds_from_the_start_and_stops_at_the_bound() -> None:
    timeline = lockstep()
    assert timeline.now_ns() == 0
    timeline.run_until(5 * MS)  # no member: a warp straight to the bound
    assert timeline.now_ns() == 5 * MS
    assert timeline.now_ns() == 5 * MS  # host time passes, guest time does not
    timeline.run_until(5 * MS)  # the same bound again is fine
    with pytest.raises(ValueError, match="in the past"):
        timeline.run_until(4 * MS)


def test_members_are_woken_at_their_exact_deadlines_in_order() -> None:
    timeline = lockstep()
    a = FakeGuest(timeline, "a", 1 * MS, 3 * MS)
    b = FakeGuest(timeline, "b", 2 * MS, 5 * MS)
    timeline.run_until(10 * MS)
    assert timeline.now_ns() == 10 * MS
    assert a.seen == [1 * MS, 4 * MS, 7 * MS, 10 * MS]
    assert b.seen == [2 * MS, 7 * MS]
    timeline.run_until(12 * MS)
    assert b.seen == [2 * MS, 7 * MS, 12 * MS]
    for t in a.threads + b.threads:
        t.join()


def test_arrivals_run_at_their_time_and_never_in_the_past() -> None:
    timeline = lockstep()
    guest = FakeGuest(timeline, "g", 100 * MS, MS)
    got: list[tuple[str, int]] = []

    def arrival(name: str) -> Arrival:
        def run(now_ticks: int) -> None:
            got.append((name, timeline.now_ns(now_ticks)))

        return run

    timeline.at(3 * MS, arrival("second"))
    timeline.at(2 * MS, arrival("first"))
    timeline.at(3 * MS, arrival("third"))  # same time: in the order given
    timeline.run_until(2 * MS)
    assert got == [("first", 2 * MS)]
    timeline.at(2 * MS, arrival("now"))  # at the clock's reading: still allowed
    with pytest.raises(ValueError, match="in the past"):
        timeline.at(2 * MS - 1, arrival("late"))
    timeline.run_until(10 * MS)
    assert got == [("first", 2 * MS), ("now", 2 * MS), ("second", 3 * MS), ("third", 3 * MS)]
    assert guest.seen == []


def test_a_member_that_never_waits_stalls_the_group_with_a_clear_error() -> None:
    timeline = lockstep()
    timeline.join("busy")  # runs, never blocks
    with pytest.raises(LockstepStall, match="still running: busy"):
        timeline.run_until(MS, timeout_s=0.2)
    assert timeline.now_ns() == 0  # guest compute took no guest time


def test_run_until_needs_a_lockstep_timeline() -> None:
    with pytest.raises(ValueError, match="lockstep"):
        DrivenTimeline(TICK_HZ, Ticks()).run_until(MS)


def test_a_follow_up_runs_once_after_every_arrival_due_with_it() -> None:
    """What lets a device show its guest a batch of messages at once."""
    timeline = lockstep()
    FakeGuest(timeline, "g", 100 * MS, MS)
    order: list[str] = []

    def publish() -> None:
        order.append("publish")

    def arrival(name: str) -> Arrival:
        def run(now_ticks: int) -> Callable[[], None]:
            order.append(name)
            return publish

        return run

    timeline.at(MS, arrival("a"))
    timeline.at(MS, arrival("b"))
    timeline.at(2 * MS, arrival("c"))
    timeline.run_until(3 * MS)
    assert order == ["a", "b", "publish", "c", "publish"]


def test_a_member_idle_with_no_timer_rests_and_only_an_arrival_runs_it() -> None:
    """BLOCK(0) with nothing programmed (a Linux idle whose tick is stopped) counts as idle
    in lockstep: the group reaches its bound, and jumps straight to an arrival."""
    timeline = lockstep()
    assert timeline.idles_without_timer()
    member = timeline.join("linux")
    woken: list[int] = []
    timeline.block(member, NO_TIMER_NS)
    timeline.run_until(50 * MS)  # rests: nothing is due, the member never holds it back
    assert timeline.now_ns() == 50 * MS

    def arrive(now_ticks: int) -> None:
        woken.append(timeline.now_ns(now_ticks))
        member.wake()
        return None

    timeline.at(70 * MS, arrive)
    timeline.release_until(100 * MS)
    assert woken == [70 * MS] and timeline.now_ns() == 70 * MS  # held while it runs
    timeline.block(member, NO_TIMER_NS)
    timeline.wait_until(5.0)
    assert timeline.now_ns() == 100 * MS


def test_a_clock_that_ran_in_real_time_holds_where_it_stands_once_engaged() -> None:
    """A Linux group boots at rate 1, then holds (engage_lockstep) and is driven from there;
    a group whose guests start late begins at the others' time (start_at)."""
    ticks = Ticks()
    timeline = DrivenTimeline(TICK_HZ, ticks)  # not lockstep: rate 1
    assert not timeline.idles_without_timer()
    ticks.now += 7 * 10**9  # seven seconds of boot
    held_ns = timeline.engage_lockstep()
    assert 7 * 10**9 <= held_ns == timeline.now_ns() == timeline.now_ns()
    assert timeline.engage_lockstep() == held_ns  # idempotent
    t0_ns = -(-held_ns // (10 * MS)) * (10 * MS)
    timeline.run_until(t0_ns)
    assert timeline.now_ns() == t0_ns
    late = lockstep()
    late.join("pinger")  # joined (running) but not started: start_at moves the clock anyway
    late.start_at(t0_ns)
    assert late.now_ns() == t0_ns
    with pytest.raises(ValueError, match="in the past"):
        late.start_at(t0_ns - 1)
    with pytest.raises(ValueError, match="lockstep"):
        DrivenTimeline(TICK_HZ, Ticks()).start_at(0)


def test_a_timer_due_with_an_arrival_is_raised_though_the_arrival_woke_its_member() -> None:
    """An arrival and a member's timer due at the same guest time: the arrival runs first
    and wakes the member, whose timer must still be raised (a held clock arms no host
    timer: a Linux guest would wait for that interrupt forever)."""
    timeline = lockstep()
    member = timeline.join("linux")
    raised: list[int] = []

    def deliver(now_ticks: int) -> None:
        raised.append(timeline.now_ns(now_ticks))
        return None

    def arrive(now_ticks: int) -> None:
        member.wake()
        return None

    member.deliver = deliver
    timeline.at(20 * MS, arrive)
    timeline.block(member, 20 * MS)
    timeline.release_until(30 * MS)
    assert raised == [20 * MS] and timeline.now_ns() == 20 * MS
