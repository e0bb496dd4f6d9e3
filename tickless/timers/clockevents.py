"""The host side of a guest's paravirtual clock-event device.

As in lguest: the guest asks for an interrupt ``delta_ns`` from now; the host, which knows
"now" on the guest's clock because it is in the guest's hypercall context, turns the delta
into an absolute deadline on the guest's clock, then into a host tick, and arms a host
high-resolution timer. When that fires, the device asks for the guest's timer interrupt.
A periodic state gives the classic HZ tick, so ticking and tickless guests can be compared.

Threads: the guest programs the device from its vCPU thread; the expiry runs on the host
timer thread. Every state change first cancels the host timer, and ``cancel`` waits for a
running expiry (``hrtimer_cancel``), so the expiry's state check and periodic re-arm never
interleave with a change (a ``SET_PERIODIC(0)`` cannot leave a periodic timer armed).
A re-anchored clock (``clock_changed``: dilation, warp, freeze; it may come from another
guest's vCPU thread on a shared timeline) and the guest's own calls are serialized by a
lock that the expiry never takes.

Periodic ticks the host misses are dropped, not caught up: an expiry handled late moves
the next tick to the first grid point after now (``policy.hrtimer_forward``) and counts the
ticks skipped in ``overruns`` — one interrupt, never a burst (KVM's hv-timer once caught
up one period at a time without bound, commit 18ab3fc8e880; Hyper-V's "lazy" timers drop).
A frozen clock stands still, so no tick is due while frozen and none is missed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from tickless.timers import policy
from tickless.timers.clock import GuestClock
from tickless.timers.hrtimer import HostTimer, TimerBase
from tickless.timers.policy import check_delta

__all__ = ["ClockEventDevice", "ClockEventState", "ClockEventStats", "PeriodicGrid", "check_delta"]


class PeriodicGrid(Protocol):
    """A periodic tick whose period is not a whole number of ns (the PIT's N/1.193182 MHz,
    the RTC's 2^-k s): expiry ``i`` is at guest time ``time_ns(i)``, strictly increasing, so
    every expiry is derived from the grid's origin and never drifts by rounding."""

    def index_after(self, ns: int) -> int:
        """The first index whose time is after ``ns``."""
        ...

    def time_ns(self, index: int) -> int:
        """When expiry ``index`` is due, guest ns."""
        ...


class ClockEventState(Enum):
    """Linux's ``enum clock_event_state`` (the states this device has)."""

    SHUTDOWN = "shutdown"
    ONESHOT = "oneshot"
    PERIODIC = "periodic"


@dataclass
class ClockEventStats:
    programmed: int = 0  # accepted set_next_event / set_periodic calls
    rejected: int = 0  # calls answered with an error
    consecutive_rejected: int = 0
    expiries: int = 0  # host timer expiries (each asks for one guest interrupt)
    overruns: int = 0  # periodic ticks that fell behind and were skipped


class ClockEventDevice:
    """One guest's clock-event device, as the host sees it.

    ``raise_interrupt(now_ticks)`` is called (from the timer queue's owner) when the event
    is due; the backend decides how to inject it.
    """

    def __init__(
        self,
        clock: GuestClock,
        timers: TimerBase,
        raise_interrupt: Callable[[int], None],
        name: str = "clockevent",
    ) -> None:
        self.clock = clock
        self.timers = timers
        self.raise_interrupt = raise_interrupt
        self.state = ClockEventState.SHUTDOWN
        self.period_ns = 0
        self.next_event_ns: int | None = None  # deadline on the guest's clock
        self.grid: PeriodicGrid | None = None  # set_periodic_grid's (period_ns is then 0)
        self.grid_index = 0  # the pending expiry's index on the grid
        self.stats = ClockEventStats()
        self.timer = HostTimer(self._expired, name=name)
        self._lock = threading.Lock()  # the guest's calls and clock changes, not the expiry

    def _result(self, code: int) -> int:
        if code == 0:
            self.stats.programmed += 1
            self.stats.consecutive_rejected = 0
        else:
            self.stats.rejected += 1
            self.stats.consecutive_rejected += 1
        return code

    def set_next_event(self, delta_ns: int, now_ticks: int) -> int:
        """HCALL_SET_CLOCKEVENT: one-shot interrupt ``delta_ns`` from now; 0 cancels."""
        code = policy.check_delta(delta_ns)
        if code:
            return self._result(code)
        with self._lock:
            self._shutdown()
            if delta_ns:
                now_ns = self.clock.ns_at(max(now_ticks, self.clock.tsc_timestamp))
                self.state = ClockEventState.ONESHOT
                self._program_event(policy.oneshot_deadline_ns(now_ns, delta_ns))
        return self._result(0)

    def set_deadline(self, deadline_ns: int, now_ticks: int) -> int:
        """A one-shot at an absolute guest time (BLOCK's): -ETIME if already reached,
        -EINVAL beyond ``MAX_DELTA_NS`` (``policy.check_deadline``)."""
        with self._lock:
            now_ns = self.clock.ns_at(max(now_ticks, self.clock.tsc_timestamp))
            code = policy.check_deadline(deadline_ns, now_ns)
            if code:
                return self._result(code)
            self._shutdown()
            self.state = ClockEventState.ONESHOT
            self._program_event(deadline_ns)
        return self._result(0)

    def set_periodic(self, period_ns: int, now_ticks: int) -> int:
        """A tick every ``period_ns`` from now on; 0 stops it."""
        code = policy.check_period(period_ns)
        if code:
            return self._result(code)
        with self._lock:
            self._shutdown()
            if period_ns:
                now_ns = self.clock.ns_at(max(now_ticks, self.clock.tsc_timestamp))
                self.state = ClockEventState.PERIODIC
                self.period_ns = period_ns
                self._program_event(policy.oneshot_deadline_ns(now_ns, period_ns))
        return self._result(0)

    def set_periodic_grid(self, grid: PeriodicGrid, now_ticks: int) -> int:
        """A tick on ``grid`` from its first point after now on (no minimum is checked
        here: the device that owns the grid spaces its points at least ``MIN_PERIOD_NS``)."""
        with self._lock:
            self._shutdown()
            now_ns = self.clock.ns_at(max(now_ticks, self.clock.tsc_timestamp))
            self.state = ClockEventState.PERIODIC
            self.grid, self.period_ns = grid, 0
            self.grid_index = grid.index_after(now_ns)
            self._program_event(grid.time_ns(self.grid_index))
        return self._result(0)

    def shutdown(self) -> None:
        """Stop the device; when this returns its expiry is not running and will not run."""
        with self._lock:
            self._shutdown()

    def _shutdown(self) -> None:
        self.timers.cancel(self.timer)
        self.state = ClockEventState.SHUTDOWN
        self.next_event_ns = None
        self.grid = None

    def clock_changed(self, clock: GuestClock, now_ticks: int) -> None:
        """The guest's clock was re-anchored: the pending event keeps its guest time and
        is armed again on the new clock (at once after a warp past it; never while frozen)."""
        with self._lock:
            self.timers.cancel(self.timer)
            self.clock = clock
            if self.next_event_ns is not None and not clock.frozen:
                self.timers.arm(self.timer, clock.ticks_at_or_after(self.next_event_ns))

    def begin_clock_change(self) -> None:
        """Nothing to mark: the host's timers follow at ``clock_changed``."""

    def fire_if_due(self, now_ticks: int) -> bool:
        """Run the pending event now if the clock has reached it (a warp's synchronous
        delivery); True if it ran. The host timer is cancelled first, so it runs once."""
        with self._lock:
            self.timers.cancel(self.timer)
            clock, pending = self.clock, self.next_event_ns
            if pending is None or clock.ns_at(max(now_ticks, clock.tsc_timestamp)) < pending:
                if pending is not None and not clock.frozen:
                    self.timers.arm(self.timer, clock.ticks_at_or_after(pending))
                return False
            self._expired(now_ticks)
            return True

    def _program_event(self, deadline_ns: int) -> None:
        """Arm the host timer for ``deadline_ns`` on the guest's clock (as
        ``clockevents_program_event`` takes an absolute expiry); not while it is frozen
        (``clock_changed`` arms it at the thaw)."""
        self.next_event_ns = deadline_ns
        if not self.clock.frozen:
            self.timers.arm(self.timer, self.clock.ticks_at_or_after(deadline_ns))

    def _expired(self, now_ticks: int) -> None:
        """The host timer fired: forward a periodic tick (``tick_handle_periodic``), then
        ask for the guest's interrupt. Runs on the timer thread; state changes wait for it."""
        self.stats.expiries += 1
        grid, pending = self.grid, self.next_event_ns
        if self.state is ClockEventState.PERIODIC and grid is not None and pending is not None:
            clock = self.clock
            now_ns = clock.ns_at(max(now_ticks, clock.tsc_timestamp))
            index = grid.index_after(max(now_ns, pending))
            self.stats.overruns += max(0, index - self.grid_index - 1)
            self.grid_index = index
            self._program_event(grid.time_ns(index))
        elif self.state is ClockEventState.PERIODIC and self.next_event_ns is not None:
            # Next tick on the period grid after now; ticks missed while late are skipped.
            clock = self.clock
            next_ns, skipped = policy.hrtimer_forward(
                self.next_event_ns, clock.ns_at(max(now_ticks, clock.tsc_timestamp)), self.period_ns
            )
            self.stats.overruns += skipped
            self._program_event(next_ns)
        else:
            self.state = ClockEventState.SHUTDOWN
            self.next_event_ns = None
        self.raise_interrupt(now_ticks)
