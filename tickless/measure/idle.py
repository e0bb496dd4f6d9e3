"""Idle guests, ticking or tickless: what their timers cost the host.

Ten guests at 1000 HZ make the host take 10,000 timer wake-ups a second for nothing; the
same guests tickless ask only for their own sparse timers (here a 1 s and a 4 s
housekeeping timer, each guest at its own phase, so tickless idle is not trivially zero
and guests do not fire in step). A thousand of them run from one command: the host's
limits are checked first (``fleet_limits``), the guests boot (``idle_fleet``), and the
rates are measured over a window that starts once every guest has booted.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tickless.axes import GuestKind, TickMode, TimerPath
from tickless.devices.config import GuestConfig
from tickless.devices.results import ResultsDevice
from tickless.guest.abi import Scenario
from tickless.host.hostcpu import HostCpuSnapshot, HostCpuWindow, host_cpu_window
from tickless.host.realtime import RealtimePolicy
from tickless.measure.fleet_limits import (
    HostLimits,
    check_fleet,
    memory_available_mib,
    raise_fd_limit,
)
from tickless.measure.idle_fleet import (
    BootCost,
    Progress,
    boot_fleet,
    failed,
    rss_mib,
    run_to_end,
    stopped,
)
from tickless.measure.linux_idle import (
    BOOT_TIMEOUT_S,
    LINUX_IDLE_UNTIL_STOPPED_NS,
    GuestSnapshot,
    HostSnapshot,
    linux_extras,
)
from tickless.measure.machine_info import machine_facts
from tickless.results.idle import (
    GuestIdleCounts,
    IdleResult,
    IdleSpec,
    RampStep,
    time_fields,
)
from tickless.vmm.host import VmmHost
from tickless.vmm.linux_boot import LinuxGuestInfo
from tickless.vmm.machine import GuestMachine

END_REASON = "end of the idle run"
SMALL_BOOT_TIMEOUT_S = 30.0  # plus 50 ms a guest: a small guest boots in milliseconds
PROGRESS_PERIOD_S = 1.0  # the window's progress reports (a stopped guest ends it at once)
MAX_RECORDED_RUNS = 100_000


def guest_config(spec: IdleSpec, phase_ns: int = 0) -> GuestConfig:
    """One guest of ``spec``: it idles until the host ends the run, after the window; under
    ``--warp-idle`` for the run's duration in guest time, then it stops by itself (a
    warped fleet outruns any host poll). Small guests record their timer runs."""
    small = spec.guest is GuestKind.SMALL
    return GuestConfig.from_spec(
        spec,
        scenario=Scenario.IDLE,
        timer=spec.timer or TimerPath.LGUEST,  # IdleSpec resolved it (pv or lguest)
        duration_ns=spec.duration_ns if spec.warp_idle else LINUX_IDLE_UNTIL_STOPPED_NS,
        housekeeping_phase_ns=phase_ns,
        count=_runs_capacity(spec) if small else 0,
    )


def _runs_capacity(spec: IdleSpec) -> int:
    """Timer runs a small guest records: its window's, with room for the boot (runs beyond
    are counted, not recorded)."""
    guest_s = spec.duration_ns / 1e9 * (1 if spec.warp_idle else float(spec.rate)) + 2
    per_s = sum(1e9 / p for p in spec.housekeeping_ns)
    return min(MAX_RECORDED_RUNS, int(guest_s * per_s * 1.2) + 16)


def check_host(spec: IdleSpec) -> int:
    """Refuse (InputError, one line) a fleet this host cannot hold; returns the file
    descriptors it needs. Touches no KVM: the CLI calls it before anything runs."""
    ram = guest_config(spec).memory_bytes
    return check_fleet(spec.guests, ram, HostLimits.now(), spec.guest.value)


def run_idle(
    spec: IdleSpec,
    progress: Progress | None = None,
    before_window: Callable[[], None] | None = None,
    whole_host: bool = True,
) -> IdleResult:
    """Boot ``spec.guests`` idle guests, measure ``spec.duration_ns`` once all have booted.
    Ctrl-C in the window returns what was measured so far (``partial``).
    ``before_window``: called once every guest has booted, before the window starts (a
    fleet over several processes waits there until every process has booted).
    ``whole_host``: also measure the host's other tasks over the window (such a fleet's
    processes leave that to their coordinator: to each, the others are other tasks)."""
    raise_fd_limit(check_host(spec))
    policy = RealtimePolicy() if spec.realtime else RealtimePolicy(fifo_priority=None)
    rng = np.random.default_rng(spec.seed)
    longest = max(spec.housekeeping_ns)
    configs = [guest_config(spec, int(p)) for p in rng.integers(0, longest, spec.guests)]
    linux = spec.guest is GuestKind.LINUX
    timeout_s = (
        BOOT_TIMEOUT_S + 10.0 * spec.guests if linux else SMALL_BOOT_TIMEOUT_S + 0.05 * spec.guests
    )
    periodic = spec.hz if spec.mode is TickMode.PERIODIC else None
    with VmmHost(spec.slop_ns, policy) as host, host.ctrl_z_freezes():
        timeline = host.timeline(spec.rate, spec.warp_idle)  # the fleet is one group
        booting = timeline.join("booting")  # never blocks: no warp before all have booted
        rss0, avail0 = rss_mib(), memory_available_mib()
        machines, cost, ramp, saturated = boot_fleet(
            host, configs, spec.step, periodic, spec.miss_threshold, timeout_s, progress, timeline
        )
        timeline.leave(booting)
        rss1, avail1 = rss_mib(), memory_available_mib()
        if before_window is not None:
            before_window()
        host_cpu0 = HostCpuSnapshot.take({os.getpid()}) if whole_host else None
        before = HostSnapshot.of(host, machines)
        time0 = timeline.totals()
        if spec.warp_idle:  # the guests end by themselves, after duration in guest time
            report = None if progress is None else lambda f: progress("measuring", f)
            partial = run_to_end(machines, time0.guest_ns, spec.duration_ns, report)
        else:
            partial = _idle_window(spec, machines, before.t_s, progress, host.guest_stopped)
        after = HostSnapshot.of(host, machines)
        time1 = timeline.totals()
        host_cpu = None
        if host_cpu0 is not None:
            host_cpu = host_cpu_window(host_cpu0, HostCpuSnapshot.take({os.getpid()}))
        host.stop_all(END_REASON)
        result = _result(spec, host, machines, before, after, cost)
        if spec.warp_idle:  # warps begin as soon as the last guest blocks, before the
            # host sees it booted: count from the guests' own start, wall from the boot
            start_ns = min(_start_ns(m) for m in machines)
            times = time_fields(
                rate=spec.rate,
                guest_time_s=(time1.guest_ns - start_ns) / 1e9,
                wall_time_s=time1.wall_ns / 1e9,
                warped_s=time1.warped_ns / 1e9,
            )
        else:
            times = time_fields(
                rate=spec.rate,
                guest_time_s=(time1.guest_ns - time0.guest_ns) / 1e9,
                wall_time_s=after.t_s - before.t_s,
                warped_s=(time1.warped_ns - time0.warped_ns) / 1e9,
            )
        result = dataclasses.replace(
            result, **times, **_timer_runs(spec, machines), **host_cpu_fields(host_cpu)
        )
    n = len(machines)
    return dataclasses.replace(
        result,
        rss_mib=rss1,
        rss_per_guest_mib=(rss1 - rss0) / n,
        host_mem_per_guest_mib=(avail0 - avail1) / n,
        ramp=ramp,
        saturation_guests=_saturation(spec, result, saturated),
        partial=partial,
        notes=result.notes + _notes(spec, n, partial, after.t_s - before.t_s),
    )


def _idle_window(
    spec: IdleSpec,
    machines: list[GuestMachine],
    t0: float,
    progress: Progress | None,
    guest_stopped: threading.Event,
) -> bool:
    """Let the fleet idle for the run's duration (guest time: duration / rate of wall
    time); True when Ctrl-C cut it short. It sleeps until a guest stops (then looks at
    them all) or a progress report is due: polling a thousand guests four times a second
    cost half a percent of a core."""
    end = t0 + spec.duration_ns / 1e9 / float(spec.rate)
    try:
        while (now := time.monotonic()) < end:
            if guest_stopped.wait(min(PROGRESS_PERIOD_S, end - now)):
                guest_stopped.clear()
                bad = failed(machines)
                if bad is not None:
                    raise stopped(bad)
            if progress is not None:
                progress("measuring", min(1.0, (time.monotonic() - t0) / (end - t0)))
    except KeyboardInterrupt:
        return True
    return False


def host_cpu_fields(window: HostCpuWindow | None) -> dict[str, Any]:
    """The record's whole-host fields from a ``HostCpuWindow`` (None: not measured)."""
    if window is None:
        return {}
    return {
        "host_busy_percent_of_core": window.busy_percent_of_core,
        "other_tasks_percent_of_core": window.other_tasks_percent_of_core,
        "other_tasks_top": window.other_tasks_top,
    }


