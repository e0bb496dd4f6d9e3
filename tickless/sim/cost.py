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

``box``: this machine, fitted to our real ``tickless idle`` runs, steady state (measured
after every guest booted; README): 10 periodic guests at 1000 HZ cost 109.5 % of a core at
10,000 expiries/s, so c = 109.5 us per interrupt; 1,000 tickless guests re-arming through
the lguest device (one hypercall per event, as the simulated guests do) cost 19.1 % at 999.8
events/s, so c + h = 191 us and h = 81.5 us (the port exit and the device's Python). B = 0:
what is left is the VMM's own loop and watchdog, ~1 % of a core whatever the number of
guests, not a per-guest cost (an earlier fit put 4.8 ms/s a guest here, from a run whose
CPU included the boot). An idle guest's periodic / tickless ratio is then ~570x: a Python
VMM on a nested host makes every tick dear, and an idle tickless guest costs almost nothing.

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

# Our real `tickless idle` runs (README), steady state after boot.
BOX_PERIODIC_CPU = 1.095  # of one core: 10 guests at 1000 HZ, 2 s
BOX_PERIODIC_EXPIRIES_PER_S = 10_000.1
BOX_FLEET_GUESTS = 1000  # tickless, --timer lguest (a hypercall per event), 30 s
BOX_FLEET_CPU = 0.191
BOX_FLEET_EVENTS_PER_S = 999.8


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
        duration_ns: float,
    ) -> npt.NDArray[np.float64]:
        """Host CPU ns spent on each guest over ``duration_ns``."""
        baseline = self.baseline_ns_per_s * duration_ns / SECOND_NS
        return baseline + self.per_interrupt_ns * interrupts + self.per_hypercall_ns * hypercalls

    def wakeup_cpu_ns(self, wakeups: int) -> float:
        return self.per_wakeup_ns * wakeups

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_box() -> CostModel:
    """The ``box`` model from our real idle runs (see the module docstring)."""
    per_interrupt_ns = BOX_PERIODIC_CPU * SECOND_NS / BOX_PERIODIC_EXPIRIES_PER_S
    per_event_ns = BOX_FLEET_CPU * SECOND_NS / BOX_FLEET_EVENTS_PER_S
    return CostModel(
        name="box",
        per_interrupt_ns=per_interrupt_ns,
        per_hypercall_ns=per_event_ns - per_interrupt_ns,
        per_wakeup_ns=0.0,  # not separable here: folded into per_interrupt_ns
        baseline_ns_per_s=0.0,  # the VMM's own ~1 % does not grow with guests
        source="fitted to real `tickless idle` runs on this machine, steady state (README): "
        "10 guests at 1000 HZ 109.5 % of a core at 10,000 expiries/s; 1,000 tickless guests "
        "(lguest device) 19.1 % at 999.8 events/s",
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
