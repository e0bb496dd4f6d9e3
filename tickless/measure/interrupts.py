"""When each event's interrupt reached the small guest, and what its spin cost.

The guest writes, per event, the PV-clock time its workload in ring 3 saw the interrupt
counter move, before it spins (``user.c: measure``; 0 for an event spun to without an
interrupt). Ring 3, not the ISR: ring-3 code runs natively here while ring 0 is emulated
(an ``rdtsc`` in the handler costs ~2.4 µs and would delay every delivery it timed), and
the ring-3 detection is the very instant a non-spinning path (``lapic`` without advance,
``lguest``) records as its event, so the two paths' figures measure the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tickless.axes import TimerPath
from tickless.devices.results import ResultsDevice
from tickless.results.interrupts import SpinCost, summarize_interrupts
from tickless.results.record import rtc_deadlines_ns, spec_deadlines_ns
from tickless.results.schema import ResultRecord
from tickless.results.spec import MeasureSpec
from tickless.vmm.machine import GuestMachine

__all__ = ["GuestInterrupts", "apply_interrupts", "guest_deadlines_ns", "guest_interrupts"]


def guest_deadlines_ns(
    spec: MeasureSpec, machine: GuestMachine, timestamps_ns: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Each event's deadline: from the timestamps, or for the RTC also from the bracket
    the guest recorded around its releasing write (``rtc_deadlines_ns``)."""
    if spec.timer is TimerPath.RTC:
        bracket = machine.required(ResultsDevice).release_bracket_ns()
        return rtc_deadlines_ns(timestamps_ns, spec.device_period_ns, bracket)
    return spec_deadlines_ns(spec, timestamps_ns)


@dataclass
class GuestInterrupts:
    """One guest's interrupts: lateness of each that came (ns, event order) and its spin."""

    lateness_ns: npt.NDArray[np.int64]
    spin_ns: int
    events: int
    notes: list[str] = field(default_factory=list)

    def spin(self, rate: float) -> SpinCost:
        """Guest ns spun per event, and CPU seconds (guest time at ``rate`` per wall s)."""
        return SpinCost(mean_ns=self.spin_ns / max(self.events, 1), cpu_s=self.spin_ns / 1e9 / rate)


def guest_interrupts(
    spec: MeasureSpec, machine: GuestMachine, timestamps_ns: npt.NDArray[np.int64]
) -> GuestInterrupts | None:
    """What the small guest recorded (None for a guest that records no arrivals). The guest
    is untrusted: an arrival outside its event's window (after the event before it, not
    after the event itself) is dropped and counted in a note, and a spin total longer than
    the run is capped."""
    results = machine.device(ResultsDevice)
    if results is None or len(timestamps_ns) < 2:
        return None
    events = len(timestamps_ns) - 1
    try:
        arrivals = results.arrivals_ns(events)
    except LookupError:
        return None
    deadlines = guest_deadlines_ns(spec, machine, timestamps_ns)
    came = arrivals != 0
    fits = (arrivals >= timestamps_ns[:-1]) & (arrivals <= timestamps_ns[1:])
    notes = []
    misplaced = int(np.count_nonzero(came & ~fits))
    if misplaced:
        notes.append(f"interrupts: {misplaced} arrival times out of their event's window, ignored")
    span_ns = int(timestamps_ns[-1] - timestamps_ns[0])
    spin_ns = int(machine.shared.spin_ns)
    if spin_ns > span_ns:
        notes.append(f"interrupts: the guest reported {spin_ns} ns of spin in a {span_ns} ns run")
        spin_ns = span_ns
    lateness: npt.NDArray[np.int64] = (arrivals - deadlines)[came & fits]
    return GuestInterrupts(lateness, spin_ns, events, notes)


def apply_interrupts(record: ResultRecord, spec: MeasureSpec, found: list[GuestInterrupts]) -> None:
    """Put the guests' interrupts (pooled, for ``--guests N``) into ``record``."""
    if not found:
        return
    lateness = np.concatenate([g.lateness_ns for g in found])
    record.interrupt_lateness = summarize_interrupts(lateness)
    record.interrupt_lateness_ns = lateness.tolist()
    pooled = GuestInterrupts(lateness, sum(g.spin_ns for g in found), sum(g.events for g in found))
    record.spin = pooled.spin(float(spec.rate))
    for g in found:
        record.notes.extend(g.notes)
