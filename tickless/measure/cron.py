"""Cron guests on KVM: a group on one timeline, each living by its schedule of timers
(``results/cron.py`` says what the run checks)."""

from __future__ import annotations

import time
from collections.abc import Callable

from tickless.devices.config import GuestConfig
from tickless.devices.results import ResultsDevice
from tickless.guest.abi import Scenario
from tickless.host.cputime import process_cpu_s
from tickless.host.realtime import RealtimePolicy
from tickless.measure.idle_fleet import failed, run_to_end, stopped
from tickless.measure.timeline_report import timeline_notes
from tickless.results.cron import (
    CronRecord,
    CronSpec,
    checked_wakes,
    merge_events,
    seconds,
    summarize,
)
from tickless.vmm.host import VmmHost

BOOT_ALLOWANCE_S = 0.5  # wall time the group's small guests get to boot before the origin

Progress = Callable[[float], None]  # the fraction of the run's guest time done


def run_cron(spec: CronSpec, progress: Progress | None = None) -> CronRecord:
    """Boot ``spec.guests`` cron guests on one timeline and run them to the end of their
    schedules; Ctrl-C keeps what they recorded (``partial``)."""
    with VmmHost(0, RealtimePolicy()) as host, host.ctrl_z_freezes():
        timeline = host.timeline(spec.rate, spec.warp_idle)
        # One origin for all: a little after now, in guest time (they boot meanwhile).
        origin_ns = timeline.now_ns() + int(BOOT_ALLOWANCE_S * spec.rate * 1e9)
        machines = [
            host.boot(_config(spec, schedule, origin_ns), f"cron{g}", timeline=timeline)
            for g, schedule in enumerate(spec.schedules())
        ]
        wake0, cpu0, t0 = host.timer_totals()[0], process_cpu_s(), time.monotonic()
        for machine in machines:
            machine.start()
        partial = run_to_end(machines, origin_ns, spec.duration_ns, progress)
        host.stop_all("end of the cron run")
        bad = failed(machines)
        if bad is not None and not partial:
            raise stopped(bad)
        totals = timeline.totals()
        record = CronRecord(
            periods_ns=list(spec.periods_ns),
            guests=spec.guests,
            duration_s=seconds(spec.duration_ns),
            dilation=str(spec.rate),
            warp_idle=spec.warp_idle,
            seed=spec.seed,
            timer=spec.timer.value,
            origin_ns=origin_ns,
            resolution_ns=spec.resolution_ns,
            guest_time_s=seconds(totals.guest_ns),
            wall_time_s=time.monotonic() - t0,
            warped_s=seconds(totals.warped_ns),
            warps=totals.warps,
            host_wakeups=host.timer_totals()[0] - wake0,
            host_cpu_s=process_cpu_s() - cpu0,
            partial=partial,
            notes=timeline_notes(totals, spec.rate),
        )
        runs, wakes, spin_ns = [], [], 0
        for m in machines:
            record.runs += int(m.shared.timer_callbacks)
            record.blocks += int(m.shared.blocks)
            device = m.device(ResultsDevice)
            assert device is not None
            recorded = int(m.shared.events_recorded)
            runs.append(device.cron_runs(recorded))
            wakes.append(checked_wakes(runs[-1][0], device.cron_wakes(recorded)))
            spin_ns += min(int(m.shared.spin_ns), spec.duration_ns + origin_ns)  # untrusted
    summarize(record, merge_events(runs, wakes))
    record.spin_cpu_s = spin_ns / 1e9 / float(spec.rate)
    if len(record.events) < record.runs:
        record.notes.append(f"{record.runs - len(record.events)} runs counted, not recorded")
    return record


def _config(spec: CronSpec, schedule: tuple[tuple[int, int], ...], origin_ns: int) -> GuestConfig:
    return GuestConfig.from_spec(
        spec,
        scenario=Scenario.CRON,
        cron=schedule,
        cron_origin_ns=origin_ns,
        count=spec.expected_runs_per_guest + 1,
    )
