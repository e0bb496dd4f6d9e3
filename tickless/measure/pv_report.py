"""What the PV deadline device did in one run: counts for the record, notes, and the
``--explain`` breakdown (``measure/explain.py``)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tickless.axes import GuestKind, TimerPath
from tickless.devices.results import ResultsDevice
from tickless.devices.uart import UartDevice
from tickless.measure.explain import build_breakdown
from tickless.results.breakdown import Breakdown
from tickless.results.spec import MeasureSpec
from tickless.vmm.machine import GuestMachine


def pv_counts(machine: GuestMachine) -> tuple[int, int, int, list[str]]:
    """(injections, loop wake-ups, kicks, notes) of the PV deadline device."""
    stats = machine.pv.stats()
    assert stats is not None
    shared = machine.shared
    kicks = int(shared.pv_kicks)
    irq, spun = int(shared.pv_irq_events), int(shared.pv_spin_events)
    how = (
        "Linux's driver (its events are the interrupts, delivered at the deadline)"
        if machine.config.guest is GuestKind.LINUX
        else f"{irq} events by early interrupt, {spun} spun to without one"
    )
    notes = [
        f"pv: {how}; the guest kicked "
        f"the host {kicks} times (in-kernel ioeventfd exits, {stats.kicks} loop wake-ups by "
        f"kick), every other re-arm was exitless",
        f"pv: adaptive advance ended at {stats.advance_ns / 1000:.1f} us; the deadline loop "
        f"woke {stats.loop_wakeups} times (shared by every guest of the host), "
        f"{stats.looks} looks at the page after an expiry, "
        f"{stats.late_wakeups} wake-ups after the deadline itself",
    ]
    if stats.past_deadlines or stats.far_deadlines:
        notes.append(
            f"pv: the guest published {stats.past_deadlines} deadlines already past and "
            f"{stats.far_deadlines} beyond an hour (clamped)"
        )
    failed = stats.failure_note("pv")
    if failed:
        notes.append(failed)
    if machine.pv.slow_kicks:
        notes.append(f"pv: {machine.pv.slow_kicks} kicks of another width came through Python")
    return stats.fired, stats.loop_wakeups, kicks, notes


def explain_run(
    spec: MeasureSpec, machine: GuestMachine, timestamps_ns: npt.NDArray[np.int64]
) -> Breakdown | None:
    """The per-event breakdown of a ``--explain`` run (None otherwise)."""
    if not spec.explain or spec.timer is not TimerPath.PV:
        return None
    results = machine.device(ResultsDevice)
    log, stats = machine.pv.event_log(), machine.pv.stats()
    if results is None or log is None or stats is None:
        return None
    events = len(timestamps_ns) - 1
    entries, gaps = results.explain_arrays(events)
    return build_breakdown(
        machine.clock,
        timestamps_ns,
        entries,
        gaps,
        log,
        spec.interval_ns,
        spec.method,
        stats.advance_ns,
    )


def console_exits(machine: GuestMachine) -> int:
    """Exits the guest's serial console has cost so far (0 without one)."""
    uart = machine.device(UartDevice)
    return uart.uart.accesses if uart is not None else 0


def linux_pv_note(machine: GuestMachine, exits: int, kicks: int) -> str:
    """Linux on the PV device, from its workload's start: exits and kicks per event."""
    events = max(machine.events_recorded, 1)
    return (
        f"linux pv: {exits} exits during the workload besides its console's "
        f"({exits / events:.3f} per event), of which {kicks} kicks ({kicks / events:.3f} "
        f"per event); the host delivers at the deadline itself (Linux cannot spin): "
        f"{int(machine.shared.pv_early_irqs)} interrupts came before the deadline the "
        f"host fired them for"
    )
