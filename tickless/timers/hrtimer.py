"""Host high-resolution timers: a queue ordered by expiry, with slop.

Slop works as Xen's ``timer_slop``: when the host must wake for the earliest timer, it
may instead wake at the latest expiry no more than ``slop`` after it, and run every timer
due by then in one wake-up. A timer therefore never runs early, and on an ideal host runs
at most ``slop`` late. Times are host clock ticks (the TSC on KVM, nanoseconds in the
simulator); the queue does not care which.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tickless.timers import policy


@dataclass(eq=False)
class HostTimer:
    """One host timer (Linux's ``struct hrtimer``); ``callback(now_ticks)`` runs when it
    expires."""

    callback: Callable[[int], None]
    name: str = ""
    expires: int | None = None


class TimerBase(Protocol):
    """Where a device arms its host timer: the bare queue (simulator) or a real-time
    timer thread that also reprograms its wake-up.

    ``arm`` is Linux's ``hrtimer_start`` (absolute expiry; re-arming moves the timer).
    ``cancel`` is ``hrtimer_cancel``: when it returns, the timer is disarmed and its
    callback is not running, so a device may change its state and re-arm without racing
    its own expiry (the timer thread waits for a running callback; the bare queue runs
    none). Unlike Linux, a callback may cancel its own timer: it cannot wait for itself, so
    it only disarms (all it needs, since nothing else runs that timer meanwhile)."""

    def arm(self, timer: HostTimer, expires: int) -> None: ...

    def cancel(self, timer: HostTimer) -> bool: ...


class TimerQueue:
    """Armed host timers, earliest first: an indexed binary heap (``tickless.timers.policy``,
    the same functions the simulator compiles), so re-arming and cancelling remove the old
    entry at once and the slop walk sees only live timers."""

    def __init__(self, slop_ticks: int = 0) -> None:
        if slop_ticks < 0:
            raise ValueError("slop must not be negative")
        self.slop_ticks = slop_ticks
        self._exp: list[int] = []  # heap slots, len == number armed
        self._seq: list[int] = []
        self._ref: list[HostTimer] = []
        self._pos: dict[HostTimer, int] = {}
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._exp)

    def arm(self, timer: HostTimer, expires: int) -> None:
        """(Re)arm ``timer`` to expire at ``expires``; an earlier arming is forgotten."""
        order = next(self._order)
        slot = self._pos.get(timer)
        n = len(self._exp)
        if slot is None:
            self._exp.append(expires)
            self._seq.append(order)
            self._ref.append(timer)
            policy.heap_push(self._exp, self._seq, self._ref, self._pos, n, expires, order, timer)
        else:
            policy.heap_rekey(self._exp, self._seq, self._ref, self._pos, n, slot, expires, order)
        timer.expires = expires

    def _take(self, slot: int) -> HostTimer:
        timer = self._ref[slot]
        policy.heap_remove(self._exp, self._seq, self._ref, self._pos, len(self._exp), slot)
        del self._pos[timer]
        self._exp.pop()
        self._seq.pop()
        self._ref.pop()
        timer.expires = None
        return timer

    def cancel(self, timer: HostTimer) -> bool:
        """Disarm; returns whether it was armed. The queue runs no callbacks (its owner
        does, on one thread), so there is no running callback to wait for."""
        slot = self._pos.get(timer)
        if slot is None:
            return False
        self._take(slot)
        return True

    def next_wakeup(self) -> int | None:
        """When the host should wake: the latest expiry within slop of the earliest."""
        if not self._exp:
            return None
        return policy.slop_wakeup(self._exp, len(self._exp), self.slop_ticks)

    def expire(self, now: int) -> list[HostTimer]:
        """Disarm and return every timer due at ``now``, in expiry order."""
        due = []
        while self._exp and self._exp[0] <= now:
            due.append(self._take(0))
        return due
