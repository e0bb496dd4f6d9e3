"""What a guest's timers cost the host CPU: an explicit, linear model.

    guest cost  = baseline x time + per_interrupt x timer interrupts + per_hypercall x calls
    CPU cost    = its guests' costs + per_wakeup x host timer wake-ups + I/O handler time

* ``per_interrupt_ns``: one injected timer interrupt, end to end: the host timer expiry, the
  injection, the vCPU's exit and re-entry and the guest's handler.
* ``per_hypercall_ns``: one device programming call (a tickless guest makes one per event).
* ``per_wakeup_ns``: a host timer wake-up beyond the interrupts it serves (what slop saves).
* ``baseline_ns_per_s``: per guest, whatever does not depend on its ticks (the VMM's own
  loop, housekeeping threads, memory management). The periodic / tickless ratio of an idle
  guest is set by it: with ``r`` tickless events/s,
  ``ratio = (B + HZ*c) / (B + r*(c + h))``, so ``B = (HZ*c - ratio*r*(c + h)) / (ratio - 1)``
  yields a given ratio.

Two calibrations:

``box``: this machine, fitted to our real ``tickless idle`` runs (README, 10 guests, 2 s):
periodic 1000 HZ costs 94 % of a core at 9,843 expiries/s, tickless 4.9 % at 9.8/s. Two
points, one line: c = (0.94 - 0.049) / (9843 - 9.8) = 90.6 us per interrupt (the notes
measured 35-55 us with halt polling off; polling after each wake-up makes up the rest);
h = 37.6 us, the hypercall round trip measured in the README; B = the tickless run's cost
minus its events, 4.8 ms/s per guest, an upper bound (boot is in it). This gives ~20x: a
Python VMM on a nested host makes every tick dear.

``kvm-2007``: KVM as Ingo Molnar measured it when he wrote that dynticks "makes the
overhead of an idle guest go down by a factor of 10-15" (KernelTrap, Feb 2007). Avi Kivity
said in the same thread that "currently an idle guest consumes a few percent cpu": ~3 % at
the then-usual HZ=1000 is c = 30 us per tick (exit to QEMU's userspace PIT of the time and
back). h = 2 us (an in-kernel hypercall exit). B = 2.5 ms/s per guest: QEMU's own main
loop, which kept waking whatever the guest did (its display refresh timer alone every
30 ms, ``GUI_REFRESH_INTERVAL``, ~33 wake-ups/s at ~75 us each). That B is an assumption,
not a measurement; B between 2.1 and 3.3 ms/s gives 10-15x, and any B makes the ratio
finite (it is HZ*c/(r*(c+h)) ~ 940x with no baseline at all).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

SECOND_NS = 1_000_000_000

# Our real `tickless idle` runs (README, "Idle guests"): 10 guests, 2 s.
BOX_GUESTS = 10
BOX_PERIODIC_CPU = 0.94  # of one core
BOX_PERIODIC_EXPIRIES_PER_S = 9_843.0
BOX_TICKLESS_CPU = 0.049
BOX_TICKLESS_EXPIRIES_PER_S = 9.8
BOX_HYPERCALL_NS = 37_600  # README: hypercall round trip, mean


@dataclass(frozen=True)
class CostModel:
    """Host CPU per timer event and per guest; see the module docstring."""

    name: str
    per_interrupt_ns: float
    per_hypercall_ns: float
    per_wakeup_ns: float
    baseline_ns_per_s: float  # per guest
    source: str

    def guest_cpu_ns(
        self,
        interrupts: npt.NDArray[np.int64],
        hypercalls: npt.NDArray[np.int64],
        duration_ns: int,
    ) -> npt.NDArray[np.float64]:
        """Host CPU ns spent on each guest over ``duration_ns``."""
        baseline = self.baseline_ns_per_s * duration_ns / SECOND_NS
        return baseline + self.per_interrupt_ns * interrupts + self.per_hypercall_ns * hypercalls

    def wakeup_cpu_ns(self, wakeups: int) -> float:
        return self.per_wakeup_ns * wakeups

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_box() -> CostModel:
    """The ``box`` model from our two real idle runs (see the module docstring)."""
    # Two points, one line; the tickless run's hypercalls (one per event) are known.
    per_interrupt_ns = (
        (BOX_PERIODIC_CPU - BOX_TICKLESS_CPU) * SECOND_NS
        + BOX_HYPERCALL_NS * BOX_TICKLESS_EXPIRIES_PER_S
    ) / (BOX_PERIODIC_EXPIRIES_PER_S - BOX_TICKLESS_EXPIRIES_PER_S)
    tickless_per_guest_s = BOX_TICKLESS_EXPIRIES_PER_S / BOX_GUESTS
    events_ns = (per_interrupt_ns + BOX_HYPERCALL_NS) * tickless_per_guest_s
    baseline = BOX_TICKLESS_CPU * SECOND_NS / BOX_GUESTS - events_ns
    return CostModel(
        name="box",
        per_interrupt_ns=per_interrupt_ns,
        per_hypercall_ns=BOX_HYPERCALL_NS,
        per_wakeup_ns=0.0,  # not separable from two points: folded into per_interrupt_ns
        baseline_ns_per_s=baseline,
        source="fitted to real `tickless idle` runs on this machine (README): 10 guests, "
        "periodic 1000 HZ 94 % of a core at 9,843 expiries/s, tickless 4.9 % at 9.8/s",
    )


KVM_2007 = CostModel(
    name="kvm-2007",
    per_interrupt_ns=30_000.0,
    per_hypercall_ns=2_000.0,
    per_wakeup_ns=0.0,
    baseline_ns_per_s=2_500_000.0,
    source="KVM with QEMU, early 2007: 'an idle guest consumes a few percent cpu' (Kivity) "
    "at HZ=1000; dynticks cut it 10-15x (Molnar); baseline 2.5 ms/s per guest assumed "
    "(QEMU's own main loop)",
)

COST_MODELS: dict[str, CostModel] = {"box": fit_box(), "kvm-2007": KVM_2007}
