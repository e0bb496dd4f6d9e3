"""Snapshots of an idle fleet's counters, and what only Linux guests add.

Boot would swamp what idle timers cost (a Linux guest boots for seconds here; a thousand
small ones take seconds together), so every idle run (``measure/idle.py``) starts every
guest, waits until each one's workload runs (``shared.ready``), takes a snapshot of every
counter, lets them idle for the run's duration, takes another, and stops them: the rates
are the difference, boot excluded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tickless.host.cputime import process_cpu_s
from tickless.measure.kvm import linux_notes
from tickless.measure.linux_clocks import (
    GuestClocks,
    console_ratio_note,
    fleet_clocks,
    guest_clocks,
)
from tickless.measure.pv_report import console_exits
from tickless.vmm.host import VmmHost
from tickless.vmm.linux_boot import LinuxGuestInfo, read_linux_info
from tickless.vmm.machine import GuestMachine

LINUX_IDLE_UNTIL_STOPPED_NS = 24 * 3600 * 10**9  # the guest's own end: never, in practice
BOOT_TIMEOUT_S = 180.0  # every Linux guest must run its workload by then (+10 s a guest)


@dataclass(frozen=True)
class GuestSnapshot:
    timer_interrupts: int
    wakeups: int
    housekeeping_runs: int
    hypercalls: int
    exits: int
    injections: int
    vcpu_cpu_ns: int
    spin_ns: int  # guest time spun in ring 3 to deadlines (its own count: untrusted)

    @classmethod
    def of(cls, m: GuestMachine) -> GuestSnapshot:
        shared = m.shared
        return cls(
            # a small guest's timer interrupts come on one of the two (--pv-idle lapic: LAPIC)
            int(shared.irq_count) + int(shared.lapic_irq_count),
            int(shared.wakeups),
            int(shared.timer_callbacks),
            m.hypercalls.calls,
            # + in-kernel PV kicks, - the console's (a Linux guest's printk at its start)
            sum(m.outcome.exits.values()) + int(shared.pv_kicks) - console_exits(m),
            m.context.injections,
            m.vcpu_cpu_ns(),
            int(shared.spin_ns),
        )


@dataclass(frozen=True)
class HostSnapshot:
    t_s: float
    cpu_s: float
    wakeups: int
    expiries: int
    timer_thread_ns: int
    guests: tuple[GuestSnapshot, ...]

    @classmethod
    def of(cls, host: VmmHost, machines: list[GuestMachine]) -> HostSnapshot:
        wakeups, expiries, timer_cpu_ns = host.timer_totals()
        return cls(
            time.monotonic(),
            process_cpu_s(),
            wakeups,
            expiries,
            timer_cpu_ns,
            tuple(GuestSnapshot.of(m) for m in machines),
        )


def linux_extras(
    machines: list[GuestMachine],
) -> tuple[LinuxGuestInfo | None, list[str], dict[str, int], GuestClocks]:
    """What only a Linux fleet reports: the kernel's choices (from guest0), every guest's
    clocks at their worst, its notes, and the emulator gaps the VMM filled for every
    guest."""
    info = read_linux_info(machines[0].memory, machines[0].boot.layout)
    machines[0].boot_s = None  # the boot note is every guest's, not guest0's
    assists: dict[str, int] = {}
    for m in machines:
        for name, n in m.outcome.assists.items():
            assists[name] = assists.get(name, 0) + n
    each = [guest_clocks(m) for m in machines]
    notes = linux_notes(machines[0])
    spread = console_ratio_note(each)
    if spread is not None:
        notes.append(spread)
    return info, notes, assists, fleet_clocks(each)