def _start_ns(machine: GuestMachine) -> int:
    """Guest time at which its workload started (its record's reference timestamp)."""
    return int(machine.timestamps_ns(0)[0])


def _timer_runs(spec: IdleSpec, machines: list[GuestMachine]) -> dict[str, Any]:
    """Small guests: each housekeeping timer's runs over the fleet, and how many came
    before their deadline in guest time (they must not)."""
    if spec.guest is not GuestKind.SMALL:
        return {}
    runs = [0] * len(spec.housekeeping_ns)
    early = 0
    for m in machines:
        device = m.device(ResultsDevice)
        if device is None:
            continue
        ran, deadline, timer = device.cron_runs(int(m.shared.events_recorded))
        early += int(np.count_nonzero(ran < deadline))
        for index, count in zip(*np.unique(timer, return_counts=True), strict=True):
            runs[int(index)] += int(count)
    return {"timer_runs": runs, "early_timer_runs": early}


def _saturation(spec: IdleSpec, result: IdleResult, ramp_found: int | None) -> int | None:
    """Where ticks start to be missed: the ramp's step, else the whole fleet if its own
    window missed too many, else None (the host kept up)."""
    if ramp_found is not None or spec.mode is not TickMode.PERIODIC:
        return ramp_found
    d = result.to_json_dict()
    missed = d["ticks_missed_fraction"]
    return result.guests if missed is not None and missed > spec.miss_threshold else None


