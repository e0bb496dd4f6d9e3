"""When an expired timer's interrupt may be injected into the guest.

Normal interrupts go in at once. A dedicated precise channel (the paper's design) may
reserve a window before its deadline during which other interrupts to the same vCPU are
held back, so none of their handlers runs just before the precise one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from tickless.timers import policy


@dataclass(frozen=True)
class HoldBackWindow:
    """Hold other interrupts back during ``[deadline - window_ns, deadline]``."""

    window_ns: int

    def __post_init__(self) -> None:
        if self.window_ns < 0:
            raise ValueError("hold-back window must not be negative")

    def release_at(self, now_ns: int, precise_deadline_ns: int | None) -> int:
        """When an ordinary interrupt raised at ``now_ns`` may go in (``now_ns``: at once)."""
        has_deadline = precise_deadline_ns is not None
        return policy.hold_back_release_ns(
            now_ns, precise_deadline_ns or 0, self.window_ns, has_deadline
        )


class HoldMode(IntEnum):
    """How the I/O device holds interrupts back (the C loop's ``hold_mode``)."""

    NONE = 0  # they go in as they arrive
    FIXED = 1  # held in a fixed window before the guest's precise deadline
    COST = 2  # held from deadline - (measured cost + margin) until the event was delivered


HOLD_MARGIN_NS = 10_000  # beyond the handler's measured end: its iret, a HLT re-entry
ENTRY_GUESS_NS = 80_000  # emulated entry, EOI and iret back to ring 3, until the first sample
MAX_COST_NS = 500_000  # a sample longer than this is a preempted handler: clamped
MAX_HOLD_NS = 1_000_000  # an arrival held this long goes in after the next deadline anyway
RELEASE_AFTER_NS = 1_000  # held interrupts go in this long after the deadline ...
LATE_BOUND_NS = 20_000  # ... once the guest shows the event, or this long after it


@dataclass(frozen=True)
class HoldBack:
    """The I/O device's hold-back before a precise deadline, as the deadline loop runs it
    (``host/src/deadline_loop_io.h``): a fixed window, or one as long as an interrupt
    costs this guest (the loop's running estimate of injection to the handler's end) plus
    ``margin_ns``. Held arrivals go in together, coalesced, once the event was delivered."""

    mode: HoldMode
    window_ns: int = 0
    margin_ns: int = HOLD_MARGIN_NS
    initial_cost_ns: int = ENTRY_GUESS_NS
    max_cost_ns: int = MAX_COST_NS
    max_hold_ns: int = MAX_HOLD_NS
    release_after_ns: int = RELEASE_AFTER_NS
    late_bound_ns: int = LATE_BOUND_NS

    @classmethod
    def choose(cls, window_ns: int, cost_aware: bool, handler_ns: int) -> HoldBack:
        """Cost-aware (the estimate starts at the handler's busy time plus a guess at its
        emulated entry), a fixed ``window_ns``, or none (0)."""
        if cost_aware:
            return cls(HoldMode.COST, initial_cost_ns=handler_ns + ENTRY_GUESS_NS)
        if window_ns > 0:
            return cls(HoldMode.FIXED, window_ns=window_ns)
        return cls(HoldMode.NONE)

    def window_for(self, estimate_ns: int, advance_ns: int = 0) -> int:
        """How long before a deadline the window opens, given the loop's estimate (and the
        precise channel's advance when it will interrupt)."""
        if self.mode is HoldMode.FIXED:
            return self.window_ns
        if self.mode is HoldMode.COST:
            return estimate_ns + self.margin_ns + advance_ns
        return 0
