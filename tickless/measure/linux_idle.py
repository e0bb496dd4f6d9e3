"""Idle Linux guests: what their timers cost the host once they have booted.

A Linux guest boots for seconds here (its ring 0 is emulated), which would swamp what its
idle timers cost. So the host starts every guest, waits until each one's workload runs
(``shared.ready``), takes a snapshot of every counter, lets them idle for the run's
duration, takes another, and stops them: the rates are the difference, boot excluded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tickless.axes import TickMode
from tickless.errors import GuestStopped
from tickless.host.cputime import process_cpu_s, thread_cpu_ns
from tickless.measure.kvm import console_tail, linux_notes
from tickless.measure.machine_info import machine_facts
from tickless.results.idle import GuestIdleCounts, IdleResult, IdleSpec
from tickless.vmm.host import VmmHost
from tickless.vmm.linux_boot import read_linux_info
from tickless.vmm.machine import GuestMachine

LINUX_IDLE_UNTIL_STOPPED_NS = 24 * 3600 * 10**9  # the guest's own end: never, in practice
BOOT_TIMEOUT_S = 180.0  # every guest's workload must have started by then
END_REASON = "end of the idle run"


@dataclass(frozen=True)
class GuestSnapshot:
    timer_interrupts: int
    wakeups: int
    housekeeping_runs: int
    hypercalls: int
    exits: int
    injections: int
    vcpu_cpu_ns: int

    @classmethod
    def of(cls, m: GuestMachine) -> GuestSnapshot:
        shared = m.shared
        return cls(
            int(shared.irq_count),
            int(shared.wakeups),
            int(shared.timer_callbacks),
            m.hypercalls.calls,
            sum(m.outcome.exits.values()),
            m.context.injections,
            m.vcpu_cpu_ns(),
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
        timers = host.timers
        return cls(
            time.monotonic(),
            process_cpu_s(),
            timers.stats.wakeups,
            timers.stats.expiries,
            thread_cpu_ns(timers.native_id) if timers.native_id else 0,
            tuple(GuestSnapshot.of(m) for m in machines),
        )


def _failed(machines: list[GuestMachine]) -> GuestMachine | None:
    return next((m for m in machines if not m.running and not m.outcome.ok), None)


def _stopped(m: GuestMachine) -> GuestStopped:
    reason = f"{m.name} stopped: {m.outcome.reason}"
    return GuestStopped(reason + console_tail(m.outcome.console))


def _wait_for_boot(host: VmmHost, machines: list[GuestMachine]) -> float:
    """Seconds until every guest runs its workload; a guest that stops first is an error."""
    t0 = time.monotonic()
    while not all(int(m.shared.ready) for m in machines):
        machines[0].join(0.05)
        failed = _failed(machines)
        if failed is not None:
            raise _stopped(failed)
        if time.monotonic() - t0 > BOOT_TIMEOUT_S:
            host.stop_all(f"did not boot in {BOOT_TIMEOUT_S:g} s")
            slow = next(m for m in machines if not int(m.shared.ready))
            raise _stopped(slow)
    return time.monotonic() - t0


def run_linux_idle(
    spec: IdleSpec,
    host: VmmHost,
    machines: list[GuestMachine],
    progress: Callable[[float], None] | None = None,
) -> IdleResult:
    """Boot the Linux guests, then measure ``spec.duration_ns`` of their idling."""
    for machine in machines:
        machine.start()
    boot_s = _wait_for_boot(host, machines)
    before = HostSnapshot.of(host, machines)
    end = before.t_s + spec.duration_ns / 1e9
    while (now := time.monotonic()) < end:
        machines[0].join(min(0.1, end - now))
        if progress is not None:
            progress(min(1.0, (now - before.t_s) / (spec.duration_ns / 1e9)))
        failed = _failed(machines)
        if failed is not None:
            raise _stopped(failed)
    after = HostSnapshot.of(host, machines)
    host.stop_all(END_REASON)
    return _result(spec, host, machines, before, after, boot_s)


def _result(
    spec: IdleSpec,
    host: VmmHost,
    machines: list[GuestMachine],
    before: HostSnapshot,
    after: HostSnapshot,
    boot_s: float,
) -> IdleResult:
    per_guest = [
        GuestIdleCounts(
            name=m.name,
            timer_interrupts=a.timer_interrupts - b.timer_interrupts,
            wakeups=a.wakeups - b.wakeups,
            housekeeping_runs=a.housekeeping_runs - b.housekeeping_runs,
            hypercalls=a.hypercalls - b.hypercalls,
            exits=a.exits - b.exits,
            vcpu_cpu_s=(a.vcpu_cpu_ns - b.vcpu_cpu_ns) / 1e9,
        )
        for m, a, b in zip(machines, after.guests, before.guests, strict=True)
    ]
    info = read_linux_info(machines[0].memory, machines[0].boot.layout)
    machines[0].boot_s = None  # the boot note below is every guest's, not guest0's
    notes = [*host.timers.problems, *host.timers.callback_errors, *linux_notes(machines[0])]
    notes.append(f"boot: {boot_s:.1f} s until every guest ran its workload (not in the rates)")
    assists: dict[str, int] = {}
    for m in machines:
        for name, n in m.outcome.assists.items():
            assists[name] = assists.get(name, 0) + n
    return IdleResult(
        guests=spec.guests,
        mode=spec.mode.value,
        hz=spec.hz if spec.mode is TickMode.PERIODIC else None,
        duration_s=after.t_s - before.t_s,
        host_timer_wakeups=after.wakeups - before.wakeups,
        host_timer_expiries=after.expiries - before.expiries,
        injections=sum(
            a.injections - b.injections for a, b in zip(after.guests, before.guests, strict=True)
        ),
        timer_thread_cpu_s=(after.timer_thread_ns - before.timer_thread_ns) / 1e9,
        vcpu_cpu_s=sum(g.vcpu_cpu_s for g in per_guest),
        process_cpu_s=after.cpu_s - before.cpu_s,
        per_guest=per_guest,
        machine=machine_facts(tsc_khz=host.tsc_hz // 1000, slop_ns=spec.slop_ns),
        notes=notes,
        guest=spec.guest.value,
        guest_kernel=info.release if info else None,
        guest_clockevent=info.clockevent if info else None,
        guest_clocksource=info.clocksource if info else None,
        boot_s=boot_s,
        assists=assists,
    )
