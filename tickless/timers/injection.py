"""When an expired timer's interrupt may be injected into the guest.

Normal interrupts go in at once. A dedicated precise channel (the paper's design) may
reserve a window before its deadline during which other interrupts to the same vCPU are
held back, so none of their handlers runs just before the precise one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HoldBackWindow:
    """Hold other interrupts back during ``[deadline - window_ns, deadline]``."""

    window_ns: int

    def __post_init__(self) -> None:
        if self.window_ns < 0:
            raise ValueError("hold-back window must not be negative")

    def release_at(self, now_ns: int, precise_deadline_ns: int | None) -> int:
        """When an ordinary interrupt raised at ``now_ns`` may go in (``now_ns``: at once)."""
        if precise_deadline_ns is None or self.window_ns == 0:
            return now_ns
        if precise_deadline_ns - self.window_ns <= now_ns <= precise_deadline_ns:
            return precise_deadline_ns
        return now_ns
