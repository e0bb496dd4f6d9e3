"""One guest clock for a group of guests: dilation, idle warp and freeze.

A ``Timeline`` owns the guest clock (``GuestClock``: guest ns as a function of host ticks)
that every guest started together reads through its PV clock page, and every host timer of
theirs is armed on. Bending time is re-anchoring that clock at "now" and telling each
listener:

* **dilation**: a new rate (guest seconds per host second) from now on;
* **freeze**: rate 0, the clock stands still (the pvclock ``mul`` is 0), until ``thaw``;
* **warp**: when every vCPU of the group waits for a timer (``block``), the clock jumps
  to the earliest of their deadlines, as QEMU's ``-icount sleep=off`` does for TCG.

Re-anchoring keeps guest time continuous and never backwards: the new anchor's
``system_time`` is the old clock's reading at the new ``tsc_timestamp``, and listeners that
are pages guests read first mark themselves "being updated" (``begin``) before "now" is
read, so no guest read of the old page can come from after the new anchor (the pvclock
protocol: an odd version makes the guest retry).

A simulator drives a group's time with a ``DrivenTimeline`` (``timers/driven.py``): held
in lockstep, moved by ``run_until``, with arrivals at guest times (``at``).

Members are the vCPUs that run guest code. ``block`` marks one idle until its deadline;
whoever delivers that deadline calls ``wake`` (a plain store: an expiry callback may call it
while ``block`` holds the lock, and ``cancel`` of that expiry must never wait on the lock).
Pure Python and no KVM: the simulator and the real host share it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from tickless.errors import InputError
from tickless.timers.clock import GuestClock
from tickless.timers.hrtimer import HostTimer, TimerBase

# A member idle with no timer at all (``Timeline.idles_without_timer``): its "deadline".
NO_TIMER_NS = (1 << 63) - 1
WARP_TAKE_TIMEOUT_NS = 10_000_000  # a warp holds the clock this long at most
HOLD_POLL_NS = 200_000  # how often the hold looks whether the woken guests ran on


class ClockListener(Protocol):
    """Something that holds a copy of the group's clock (a PV clock page, a host timer)."""

    def begin_clock_change(self) -> None:
        """Before "now" is read for the new anchor (a page makes its version odd)."""

    def clock_changed(self, clock: GuestClock, now_ticks: int) -> None:
        """The clock from ``now_ticks`` on (re-arm what was armed on the old one)."""


@dataclass(eq=False)  # told apart by identity: two vCPUs may share a name
class Member:
    """One vCPU of the group: idle (blocked until ``deadline_ns``) or running (None).
    ``deliver(now_ticks)`` raises its due timer at once (a warp delivers it synchronously,
    not through a host timer: no host wake-up, and no host latency in guest time)."""

    name: str
    deadline_ns: int | None = None
    blocks: int = 0  # BLOCK calls
    # Raise the due timer now; returns "has the guest taken it?" (None: do not wait).
    deliver: Callable[[int], Callable[[], bool] | None] | None = None
    # Why its guest's clocks cannot follow a rate change or a freeze ("": they can)
    rigid: str = ""

    def wake(self) -> None:
        """Its deadline was delivered (or it stopped waiting): it runs."""
        self.deadline_ns = None


@dataclass(frozen=True)
class TimelineTotals:
    """Where the group's guest time came from, for the record."""

    guest_ns: int  # guest time elapsed since the timeline was created
    wall_ns: int  # host time elapsed since then
    warped_ns: int  # guest time skipped by warps
    warps: int
    frozen_ns: int  # host time spent frozen (guest time stood still)
    rate_changes: int
    take_timeouts: int = 0  # warps that stopped waiting for a woken guest's handler


