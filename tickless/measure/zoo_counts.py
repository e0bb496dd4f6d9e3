"""What the timer zoo's chips counted on a small guest's run (``host_counts`` in
``measure/kvm.py`` asks here): its events, the chip's interrupts, the host timer wake-ups,
and what each chip noticed, into ``notes``."""

from __future__ import annotations

from tickless.axes import TimerPath
from tickless.devices.hpet import HpetDevice
from tickless.devices.pit import PitDevice
from tickless.devices.results import ResultsDevice
from tickless.devices.rtc import RtcDevice
from tickless.vmm.host import VmmHost
from tickless.vmm.machine import GuestMachine


def zoo_counts(
    timer: TimerPath, host: VmmHost, machine: GuestMachine, notes: list[str]
) -> tuple[int, int, int]:
    """(timer events, injections, host wake-ups) of a run on ``timer`` (hpet, pit or rtc)."""
    shared = machine.shared
    if timer is TimerPath.RTC:
        rtc = machine.device(RtcDevice)
        timer_events = int(shared.irq_count)
        injections, wakeups = (rtc.chip.raised if rtc else 0), host.timers.stats.wakeups
        notes.extend([rtc.summary()] if rtc else [])
        bracket_ns = machine.required(ResultsDevice).release_bracket_ns()
        notes.append(
            f"rtc: the guest released the divider within a bracket of {bracket_ns} ns of its "
            "PV clock (part of every event's lateness: deadlines count from its start; "
            f"released {int(shared.rtc_rereleases)} more times for a narrower one)"
        )
    elif timer is TimerPath.PIT:
        pit = machine.device(PitDevice)
        assert pit is not None  # a zoo guest always has one
        timer_events = int(shared.irq_count)
        injections, wakeups = pit.pit.stats.irqs, pit.pit.clockevent.stats.expiries
        notes.append(pit.summary())
        merged = injections - timer_events
        if merged > 1:  # one may come after the last event
            notes.append(
                f"pit: {merged} edges raised while the one before was still pending merged "
                "into it (a periodic event after a merge is a tick late)"
            )
        if pit.pit.clockevent.stats.overruns:
            notes.append(
                f"pit: {pit.pit.clockevent.stats.overruns} periodic edges the host "
                "timer missed (dropped, not caught up)"
            )
    else:
        hpet = machine.device(HpetDevice)
        assert hpet is not None
        timer_events = int(shared.irq_count)
        injections, wakeups = hpet.hpet.stats.interrupts, host.timers.stats.wakeups
        notes.append(hpet.summary())
    return timer_events, injections, wakeups
