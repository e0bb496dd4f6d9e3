"""The dedicated precise timer channel, host side (the paper's design, adapted to KVM).

The guest asks for an absolute deadline on its PV clock. The host wakes *early*, by an
adaptive advance (as KVM's ``lapic_timer_advance`` does), and raises the channel's own
interrupt; the guest then spins on its PV clock to the exact deadline. The event itself
is therefore never early; the early interrupt is only the wake-up. The advance adapts to
how early the guest actually woke: too late and it grows fast, needlessly early and it
shrinks slowly — every microsecond of advance is a microsecond of guest spinning, so the
precision it buys has a visible CPU cost.

The guest programs the channel from its vCPU thread and the expiry runs on a host timer
thread: as the clock-event device does, every change cancels first, and ``cancel`` waits
for a running expiry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction

from tickless.timers import policy
from tickless.timers.clock import GuestClock
from tickless.timers.hrtimer import HostTimer, TimerBase


@dataclass
class AdaptiveAdvance:
    """How early the host wakes before a precise deadline, tuned from the guest's margins."""

    advance_ns: int = 80_000
    target_margin_ns: int = 5_000  # wanted: the guest awake this long before the deadline
    min_ns: int = 1_000
    max_ns: int = 250_000
    grow: int = 1  # a late or tight wake-up adds grow / 2**grow_shift of the shortfall
    grow_shift: int = 0
    shrink_shift: int = 5  # a wake-up earlier than needed removes 1/32 of the surplus

    def for_rate(self, rate: Fraction) -> AdaptiveAdvance:
        """The same advance for a guest whose clock runs ``rate`` times wall speed: it is
        kept in guest ns, where a host wake-up's lateness looks ``rate`` times longer, so a
        faster guest's bounds and start grow with it (a slower one's stay: the advance
        adapts down within them)."""
        k = max(Fraction(1), Fraction(rate))
        return replace(
            self,
            advance_ns=int(self.advance_ns * k),
            target_margin_ns=int(self.target_margin_ns * k),
            max_ns=int(self.max_ns * k),
        )

    def update(self, margin_ns: int) -> int:
        """Fold in one observed margin (deadline - guest wake-up; negative: late)."""
        margin_ns = max(-self.max_ns, min(self.max_ns, margin_ns))  # guest-supplied
        error = margin_ns - self.target_margin_ns
        if error < 0:
            self.advance_ns += (self.grow * -error) >> self.grow_shift
        else:
            self.advance_ns -= error >> self.shrink_shift
        self.advance_ns = max(self.min_ns, min(self.max_ns, self.advance_ns))
        return self.advance_ns


@dataclass
class PreciseStats:
    armed: int = 0
    fired: int = 0
    rejected: int = 0
    late_wakeups: int = 0  # the host woke only after the deadline itself


class PreciseTimerChannel:
    """One guest's precise channel: absolute deadlines, early wake-up, own interrupt."""

    def __init__(
        self,
        clock: GuestClock,
        timers: TimerBase,
        raise_interrupt: Callable[[int], None],
        advance: AdaptiveAdvance | None = None,
        name: str = "precise",
    ) -> None:
        self.clock = clock
        self.timers = timers
        self.raise_interrupt = raise_interrupt
        self.advance = advance or AdaptiveAdvance()
        self.deadline_ns: int | None = None
        self.stats = PreciseStats()
        self.timer = HostTimer(self._expired, name=name)

    def set_deadline(self, deadline_ns: int, now_ticks: int, last_margin_ns: int | None) -> int:
        """SET_PRECISE: 0 cancels; a past deadline gets -ETIME; too far, -EINVAL
        (``policy.check_deadline``)."""
        if deadline_ns == 0:
            self.cancel()
            return 0
        code = policy.check_deadline(deadline_ns, self.clock.ns_at(now_ticks))
        if code:
            self.stats.rejected += 1
            return code
        if last_margin_ns is not None:
            self.advance.update(last_margin_ns)
        self.cancel()  # waits for a running expiry, which would clear the new deadline
        deadline_ticks = self.clock.ticks_at_or_after(deadline_ns)
        wake = deadline_ticks - self.clock.delta_ticks_at_least(self.advance.advance_ns)
        self.deadline_ns = deadline_ns
        self.stats.armed += 1
        self.timers.arm(self.timer, max(wake, now_ticks))
        return 0

    def cancel(self) -> None:
        """Disarm; when this returns the expiry is not running and will not run."""
        self.timers.cancel(self.timer)
        self.deadline_ns = None

    def _expired(self, now_ticks: int) -> None:
        self.stats.fired += 1
        if self.deadline_ns is not None and self.clock.ns_at(now_ticks) >= self.deadline_ns:
            self.stats.late_wakeups += 1
        self.deadline_ns = None
        self.raise_interrupt(now_ticks)
