"""Idle guests, ticking or tickless: what their timers cost the host.

Ten guests at 1000 HZ make the host take 10,000 timer wake-ups a second for nothing; the
same guests tickless ask only for their own sparse timers (here a 1 s and a 4 s
housekeeping timer, so tickless idle is not trivially zero).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tickless.axes import GuestKind, TickMode
from tickless.errors import GuestStopped
from tickless.guest.abi import Scenario
from tickless.host.cputime import process_cpu_s, thread_cpu_ns
from tickless.host.realtime import RealtimePolicy
from tickless.measure.linux_idle import LINUX_IDLE_UNTIL_STOPPED_NS, run_linux_idle
from tickless.measure.machine_info import machine_facts
from tickless.results.idle import GuestIdleCounts, IdleResult, IdleSpec
from tickless.vmm.config import GuestConfig
from tickless.vmm.host import VmmHost
from tickless.vmm.machine import GuestMachine


def run_idle(spec: IdleSpec, progress: Callable[[float], None] | None = None) -> IdleResult:
    """Boot ``spec.guests`` idle guests at once, let them idle, count what the host did."""
    policy = RealtimePolicy() if spec.realtime else RealtimePolicy(fifo_priority=None)
    linux = spec.guest is GuestKind.LINUX
    config = GuestConfig(
        guest=spec.guest,
        kernel_path=spec.kernel_path,
        scenario=Scenario.IDLE,
        mode=spec.mode,
        hz=spec.hz,
        # A Linux guest idles until the host ends the run (after its boot, see below).
        duration_ns=LINUX_IDLE_UNTIL_STOPPED_NS if linux else spec.duration_ns,
        housekeeping_ns=spec.housekeeping_ns,
        halt_poll_ns=spec.halt_poll_ns,
    )
    with VmmHost(spec.slop_ns, policy) as host:
        machines = [host.boot(config, f"guest{i}") for i in range(spec.guests)]
        if linux:
            return run_linux_idle(spec, host, machines, progress)
        timers = host.timers
        wake0, exp0 = timers.stats.wakeups, timers.stats.expiries
        thread_cpu0 = thread_cpu_ns(timers.native_id) if timers.native_id else 0
        cpu0, t0 = process_cpu_s(), time.monotonic()
        for machine in machines:
            machine.start()
        deadline = t0 + spec.duration_ns / 1e9 + 10.0
        while any(m.running for m in machines):
            machines[0].join(0.1)
            now = time.monotonic()
            if progress is not None:
                progress(min(1.0, (now - t0) / (spec.duration_ns / 1e9)))
            if now > deadline:
                host.stop_all("idle guests did not finish in time")
        duration_s = time.monotonic() - t0
        cpu_s = process_cpu_s() - cpu0
        thread_cpu_s = (
            (thread_cpu_ns(timers.native_id) - thread_cpu0) / 1e9 if timers.native_id else 0.0
        )
        failed = [m for m in machines if not m.outcome.ok]
        if failed:
            raise GuestStopped(f"{failed[0].name} stopped: {failed[0].outcome.reason}")
        per_guest = [_guest_counts(m) for m in machines]
        return IdleResult(
            guests=spec.guests,
            mode=spec.mode.value,
            hz=spec.hz if spec.mode is TickMode.PERIODIC else None,
            duration_s=duration_s,
            host_timer_wakeups=timers.stats.wakeups - wake0,
            host_timer_expiries=timers.stats.expiries - exp0,
            injections=sum(m.outcome.injections for m in machines),
            timer_thread_cpu_s=thread_cpu_s,
            vcpu_cpu_s=sum(g.vcpu_cpu_s for g in per_guest),
            process_cpu_s=cpu_s,
            per_guest=per_guest,
            machine=machine_facts(tsc_khz=host.tsc_hz // 1000, slop_ns=spec.slop_ns),
            notes=list(timers.problems) + list(timers.callback_errors),
        )


def _guest_counts(machine: GuestMachine) -> GuestIdleCounts:
    """What one idle guest did, from its shared page and its run's outcome."""
    shared, outcome = machine.shared, machine.outcome
    return GuestIdleCounts(
        name=machine.name,
        timer_interrupts=int(shared.irq_count),
        wakeups=int(shared.wakeups),
        housekeeping_runs=int(shared.timer_callbacks),
        hypercalls=outcome.hypercalls,
        exits=sum(outcome.exits.values()),
        vcpu_cpu_s=outcome.vcpu_cpu_ns / 1e9,
    )
