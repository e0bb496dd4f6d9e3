"""Host high-resolution timers: a queue ordered by expiry, with slop.

Slop works as Xen's ``timer_slop``: when the host must wake for the earliest timer, it
may instead wake at the latest expiry no more than ``slop`` after it, and run every timer
due by then in one wake-up. A timer therefore never runs early, and on an ideal host runs
at most ``slop`` late. Times are host clock ticks (the TSC on KVM, nanoseconds in the
simulator); the queue does not care which.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(eq=False)
class HostTimer:
    """One host timer; ``callback(now_ticks)`` runs when it expires."""

    callback: Callable[[int], None]
    name: str = ""
    expires: int | None = None
    _generation: int = field(default=0, repr=False)


class TimerBase(Protocol):
    """Where a device arms its host timer: the bare queue (simulator) or a real-time
    timer thread that also reprograms its wake-up."""

    def arm(self, timer: HostTimer, expires: int) -> None: ...

    def cancel(self, timer: HostTimer) -> bool: ...


class TimerQueue:
    """Armed host timers, earliest first (a binary heap with lazy deletion)."""

    def __init__(self, slop_ticks: int = 0) -> None:
        if slop_ticks < 0:
            raise ValueError("slop must not be negative")
        self.slop_ticks = slop_ticks
        self._heap: list[tuple[int, int, int, HostTimer]] = []
        self._order = itertools.count()
        self._armed = 0

    def __len__(self) -> int:
        return self._armed

    def arm(self, timer: HostTimer, expires: int) -> None:
        """(Re)arm ``timer`` to expire at ``expires``; an earlier arming is forgotten."""
        if timer.expires is not None:
            self._armed -= 1
        timer._generation += 1
        timer.expires = expires
        self._armed += 1
        heapq.heappush(self._heap, (expires, next(self._order), timer._generation, timer))

    def cancel(self, timer: HostTimer) -> bool:
        """Disarm; returns whether it was armed."""
        if timer.expires is None:
            return False
        timer._generation += 1
        timer.expires = None
        self._armed -= 1
        return True

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and heap[0][2] != heap[0][3]._generation:
            heapq.heappop(heap)

    def earliest(self) -> int | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def next_wakeup(self) -> int | None:
        """When the host should wake: the latest expiry within slop of the earliest."""
        earliest = self.earliest()
        if earliest is None or self.slop_ticks == 0:
            return earliest
        limit = earliest + self.slop_ticks
        heap, latest, stack = self._heap, earliest, [0]
        while stack:  # walk only the part of the heap that lies inside the window
            i = stack.pop()
            expires, _, generation, timer = heap[i]
            if expires > limit:
                continue
            if generation == timer._generation:
                latest = max(latest, expires)
            stack.extend(c for c in (2 * i + 1, 2 * i + 2) if c < len(heap))
        return latest

    def expire(self, now: int) -> list[HostTimer]:
        """Disarm and return every timer due at ``now``, in expiry order."""
        heap, due = self._heap, []
        while heap and heap[0][0] <= now:
            _, _, generation, timer = heapq.heappop(heap)
            if generation != timer._generation:
                continue
            timer._generation += 1
            timer.expires = None
            self._armed -= 1
            due.append(timer)
        return due
