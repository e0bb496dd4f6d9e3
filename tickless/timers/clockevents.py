"""The host side of a guest's paravirtual clock-event device.

As in lguest: the guest asks for an interrupt ``delta_ns`` from now; the host, which knows
"now" on the guest's clock because it is in the guest's hypercall context, turns the delta
into an absolute deadline on the guest's clock, then into a host tick, and arms a host
high-resolution timer. When that fires, the device asks for the guest's timer interrupt.
A periodic mode gives the classic HZ tick, so ticking and tickless guests can be compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from tickless.timers import policy
from tickless.timers.clock import GuestClock
from tickless.timers.hrtimer import HostTimer, TimerBase
from tickless.timers.policy import check_delta

__all__ = ["ClockEventDevice", "ClockEventMode", "ClockEventStats", "check_delta"]


class ClockEventMode(Enum):
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
        self.mode = ClockEventMode.SHUTDOWN
        self.period_ns = 0
        self.next_event_ns: int | None = None  # deadline on the guest's clock
        self.stats = ClockEventStats()
        self.timer = HostTimer(self._expired, name=name)

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
        if delta_ns == 0:
            self.shutdown()
            return self._result(0)
        deadline_ns = policy.oneshot_deadline_ns(self.clock.ns_at(now_ticks), delta_ns)
        self.mode = ClockEventMode.ONESHOT
        self._arm(deadline_ns)
        return self._result(0)

    def set_periodic(self, period_ns: int, now_ticks: int) -> int:
        """A tick every ``period_ns`` from now on; 0 stops it."""
        code = policy.check_period(period_ns)
        if code:
            return self._result(code)
        if period_ns == 0:
            self.shutdown()
            return self._result(0)
        self.mode = ClockEventMode.PERIODIC
        self.period_ns = period_ns
        self._arm(policy.oneshot_deadline_ns(self.clock.ns_at(now_ticks), period_ns))
        return self._result(0)

    def shutdown(self) -> None:
        self.mode = ClockEventMode.SHUTDOWN
        self.next_event_ns = None
        self.timers.cancel(self.timer)

    def _arm(self, deadline_ns: int) -> None:
        self.next_event_ns = deadline_ns
        self.timers.arm(self.timer, self.clock.ticks_at_or_after(deadline_ns))

    def _expired(self, now_ticks: int) -> None:
        self.stats.expiries += 1
        if self.mode is ClockEventMode.PERIODIC and self.next_event_ns is not None:
            # Next tick on the period grid after now; ticks missed while late are skipped.
            next_ns, missed = policy.periodic_next_ns(
                self.next_event_ns, self.period_ns, self.clock.ns_at(now_ticks)
            )
            self.stats.overruns += missed
            self._arm(next_ns)
        else:
            self.mode = ClockEventMode.SHUTDOWN
            self.next_event_ns = None
        self.raise_interrupt(now_ticks)
