"""What the I/O load did in one run (the record's ``io`` block and notes), and the precise
channel's ``--explain``: each late event's cause (``late_causes``)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tickless.axes import IoCpu, TimerPath
from tickless.devices.results import ResultsDevice
from tickless.measure.explain import late_causes
from tickless.results.io_counts import IoCounts, LateCauses
from tickless.results.record import event_deadlines_ns
from tickless.results.spec import MeasureSpec
from tickless.vmm.machine import GuestMachine


def io_counts(spec: MeasureSpec, machine: GuestMachine) -> IoCounts | None:
    """The I/O device's accounting (None without an I/O load)."""
    if machine.io is None:
        return None
    s, shared = machine.io.stats, machine.shared
    return IoCounts(
        io_cpu=str(machine.io.io_cpu),
        requested_per_s=machine.io.rate_per_s,
        arrivals=s.arrivals,
        delivered=s.delivered,
        covered=s.covered,
        coalesced=s.coalesced,
        held=s.held,
        forced=s.forced,
        pending=s.pending,
        lost=s.lost,
        handled_cpu0=int(shared.io_irq_cpu0),
        handled_cpu1=int(shared.io_irq_cpu1),
        achieved_per_s=s.rate_per_s(s.covered),
        interrupts_per_s=s.rate_per_s(s.delivered),
        cost_mean_ns=s.cost_sum_ns / s.cost_samples if s.cost_samples else 0.0,
        cost_max_ns=s.cost_max_ns,
        cost_estimate_ns=s.estimate_ns if s.cost_samples else 0,
    )


def io_notes(spec: MeasureSpec, counts: IoCounts) -> list[str]:
    c = counts
    notes = [
        f"io load on vCPU {'1 (--io-cpu other)' if c.io_cpu == IoCpu.OTHER else '0 (the timer)'}"
        f": requested {c.requested_per_s:.0f}/s, achieved {c.achieved_per_s:.0f} arrivals/s "
        f"in {c.delivered} interrupts ({c.interrupts_per_s:.0f}/s; handler busy "
        f"{spec.io_handler_ns / 1000:g} us each)",
        f"io load: {c.arrivals} arrivals = {c.covered} covered by {c.delivered} interrupts "
        f"({c.coalesced} coalesced) + {c.pending} pending at the end; {c.held} held back by "
        f"the precise channel's window, {c.forced} interrupts forced in, {c.lost} lost",
    ]
    if c.cost_mean_ns:
        notes.append(
            f"io load: an interrupt cost the guest {c.cost_mean_ns / 1000:.1f} us on average "
            f"(max {c.cost_max_ns / 1000:.1f} us; injection to ring 3 running again), the "
            f"running estimate ended at {c.cost_estimate_ns / 1000:.1f} us"
        )
    if c.achieved_per_s < 0.95 * c.requested_per_s:
        notes.append(
            f"io load: WARNING only {c.achieved_per_s:.0f} of {c.requested_per_s:.0f} "
            "arrivals/s were covered: the run was short or the device fell behind"
        )
    return notes


def precise_late_causes(
    spec: MeasureSpec, machine: GuestMachine, timestamps_ns: npt.NDArray[np.int64]
) -> LateCauses | None:
    """``--explain`` on ``--timer precise`` (None otherwise)."""
    if not spec.explain or spec.timer is not TimerPath.PRECISE:
        return None
    results = machine.device(ResultsDevice)
    if results is None or len(timestamps_ns) < 2:
        return None
    _, gaps = results.explain_arrays(len(timestamps_ns) - 1)
    io = machine.io
    same = io is not None and io.io_cpu is IoCpu.SAME
    return late_causes(
        machine.clock,
        timestamps_ns,
        event_deadlines_ns(timestamps_ns, spec.interval_ns, spec.method),
        gaps,
        io.event_log() if io is not None and same else None,
        io.stats.estimate_ns if io is not None else 0,
        machine.precise.event_log(),
    )
