"""The guest side of the two absolute-deadline paths, ``precise`` and ``pv``.

Both are one mechanism (``user.c``: ``precise_wait`` and ``pv_wait``): the guest hands the
host an absolute deadline on its PV clock; if the deadline is far enough, the host's
interrupt comes early by an adaptive advance (through the platform's delivery model, as
every interrupt in the simulator), the guest reports how early it woke (its margin, which
tunes the advance) and spins in ring 3 to the exact deadline; a nearer deadline is spun to
at once. ``SimulatedGuest`` runs that loop for both; a waiter here supplies what differs:
how the deadline reaches the host (a hypercall, or the shared page and a kick only when
the host's promise is later), the spin threshold, and how the margin gets back.
"""

from __future__ import annotations

from typing import Protocol

from tickless.sim.counts import SimCounts
from tickless.timers.clock import GuestClock
from tickless.timers.precise import PreciseTimerChannel
from tickless.timers.pv_deadline import PvDeadlineChannel


class DeadlineWaiter(Protocol):
    """What differs between the absolute-deadline paths, guest side."""

    def wait(self, deadline_ns: int, now_ticks: int) -> bool:
        """Hand ``deadline_ns`` to the host; True: its early interrupt will come (the guest
        sleeps), False: the guest spins to the deadline at once."""
        ...

    def woke(self, margin_ns: int) -> None:
        """The early interrupt came ``margin_ns`` before the deadline (< 0: late)."""
        ...

    def host_wakeups(self, queue_wakeups: int) -> int:
        """The host's timer wake-ups for the record, given the queue's."""
        ...

    def notes(self) -> list[str]:
        """What the run's notes say about this path."""
        ...


class PreciseWaiter:
    """``precise_wait``: a SET_PRECISE hypercall (one exit) for every far deadline, carrying
    the previous margin; the spin threshold is the spec's alone."""

    def __init__(
        self,
        channel: PreciseTimerChannel,
        counts: SimCounts,
        spin_threshold_ns: int,
        hold_back_ns: int,
    ) -> None:
        self.channel = channel
        self.counts = counts
        self.spin_threshold_ns = spin_threshold_ns
        self.hold_back_ns = hold_back_ns
        self.last_margin_ns: int | None = None  # told to the host with the next deadline

    def wait(self, deadline_ns: int, now_ticks: int) -> bool:
        if deadline_ns - self.channel.clock.ns_at(now_ticks) <= self.spin_threshold_ns:
            return False
        if self.channel.set_deadline(deadline_ns, now_ticks, self.last_margin_ns) != 0:
            return False
        self.counts.hypercalls += 1
        self.counts.exits += 1
        return True

    def woke(self, margin_ns: int) -> None:
        self.last_margin_ns = margin_ns

    def host_wakeups(self, queue_wakeups: int) -> int:
        return queue_wakeups

    def notes(self) -> list[str]:
        p = self.channel
        return [
            f"precise: {p.stats.fired} early interrupts ({p.stats.late_wakeups} after the "
            f"deadline), advance now {p.advance.advance_ns / 1000:.1f} us, hold-back window "
            f"{self.hold_back_ns / 1000:.1f} us"
        ]


class PvWaiter:
    """``pv_wait``: publish the deadline in the page and kick (an exit) only when it is
    earlier than the host's promise; deadlines nearer than max(the host's advance, the spin
    threshold) are spun to; the margin goes back through the page."""

    def __init__(
        self,
        channel: PvDeadlineChannel,
        clock: GuestClock,
        counts: SimCounts,
        spin_threshold_ns: int,
    ) -> None:
        self.channel = channel
        self.clock = clock
        self.counts = counts
        self.spin_threshold_ns = spin_threshold_ns
        self.kicks = 0
        self.irq_events = 0  # events reached by an early interrupt
        self.spin_events = 0  # events spun to without one

    def wait(self, deadline_ns: int, now_ticks: int) -> bool:
        page = self.channel.page
        ahead_ns = deadline_ns - self.clock.ns_at(now_ticks)
        if ahead_ns <= max(page.advance_ns, self.spin_threshold_ns):
            self.spin_events += 1
            return False
        page.deadline_ns = deadline_ns
        if page.host_armed_ns == 0 or deadline_ns < page.host_armed_ns:
            self.kicks += 1
            self.counts.exits += 1  # an in-kernel ioeventfd exit, not a hypercall
            self.channel.kick(now_ticks)
        self.irq_events += 1
        return True

    def woke(self, margin_ns: int) -> None:
        page = self.channel.page
        page.margin_ns = margin_ns
        page.margin_seq += 1

    def host_wakeups(self, queue_wakeups: int) -> int:
        return self.channel.stats.wakeups  # the loop's: expiries slept for, and kicks

    def notes(self) -> list[str]:
        s = self.channel.stats
        return [
            f"pv: {self.irq_events} events by early interrupt, {self.spin_events} spun to "
            f"without one; the guest kicked the host {self.kicks} times, every other re-arm "
            f"was exitless",
            f"pv: adaptive advance ended at {self.channel.advance.advance_ns / 1000:.1f} us; "
            f"the deadline loop woke {s.wakeups} times, {s.looks} looks at the page after an "
            f"expiry, {s.late_wakeups} wake-ups after the deadline itself",
        ]
