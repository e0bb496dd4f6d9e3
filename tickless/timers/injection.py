"""When an expired timer's interrupt may be injected into the guest.

Normal interrupts go in at once. A dedicated precise channel (the paper's design) may
reserve a window before its deadline during which other interrupts to the same vCPU are
held back, so none of their handlers runs just before the precise one.
"""

from __future__ import annotations

from dataclasses import dataclass

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
