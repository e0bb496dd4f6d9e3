"""``measure --guests N``: the same measurement in N guests at once, on one host.

Every guest runs the whole workload; the record pools their events (the distribution a
user of N guests sees), keeps one row per guest (``results/breakdown.GuestRow``) and the
host's CPU for all of them. How precision degrades as guests are added is the question.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from tickless.axes import Backend, Load, TimerPath
from tickless.errors import GuestStopped
from tickless.host.cputime import process_cpu_s
from tickless.host.load import HostCpuLoad
from tickless.measure.interrupts import apply_interrupts, guest_deadlines_ns, guest_interrupts
from tickless.measure.kvm import guest_config, host_counts, open_host, which_pit
from tickless.measure.machine_info import machine_facts
from tickless.measure.pv_report import explain_run
from tickless.measure.timeline_report import timeline_notes
from tickless.results.breakdown import GuestRow
from tickless.results.record import build_record
from tickless.results.schema import HostCounts, ResultRecord
from tickless.results.spec import MeasurementInterrupted, MeasureSpec, Progress
from tickless.results.stats import summarize, summarize_lateness
from tickless.vmm.host import VmmHost
from tickless.vmm.machine import GuestMachine

SHARED_WAKEUPS = (TimerPath.PV, TimerPath.LGUEST, TimerPath.PRECISE)  # one host loop/thread


def measure_kvm_guests(spec: MeasureSpec, progress: Progress | None = None) -> ResultRecord:
    """Boot ``spec.guests`` guests, run them together, and pool their events."""
    with contextlib.ExitStack() as stack:
        if Load.CPU in spec.loads:
            stack.enter_context(HostCpuLoad())
        host = stack.enter_context(open_host(spec))
        config = guest_config(spec)
        timeline = host.timeline(spec.rate, spec.warp_idle)  # started together: one clock
        stack.enter_context(host.ctrl_z_freezes())
        machines = [
            host.boot(config, name=f"guest{i}", timeline=timeline) for i in range(spec.guests)
        ]
        cpu0, t0 = process_cpu_s(), time.monotonic()
        loop_cpu0 = host.deadline_loop.totals().cpu_ns
        for machine in machines:
            machine.start()
        interrupted = _watch_all(spec, host, machines, progress)
        duration_s, cpu_s = time.monotonic() - t0, process_cpu_s() - cpu0
        loop_cpu_s = (host.deadline_loop.totals().cpu_ns - loop_cpu0) / 1e9
        failed = [m for m in machines if not m.outcome.ok]
        if failed and not interrupted:
            reasons = "; ".join(f"{m.name}: {m.outcome.reason}" for m in failed)
            raise GuestStopped(f"{len(failed)} of {spec.guests} guests stopped: {reasons}")
        per_guest = [_guest_result(spec, host, m, duration_s, cpu_s) for m in machines]
        interrupts = [
            guest_interrupts(spec, m, stamps)
            for m, (stamps, _, _) in zip(machines, per_guest, strict=True)
            if stamps is not None
        ]
        notes = [*host.timers.problems, *host.deadline_loop_problems()]
        timer_thread = host.timer_thread(machines[0].config)
        notes.extend(timeline_notes(timeline.totals(), spec.rate))
        if spec.timer in (TimerPath.PV, TimerPath.PRECISE):
            notes.append(
                f"the deadline loop (one C thread for all {spec.guests} guests) used "
                f"{loop_cpu_s:.3f} CPU-s, {1e3 * loop_cpu_s / spec.guests:.1f} ms per guest "
                f"({100 * loop_cpu_s / duration_s / spec.guests:.2f} % of a core each)"
            )
        notes.extend(f"{machines[0].name}: {note}" for note in per_guest[0][2])
        first = per_guest[0][0]
        pit = which_pit(machines[0])
        explain = explain_run(spec, machines[0], first) if first is not None else None
        series = [  # deadlines while the guests' memory is there (the RTC's bracket)
            (m, stamps, guest_deadlines_ns(spec, m, stamps))
            for m, (stamps, _, _) in zip(machines, per_guest, strict=True)
            if stamps is not None and len(stamps) > 1
        ]
    if not series:
        if interrupted:
            raise MeasurementInterrupted(None)
        raise GuestStopped("no timer event was recorded")
    record = _pooled_record(spec, series, [c for _, c, _ in per_guest], duration_s, cpu_s, notes)
    record.machine = machine_facts(
        tsc_khz=host.tsc_hz // 1000, guests=str(spec.guests), timer_thread=timer_thread
    )
    record.explain = explain  # guest0's events
    record.pit = pit
    apply_interrupts(record, spec, [i for i in interrupts if i is not None])
    if interrupted:
        raise MeasurementInterrupted(record)
    return record


def _watch_all(
    spec: MeasureSpec, host: VmmHost, machines: list[GuestMachine], progress: Progress | None
) -> bool:
    """Until every guest is done; a guest that stalls is stopped. True on Ctrl-C."""
    stall_s = spec.stall_timeout_s + spec.interval_ns / 1e9
    last = {m.name: (-1, time.monotonic()) for m in machines}
    try:
        while any(m.running for m in machines):
            time.sleep(0.05)
            now = time.monotonic()
            for m in machines:
                events = m.events_recorded
                seen, since = last[m.name]
                if events != seen:
                    last[m.name] = (events, now)
                    continue
                limit_s = stall_s if events else spec.boot_timeout_s  # booting: no events
                if m.running and now - since > limit_s:
                    m.request_stop(f"guest made no progress for {now - since:.0f} s")
            if progress is not None:
                progress(min(m.events_recorded for m in machines))
    except KeyboardInterrupt:
        for m in machines:
            m.request_stop("interrupted (Ctrl-C)")
        for m in machines:
            m.join(5)
        return True
    for m in machines:
        m.join(5)
    return False


def _guest_result(
    spec: MeasureSpec, host: VmmHost, machine: GuestMachine, duration_s: float, cpu_s: float
) -> tuple[np.ndarray | None, HostCounts, list[str]]:
    events = machine.outcome.events if machine.outcome.ok else machine.events_recorded
    notes: list[str] = []
    counts = host_counts(spec, host, machine, duration_s, cpu_s, notes)
    return (machine.timestamps_ns(events) if events else None), counts, notes


def _pooled_record(
    spec: MeasureSpec,
    series: list[tuple[GuestMachine, np.ndarray, np.ndarray]],
    counts: list[HostCounts],
    duration_s: float,
    cpu_s: float,
    notes: list[str],
) -> ResultRecord:
    rows, intervals, lateness = [], [], []
    for machine, stamps, deadlines in series:
        one = build_record(spec, Backend.KVM, stamps, counts[0], {}, [], deadlines)
        rows.append(
            GuestRow(
                name=machine.name,
                events=len(stamps) - 1,
                mean_ns=one.stats.mean_ns,
                sd_ns=one.stats.sd_ns,
                lateness_mean_ns=one.lateness.mean_ns,
                lateness_p99_ns=one.lateness.p99_ns,
                lateness_max_ns=one.lateness.max_ns,
                early_count=one.lateness.early_count,
                vcpu_cpu_s=machine.outcome.vcpu_cpu_ns / 1e9,
            )
        )
        i, late = np.diff(stamps), stamps[1:] - deadlines
        intervals.append(i)
        lateness.append(late)
    all_intervals, all_lateness = np.concatenate(intervals), np.concatenate(lateness)
    shared = spec.timer in SHARED_WAKEUPS
    host = HostCounts(
        exits=sum(c.exits for c in counts),
        hypercalls=sum(c.hypercalls for c in counts),
        injections=sum(c.injections for c in counts),
        wakeups=max(c.wakeups for c in counts) if shared else sum(c.wakeups for c in counts),
        timer_events=sum(c.timer_events for c in counts),
        duration_s=duration_s,
        cpu_s=cpu_s,
    )
    means = [row.lateness_mean_ns / 1e3 for row in rows]
    core_pct = 100 * cpu_s / duration_s if duration_s else 0.0
    notes.insert(
        0,
        f"{spec.guests} guests: lateness mean per guest {min(means):.1f}-{max(means):.1f} us; "
        f"host CPU {core_pct:.1f} % of a core in total, {core_pct / spec.guests:.2f} % per guest",
    )
    record = build_record(spec, Backend.KVM, series[0][1], host, {}, notes, series[0][2])
    record.stats = summarize(all_intervals)
    record.lateness = summarize_lateness(all_lateness)
    record.intervals_ns = all_intervals.tolist()
    record.lateness_ns = all_lateness.tolist()
    record.guest_rows = rows
    return record