IDLE_NOTES = {  # --pv-idle: what each way of waiting is, for the record
    "halt": "idle: halt (each wait halts until the deadline loop's interrupt)",
    "block": "idle: block (PV idle: each wait blocks in the host until its deadline, resumed "
    "without an interrupt)",
    "lapic": "idle: lapic (each wait halts with KVM's LAPIC timer armed for its deadline in "
    "the same trap: the host kernel's timer wakes it, no host thread)",
}


def _notes(spec: IdleSpec, booted: int, partial: bool, window_s: float) -> list[str]:
    notes = []
    if spec.timer is TimerPath.PV:
        notes.append(IDLE_NOTES[spec.pv_idle or "halt"])
    if booted < spec.guests:
        notes.append(
            f"ramp stopped at {booted:,} of {spec.guests:,} guests: ticks were missed "
            f"beyond {100 * spec.miss_threshold:g} % (the host saturated)"
        )
    if partial:
        notes.append(
            f"interrupted: measured {window_s:.2f} s of {spec.duration_ns / 1e9:g} s; "
            "rates are over the measured part"
        )
    return notes


def _counts(m: GuestMachine, a: GuestSnapshot, b: GuestSnapshot) -> GuestIdleCounts:
    return GuestIdleCounts(
        name=m.name,
        timer_interrupts=a.timer_interrupts - b.timer_interrupts,
        wakeups=a.wakeups - b.wakeups,
        housekeeping_runs=a.housekeeping_runs - b.housekeeping_runs,
        hypercalls=a.hypercalls - b.hypercalls,
        exits=a.exits - b.exits,
        vcpu_cpu_s=(a.vcpu_cpu_ns - b.vcpu_cpu_ns) / 1e9,
    )


def _spin_s(a: GuestSnapshot, b: GuestSnapshot) -> float:
    """A guest's own count of its spin in the window, clamped to its thread's CPU."""
    return min(max(0, a.spin_ns - b.spin_ns), max(0, a.vcpu_cpu_ns - b.vcpu_cpu_ns)) / 1e9


def _result(
    spec: IdleSpec,
    host: VmmHost,
    machines: list[GuestMachine],
    before: HostSnapshot,
    after: HostSnapshot,
    cost: BootCost,
) -> IdleResult:
    """The window's counts (after - before) as an idle record."""
    pairs = list(zip(after.guests, before.guests, strict=True))
    per_guest = [_counts(m, a, b) for m, (a, b) in zip(machines, pairs, strict=True)]
    duration_s = after.t_s - before.t_s
    notes = [*host.timers.problems, *host.timers.callback_errors]
    clocks: dict[str, Any] = {}
    info: LinuxGuestInfo | None = None
    assists: dict[str, int] = {}
    if spec.guest is GuestKind.LINUX:
        info, linux_notes, assists, guest = linux_extras(machines)
        notes += linux_notes
        clocks = guest.fields()
    periodic = spec.mode is TickMode.PERIODIC
    return IdleResult(
        guests=len(machines),
        mode=spec.mode.value,
        hz=spec.hz if periodic else None,
        duration_s=duration_s,
        host_timer_wakeups=after.wakeups - before.wakeups,
        host_timer_expiries=after.expiries - before.expiries,
        injections=sum(a.injections - b.injections for a, b in pairs),
        timer_thread_cpu_s=(after.timer_thread_ns - before.timer_thread_ns) / 1e9,
        vcpu_cpu_s=sum(g.vcpu_cpu_s for g in per_guest),
        guest_spin_s=sum(_spin_s(a, b) for a, b in pairs),
        process_cpu_s=after.cpu_s - before.cpu_s,
        per_guest=per_guest,
        machine=machine_facts(
            tsc_khz=host.tsc_hz // 1000, slop_ns=spec.slop_ns, timer=spec.timer or ""
        ),
        notes=notes,
        guest=spec.guest.value,
        guest_kernel=info.release if info else None,
        guest_clockevent=info.clockevent if info else None,
        guest_clocksource=info.clocksource if info else None,
        boot_s=cost.boot_s,
        assists=assists,
        guests_requested=spec.guests,
        slop_ns=spec.slop_ns,
        boot_cpu_s=cost.cpu_s,
        ticks_expected=len(machines) * spec.hz * duration_s if periodic else None,
        miss_threshold=spec.miss_threshold if periodic else None,
        **clocks,
    )


__all__ = ["RampStep", "check_host", "guest_config", "run_idle"]
