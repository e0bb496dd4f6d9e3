"""When the interrupt arrived, beside when the event was delivered.

On paths that spin (``pv``, ``precise``, ``lapic --advance auto``, warped waits) the guest
wakes from an early interrupt and spins on its PV clock to the deadline before it takes the
event's timestamp, so the delivered time is never early by construction. What can be early
(on purpose: that is the advance) or late is the interrupt: its ring-3 arrival, the instant
a non-spinning path (``lapic`` without advance, ``lguest``, ``host``) records as its event.
``InterruptLateness`` summarises that arrival against the deadline; ``SpinCost`` says what
the spin to the deadline cost. The record's fields (``results/schema.py``, version 4):

    advance          str    "auto": the guest was woken early by an adaptive advance and spun
                            to the deadline (pv, precise, lapic --advance auto, --warp-idle
                            waits); "off": the event is the interrupt's arrival (no spin).
    interrupt_lateness object? Ring-3 arrival of each event's interrupt, before any spin,
                            minus its deadline, ns (modelled by the simulator); null in
                            records older than version 4:
        count        int    Events reached through an interrupt (the rest: spun to without).
        mean_ns, p99_ns, max_ns  float?  null when count is 0.
        early_count  int    Interrupts that arrived before their deadline: what the advance
                            aims for on spinning paths; any is a failure where advance is off.
    interrupt_lateness_ns [int] Each of those interrupts' lateness, in event order.
    spin             object? What spinning to the deadline cost (null where not known):
        mean_ns      float  Guest ns spun per event (0 where advance is off).
        cpu_s        float  CPU seconds spent spinning in all (guest time / dilation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tickless.jsonfields import StrictReader

__all__ = [
    "InterruptLateness",
    "SpinCost",
    "interrupt_lateness_from_json",
    "interrupt_lateness_to_json",
    "spin_from_json",
    "spin_to_json",
    "summarize_interrupts",
]


@dataclass(frozen=True)
class InterruptLateness:
    """Ring-3 arrival of each event's interrupt minus its deadline, ns (negative: early).
    ``count`` events came by interrupt; the others were spun to without one, and when
    none came by interrupt the statistics are None."""

    count: int
    mean_ns: float | None
    p99_ns: float | None
    max_ns: float | None
    early_count: int  # interrupts that arrived before their deadline (the advance's aim)


@dataclass(frozen=True)
class SpinCost:
    """What spinning to the deadline cost: guest ns per event, and CPU seconds in all."""

    mean_ns: float
    cpu_s: float


NO_SPIN = SpinCost(mean_ns=0.0, cpu_s=0.0)


def summarize_interrupts(lateness_ns: npt.ArrayLike) -> InterruptLateness:
    """The summary of the interrupts' lateness (an empty set: none came by interrupt)."""
    arr = np.asarray(lateness_ns, dtype=np.float64)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)):
        raise ValueError("interrupt lateness must be a 1-D sequence of finite values")
    if arr.size == 0:
        return InterruptLateness(count=0, mean_ns=None, p99_ns=None, max_ns=None, early_count=0)
    return InterruptLateness(
        count=int(arr.size),
        mean_ns=float(np.mean(arr)),
        p99_ns=float(np.percentile(arr, 99.0)),
        max_ns=float(np.max(arr)),
        early_count=int(np.count_nonzero(arr < 0)),
    )


def interrupt_lateness_to_json(late: InterruptLateness | None) -> dict[str, Any] | None:
    if late is None:
        return None
    return {
        "count": late.count,
        "mean_ns": late.mean_ns,
        "p99_ns": late.p99_ns,
        "max_ns": late.max_ns,
        "early_count": late.early_count,
    }


def _optional_float(reader: StrictReader, key: str) -> float | None:
    return None if reader.get(key) is None else reader.float_(key)


def interrupt_lateness_from_json(
    top: StrictReader, per_event_ns: list[int]
) -> InterruptLateness | None:
    """The record's ``interrupt_lateness`` block, checked against its per-event list: a
    summary that disagrees with the values it summarises is refused, not trusted."""
    if top.get("interrupt_lateness") is None:
        if per_event_ns:
            raise top.fail("interrupt_lateness_ns", "holds values but no summary")
        return None
    block = top.object_("interrupt_lateness")
    late = InterruptLateness(
        count=block.int_("count", minimum=0),
        mean_ns=_optional_float(block, "mean_ns"),
        p99_ns=_optional_float(block, "p99_ns"),
        max_ns=_optional_float(block, "max_ns"),
        early_count=block.int_("early_count", minimum=0),
    )
    block.check_no_extra()
    if late.count != len(per_event_ns):
        raise block.fail("count", f"is {late.count} but {len(per_event_ns)} values are listed")
    early = sum(1 for v in per_event_ns if v < 0)
    if late.early_count != early:
        raise block.fail("early_count", f"is {late.early_count} but {early} values are < 0")
    if (late.mean_ns is None) != (late.count == 0):
        raise block.fail("mean_ns", "must be null exactly when no interrupt was counted")
    return late


def spin_to_json(spin: SpinCost | None) -> dict[str, Any] | None:
    return None if spin is None else {"mean_ns": spin.mean_ns, "cpu_s": spin.cpu_s}


def spin_from_json(top: StrictReader) -> SpinCost | None:
    if top.get("spin") is None:
        return None
    block = top.object_("spin")
    spin = SpinCost(mean_ns=block.float_("mean_ns"), cpu_s=block.float_("cpu_s"))
    block.check_no_extra()
    return spin