class Timeline:
    """A group's guest clock; see the module docstring."""

    def __init__(
        self,
        tick_hz: int,
        read_ticks: Callable[[], int],
        rate: Fraction | int = 1,
        warp_idle: bool = False,
        hold_timers: TimerBase | None = None,
    ) -> None:
        """``hold_timers``: where a warp's hold is polled (the VMM's timer thread); without
        them a warp runs on at once, as the simulator's does."""
        self.read_ticks = read_ticks
        self.warp_idle = warp_idle
        self.rate = Fraction(rate)  # the dilation, also while frozen (thaw restores it)
        self._start_ticks = read_ticks()
        self.clock = GuestClock.create(tick_hz, self._start_ticks, 0, self._run_rate())
        self.frozen = False
        self._frozen_at_ticks = 0
        self.frozen_ticks = 0
        self.warped_ns = 0
        self.warps = 0
        self.rate_changes = 0
        self.take_timeouts = 0  # warps that stopped waiting for a guest to take its interrupt
        # After a warp: each woken member and "has its guest run on?"
        self._holding: list[tuple[Member, Callable[[], bool]]] = []
        self._hold_give_up_ticks = 0
        self._hold_timers = hold_timers
        self._hold_timer = HostTimer(self._poll_hold, name="timeline-hold")
        self._members: list[Member] = []
        self._listeners: list[ClockListener] = []
        self._lock = threading.RLock()

    # --- who reads the clock, who runs on it ------------------------------------------------

    def subscribe(self, listener: ClockListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: ClockListener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def join(self, name: str, rigid: str = "") -> Member:
        """A vCPU starts running guest code on this timeline (``rigid``: why its guest's
        clocks cannot follow a rate change or a freeze; both then refuse with that)."""
        member = Member(name, rigid=rigid)
        with self._lock:
            self._members.append(member)
        return member

    def leave(self, member: Member) -> None:
        """A vCPU stopped: it no longer holds the group's warps (or a warp's hold) back,
        and nothing of it is looked at again (its guest's memory may go)."""
        with self._lock:
            if member in self._members:
                self._members.remove(member)
            if any(m is member for m, _ in self._holding):
                self._holding = [(m, took) for m, took in self._holding if m is not member]
                if not self._holding:
                    self._end_hold()
            self._maybe_warp()

    # --- reading -----------------------------------------------------------------------------

    def now_ns(self, ticks: int | None = None) -> int:
        clock = self.clock
        return clock.ns_at(max(clock.tsc_timestamp, self.read_ticks() if ticks is None else ticks))

    def totals(self) -> TimelineTotals:
        with self._lock:
            now = self.read_ticks()
            frozen = self.frozen_ticks + (now - self._frozen_at_ticks if self.frozen else 0)
            hz = self.clock.tick_hz
            return TimelineTotals(
                guest_ns=self.now_ns(now),
                wall_ns=(now - self._start_ticks) * 1_000_000_000 // hz,
                warped_ns=self.warped_ns,
                warps=self.warps,
                frozen_ns=frozen * 1_000_000_000 // hz,
                rate_changes=self.rate_changes,
                take_timeouts=self.take_timeouts,
            )

    # --- bending -----------------------------------------------------------------------------

    def set_rate(self, rate: Fraction | int) -> None:
        """A new dilation from now on (while frozen: from the thaw on)."""
        rate = Fraction(rate)
        if rate <= 0:
            raise ValueError(f"time dilation rate must be positive, not {rate}")
        with self._lock:
            self._refuse_if_rigid("a rate change")
            self.rate = rate
            self.rate_changes += 1
            self._holding = []
            if not self.frozen:
                self._reanchor(self._run_rate(), 0)

    def _refuse_if_rigid(self, what: str) -> None:
        """One line (InputError) naming the first member whose guest cannot follow."""
        rigid = next((m for m in self._members if m.rigid), None)
        if rigid is not None:
            raise InputError(f"{what} refused: {rigid.name}: {rigid.rigid}")

    def freeze(self) -> None:
        """Stop the clock (idempotent): guest time stands still, no timer of it fires."""
        with self._lock:
            self._refuse_if_rigid("a freeze")
            if not self.frozen:
                self.frozen = True
                self._frozen_at_ticks = self._reanchor(Fraction(0), 0)

    def thaw(self) -> None:
        """Run the clock again at its rate, from the reading it stopped at."""
        with self._lock:
            if self.frozen:
                self.frozen = False
                self._holding = []
                now = self._reanchor(self._run_rate(), 0)
                self.frozen_ticks += now - self._frozen_at_ticks
                self._maybe_warp()  # they may all have blocked meanwhile

    def block(self, member: Member, deadline_ns: int) -> bool:
        """``member`` waits for a timer at ``deadline_ns``; True if the group warped.

        The group warps only when every member waits, to the earliest deadline, and only
        forward: a deadline already reached means a member is (about to be) running."""
        with self._lock:
            member.deadline_ns = deadline_ns
            member.blocks += 1
            ended = self._end_hold_if_all_ran()
            warped = self._maybe_warp()
            idle_poll = ended and not self._holding
        if idle_poll and self._hold_timers is not None:
            # Its poll is not needed: cancel it, outside the lock (the poll takes it) ...
            self._hold_timers.cancel(self._hold_timer)
            with self._lock:  # ... unless a warp on another vCPU held the clock meanwhile
                if self._holding:
                    self._schedule_hold_poll(self.read_ticks())
        return warped

    def idles_without_timer(self) -> bool:
        """Whether a member may wait with no timer (``block(member, NO_TIMER_NS)``): only
        where something other than a timer moves the clock (a driven timeline in
        lockstep); elsewhere such a group could never warp again."""
        return False

    def _maybe_warp(self) -> bool:
        """Warp if every member waits, to the earliest deadline."""
        if not self.warp_idle or self.frozen or not self._members:
            return False
        deadlines = [m.deadline_ns for m in self._members]
        if any(d is None for d in deadlines):
            return False
        earliest = min(d for d in deadlines if d is not None)
        now_ns = self.now_ns()
        if earliest <= now_ns:
            return False
        due = [m for m in self._members if m.deadline_ns is not None and m.deadline_ns <= earliest]
        for m in due:  # they run from now on: no second warp before they block again
            m.deadline_ns = None
        # Stand still at the deadline until the woken guests have taken their interrupts,
        # then run on: the host's work between the jump and their handlers (and any host
        # scheduling delay) costs no guest time, and runs repeat exactly.
        now = self._reanchor(Fraction(0), earliest)
        taken = []
        for m in due:
            if m.deliver is not None and (took := m.deliver(now)) is not None:
                taken.append((m, took))
        self.warps += 1
        if taken and self._hold_timers is not None:
            self._holding = taken
            self._hold_give_up_ticks = now + WARP_TAKE_TIMEOUT_NS * self.clock.tick_hz // 10**9
            self._schedule_hold_poll(now)
        else:
            self._reanchor(self.rate, 0)
        return True

    # --- the hold after a warp ---------------------------------------------------------------

    def _schedule_hold_poll(self, now_ticks: int) -> None:
        if self._hold_timers is not None:
            poll_ticks = HOLD_POLL_NS * self.clock.tick_hz // 10**9
            self._hold_timers.arm(self._hold_timer, now_ticks + poll_ticks)

    def _poll_hold(self, now_ticks: int) -> None:
        """The hold's host timer: run on once every woken guest ran on, or at
        ``WARP_TAKE_TIMEOUT_NS`` (a guest with interrupts off cannot stop its group's clock)."""
        with self._lock:
            if not self._holding or self._end_hold_if_all_ran():
                return
            if now_ticks < self._hold_give_up_ticks:
                self._schedule_hold_poll(now_ticks)
                return
            self.take_timeouts += 1
            self._end_hold()

    def _end_hold_if_all_ran(self) -> bool:
        """Looked at by the poll and at every block (a guest blocks again only after it
        ran on, so the hold mostly ends there, without a host wake-up)."""
        if self._holding and all(took() for _, took in self._holding):
            self._end_hold()
            return True
        return False

    def _end_hold(self) -> None:
        self._holding = []
        if not self.frozen:
            self._reanchor(self._run_rate(), 0)

    def _run_rate(self) -> Fraction:
        """The rate the clock runs at when nothing holds it (a driven timeline: 0)."""
        return self.rate

    def _clock_moved(self, now_ticks: int) -> None:
        """After every re-anchoring, still under the lock (a driven timeline re-arms)."""

    def _reanchor(self, rate: Fraction, at_least_ns: int) -> int:
        """Anchor the clock at now with ``rate``, reading at least ``at_least_ns`` (a warp);
        returns the anchor's host tick."""
        for listener in self._listeners:
            listener.begin_clock_change()
        now = self.read_ticks()
        old = self.clock
        reading = old.ns_at(max(now, old.tsc_timestamp))
        if at_least_ns > reading:
            self.warped_ns += at_least_ns - reading
            reading = at_least_ns
        self.clock = GuestClock.create(old.tick_hz, now, reading, rate)
        for listener in self._listeners:
            listener.clock_changed(self.clock, now)
        self._clock_moved(now)
        return now
