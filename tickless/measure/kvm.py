"""The KVM backend: one measurement in a real guest, on a chosen timer path.

N timer events every d; the measured interval is the time between consecutive events
(relative method: each event arms the next d after itself, so the mean is d plus the
delivery latency). Paths: ``pv`` (our PV deadline device: absolute deadlines, exitless
re-arming, adaptive advance), ``lguest`` (lguest's relative clock-event device), ``lapic``
(KVM's in-kernel LAPIC timer in TSC-deadline mode: the paper's "KVM" row) and ``precise``
(the dedicated precise channel). ``host`` runs no guest: see ``tickless.measure.host``.
Several guests at once: ``measure/kvm_guests.py``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from tickless.atomicfile import write_bytes_atomic
from tickless.axes import ZOO_TIMERS, Advance, Backend, GuestKind, IoCpu, Load, TimerPath
from tickless.devices.config import GuestConfig
from tickless.devices.hpet import HpetDevice
from tickless.devices.legacy_ports import LegacyPortsDevice
from tickless.devices.pit import PitDevice
from tickless.devices.rtc import RtcDevice
from tickless.errors import GuestStopped
from tickless.guest.abi import Scenario
from tickless.host.cputime import process_cpu_s
from tickless.host.load import HostCpuLoad
from tickless.host.realtime import RealtimePolicy
from tickless.host.timer_thread import HostTimerThread
from tickless.measure.interrupts import apply_interrupts, guest_deadlines_ns, guest_interrupts
from tickless.measure.io_report import io_counts, io_notes, precise_late_causes
from tickless.measure.linux_clocks import guest_clocks, stock_tsc_note
from tickless.measure.machine_info import machine_facts
from tickless.measure.pv_report import console_exits, explain_run, linux_pv_note, pv_counts
from tickless.measure.timeline_report import timeline_notes
from tickless.measure.zoo_counts import zoo_counts
from tickless.results.record import build_record
from tickless.results.schema import HostCounts, ResultRecord
from tickless.results.spec import MeasurementInterrupted, MeasureSpec, Progress
from tickless.vmm.host import VmmHost
from tickless.vmm.linux_boot import LinuxBoot, read_linux_info
from tickless.vmm.machine import GuestMachine
from tickless.vmm.watchdog import DEFAULT_BOUND_S

__all__ = ["measure_kvm", "realtime_policy", "watch", "which_pit"]


def realtime_policy(spec: MeasureSpec) -> RealtimePolicy:
    """SCHED_FIFO for the host timer thread unless the spec asked for --no-rt."""
    if spec.realtime:
        return RealtimePolicy()
    return RealtimePolicy(fifo_priority=None, hold_cpu_dma_latency=False)


def guest_config(spec: MeasureSpec) -> GuestConfig:
    precise = spec.timer is TimerPath.PRECISE
    same_cpu = spec.io_cpu is IoCpu.SAME
    return GuestConfig.from_spec(
        spec,
        scenario=Scenario.MEASURE,
        # A guest spinning to a far deadline shows no progress until it: not a runaway.
        watchdog_s=max(DEFAULT_BOUND_S, 3 * spec.interval_ns / 1e9),
        io_rate_per_s=spec.io_rate_per_s if Load.IO in spec.loads else 0.0,
        # A hold-back protects the precise vCPU from the I/O interrupts it takes: none when
        # they go to the other vCPU.
        hold_back_ns=(spec.hold_back_ns or 0) if precise and same_cpu else 0,
        hold_back_cost=precise and same_cpu and spec.hold_back_ns is None,
        second_vcpu_busy=Load.CPU in spec.loads,
        vcpu_policy=VCPU_PRECISE_POLICY if precise else None,
        # vCPU 1 beside the loop, off the precise vCPU's CPU, at a real-time priority below
        # every host timer thread's: the housekeeping CPU takes the interrupts (isolcpus=)
        ap_policy=AP_PRECISE_POLICY if precise and not same_cpu else None,
    )


# The precise channel pins its vCPU and its host timer thread to different CPUs, as the
# paper pinned the timer's VCPU to a physical CPU of its own.
VCPU_PRECISE_POLICY = RealtimePolicy(fifo_priority=80, cpu=1)
PRECISE_TIMER_POLICY = RealtimePolicy(fifo_priority=95, cpu=0)
OTHER_TIMERS_WITH_PRECISE = RealtimePolicy(fifo_priority=90, cpu=0)  # off the vCPU's CPU
AP_PRECISE_POLICY = RealtimePolicy(fifo_priority=50, cpu=0, hold_cpu_dma_latency=False)


@dataclass
class Watched:
    """When the guest's workload started (``shared.ready``): wall and VMM CPU seconds."""

    ready_at_s: float | None = None
    ready_cpu_s: float | None = None


def watch(
    machine: GuestMachine,
    host: VmmHost,
    stall_timeout_s: float,
    progress: Progress | None,
    boot_timeout_s: float = 120.0,
) -> Watched:
    """Wait for the guest, reporting progress; stop it if it does not reach its workload in
    ``boot_timeout_s``, stalls after that, or the host fails. Notes when the workload began
    (a Linux guest boots for seconds first: its rates count from then)."""
    watched = Watched()
    start = last_change = time.monotonic()
    last_events = -1
    while machine.running:
        machine.join(0.1 if watched.ready_at_s is not None else 0.01)
        now = time.monotonic()
        if watched.ready_at_s is None:
            if int(machine.shared.ready):
                watched.ready_at_s, watched.ready_cpu_s = now, process_cpu_s()
                machine.ready_exits = machine.exit_count
                machine.ready_kicks = int(machine.shared.pv_kicks)
                machine.ready_console_exits = console_exits(machine)
                last_change = now
            elif now - start > boot_timeout_s:
                machine.request_stop(f"guest did not start its workload in {boot_timeout_s:g} s")
            continue
        events = machine.events_recorded
        if progress is not None:
            progress(events)
        if events != last_events:
            last_events, last_change = events, now
        elif now - last_change > stall_timeout_s:
            machine.request_stop(f"guest made no progress for {stall_timeout_s:g} s")
        if host.timers.error is not None:
            machine.request_stop(f"host timer thread failed: {host.timers.error!r}")
    machine.join(5)
    return watched


def open_host(spec: MeasureSpec) -> VmmHost:
    """The host for ``spec``: the precise channel's loop pinned at the top RT priority."""
    if spec.timer is TimerPath.PRECISE:
        return VmmHost(
            spec.slop_ns, OTHER_TIMERS_WITH_PRECISE, deadline_policy=PRECISE_TIMER_POLICY
        )
    return VmmHost(spec.slop_ns, realtime_policy(spec))


def measure_kvm(spec: MeasureSpec, progress: Progress | None = None) -> ResultRecord:
    """Boot a guest for ``spec``, watch it run, and build its record from its timestamps."""
    with contextlib.ExitStack() as stack:
        cpu_load = stack.enter_context(HostCpuLoad()) if Load.CPU in spec.loads else None
        host = stack.enter_context(open_host(spec))
        stack.enter_context(host.ctrl_z_freezes())
        machine = host.boot(guest_config(spec))
        duration_s, cpu_s, interrupted = _run_guest(spec, host, machine, progress)
        events = machine.outcome.events if machine.outcome.ok else machine.events_recorded
        notes = [*host.timers.problems, *host.timers.callback_errors, *machine.vcpu_problems]
        notes.extend(host.deadline_loop_problems())
        if host.watchdog is not None:
            notes.extend(f"watchdog failed: {e}" for e in host.watchdog.errors)
        counts = host_counts(spec, host, machine, duration_s, cpu_s, notes)
        notes.extend(_guest_notes(spec, machine, duration_s))
        notes.extend(timeline_notes(machine.timeline.totals(), spec.rate))
        if interrupted:
            notes.append(f"interrupted after {events} of {spec.count} events")
        facts = machine_facts(
            tsc_khz=host.tsc_hz // 1000,
            timer_thread=host.timer_thread(machine.config),
            guest_wait="block (--warp-idle: BLOCK hypercall)" if spec.warp_idle else spec.wait,
            dilation=str(spec.rate),
            slop_ns=spec.slop_ns,
        )
        timestamps = machine.timestamps_ns(events) if events else None
        explain = explain_run(spec, machine, timestamps) if timestamps is not None else None
        late = precise_late_causes(spec, machine, timestamps) if timestamps is not None else None
        io = io_counts(spec, machine)
        if io is not None:
            notes.extend(io_notes(spec, io))
        interrupts = guest_interrupts(spec, machine, timestamps) if timestamps is not None else None
        deadlines = (
            guest_deadlines_ns(spec, machine, timestamps) if timestamps is not None else None
        )
        linux = read_linux_info(machine.memory, machine.boot.layout)
        clocks = guest_clocks(machine) if spec.guest is GuestKind.LINUX else None
        notes.extend(linux_notes(machine))
        assists = dict(machine.outcome.assists)
        pit = which_pit(machine)  # before the machine closes (its devices go with it)
    if cpu_load is not None and cpu_load.report is not None:
        r = cpu_load.report
        notes.append(
            f"cpu load: stress-ng --cpu {r.workers} used {r.cpu_s:.2f} CPU-s in {r.wall_s:.2f} s "
            f"({r.cores_busy:.2f} cores busy)"
        )
    if timestamps is None:
        if interrupted:
            raise MeasurementInterrupted(None)
        raise GuestStopped("no timer event was recorded")
    record = build_record(spec, Backend.KVM, timestamps, counts, facts, notes, deadlines)
    record.assists = assists
    record.explain = explain
    record.pit = pit
    record.late_causes = late
    record.io = io
    apply_interrupts(record, spec, [interrupts] if interrupts is not None else [])
    if linux is not None:
        record.guest_kernel = linux.release
        record.guest_clockevent = linux.clockevent
        record.guest_clocksource = linux.clocksource
        record.guest_realtime_at_boot = linux.realtime_at_boot_ns
    if clocks is not None:
        record.clock_agreement_ppm = clocks.clock_agreement_ppm
        record.clocksource_unstable = clocks.clocksource_unstable
        record.console_time_ratio = clocks.console_time_ratio
    if interrupted:
        raise MeasurementInterrupted(record)
    return record


def _run_guest(
    spec: MeasureSpec, host: VmmHost, machine: GuestMachine, progress: Progress | None
) -> tuple[float, float, bool]:
    """Run the guest to its end (or Ctrl-C); (wall s, VMM CPU s, interrupted). A guest that
    stopped on its own without finishing is the user's problem to see: GuestStopped."""
    cpu0, t0 = process_cpu_s(), time.monotonic()
    machine.start()
    interrupted = False
    watched = Watched()
    try:
        stall_s = spec.stall_timeout_s + spec.interval_ns / 1e9
        watched = watch(machine, host, stall_s, progress, spec.boot_timeout_s)
    except KeyboardInterrupt:
        interrupted = True
        machine.request_stop("interrupted (Ctrl-C)")
        machine.join(5)
    if watched.ready_at_s is not None:
        machine.boot_s = watched.ready_at_s - t0
    if spec.guest is GuestKind.LINUX and watched.ready_at_s is not None:
        t0, cpu0 = watched.ready_at_s, watched.ready_cpu_s or cpu0  # its boot is not the timer's
    duration_s, cpu_s = time.monotonic() - t0, process_cpu_s() - cpu0
    outcome = machine.outcome
    if spec.console_path is not None:
        save_console(spec.console_path, outcome.console)
    if not outcome.ok and not interrupted:
        raise GuestStopped(f"guest stopped: {outcome.reason}{console_tail(outcome.console)}")
    return duration_s, cpu_s, interrupted


def save_console(path: Path, text: str) -> None:
    """Keep the guest's console (atomically: a failed write leaves the old file)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def console_tail(console: str, lines: int = 15) -> str:
    """The guest's last words, for a failure message (the whole of it: --console FILE)."""
    tail = console.strip().splitlines()[-lines:]
    return "; guest console (last lines):\n" + "\n".join(tail) if tail else ""


def _guest_notes(spec: MeasureSpec, machine: GuestMachine, duration_s: float) -> list[str]:
    """What vCPU 1 did: the busy loop of the CPU load, or the I/O interrupts it took."""
    notes = []
    if machine.ap is not None:
        machine.join(5)
        if machine.config.second_vcpu_busy:
            ap_cpu_s = machine.ap_cpu_ns / 1e9
            notes.append(f"cpu load: guest vCPU 1 busy for {ap_cpu_s:.2f} CPU-s")
        if machine.ap_error:
            notes.append(machine.ap_error)
    return notes


def host_counts(
    spec: MeasureSpec,
    host: VmmHost,
    machine: GuestMachine,
    duration_s: float,
    cpu_s: float,
    notes: list[str],
) -> HostCounts:
    """The host-side cost of the timer path just run; explanations go into ``notes``."""
    shared, outcome = machine.shared, machine.outcome
    hypercalls, exits = outcome.hypercalls, sum(outcome.exits.values())
    linux = spec.guest is GuestKind.LINUX
    console = 0  # the workload's console lines (a UART exit per register access)
    if linux and machine.ready_exits is not None:
        exits = machine.exit_count - machine.ready_exits  # the boot's are not the timer's
        console = console_exits(machine) - (machine.ready_console_exits or 0)
        exits -= console
        notes.append(f"linux: {console} console exits during the workload, not counted")
    if spec.timer is TimerPath.PV:
        timer_events = int(shared.irq_count)
        injections, wakeups, kicks, more = pv_counts(machine)
        if linux and machine.ready_kicks is not None:
            kicks -= machine.ready_kicks
        exits += kicks  # in-kernel exits (the ioeventfd): they never reach Python
        notes.extend(more)
        if linux:
            notes.append(linux_pv_note(machine, exits, kicks))
    elif spec.timer is TimerPath.LGUEST:
        timer_events = int(shared.irq_count)
        injections, wakeups = int(shared.host_fired), host.timers.stats.wakeups
        merged = injections - timer_events
        if merged > 0:
            notes.append(f"{merged} host timer expiries merged into earlier interrupts")
        notes.append(_lateness_note(host.timers, host.tsc_hz))
    elif spec.timer in ZOO_TIMERS and not linux:  # the chip counts (zoo_counts.py)
        timer_events, injections, wakeups = zoo_counts(spec.timer, host, machine, notes)
        notes.append(_lateness_note(host.timers, host.tsc_hz))
    elif spec.timer is TimerPath.PRECISE:
        loop_stats = machine.precise.stats()
        assert loop_stats is not None
        timer_events = int(shared.precise_irq_count)
        injections, wakeups = loop_stats.fired, loop_stats.loop_wakeups
        spin_s = int(shared.spin_ns) / 1e9
        notes.append(
            f"precise: {int(shared.precise_irq_events)} events by early interrupt, "
            f"{int(shared.precise_spin_events)} spun to without one; the guest spun "
            f"{spin_s:.3f} s ({100 * spin_s / duration_s:.0f} % of the run): the CPU cost "
            f"of this precision"
        )
        notes.append(
            f"precise: adaptive advance ended at {loop_stats.advance_ns / 1000:.1f} us; the "
            f"deadline loop woke after the deadline {loop_stats.late_wakeups} times"
        )
        notes.extend(filter(None, [loop_stats.failure_note("precise")]))
    elif spec.guest is GuestKind.LINUX:  # Linux's own driver counts nothing for us
        timer_events = injections = wakeups = machine.events_recorded
        notes.append(
            f"{spec.timer.value}: Linux's own clock-event device; counts are the workload's events"
        )
        for zoo_device in (
            machine.device(HpetDevice),
            machine.device(PitDevice),
            machine.device(RtcDevice),
        ):
            if zoo_device is not None:  # what Linux did with the zoo's chips
                notes.append(zoo_device.summary())
    else:
        timer_events = injections = wakeups = int(shared.lapic_irq_count)
        notes.append("lapic: expiries and injections are KVM's in-kernel LAPIC timer's")
        if spec.advance is Advance.AUTO:
            notes.append(
                f"lapic --advance auto: {int(shared.lapic_irq_events)} events by early "
                f"interrupt, {int(shared.lapic_spin_events)} spun to without one; the advance "
                f"ended at {int(shared.lapic_advance_ns) / 1000:.1f} us (the guest's own)"
            )
    return HostCounts(
        exits=exits,
        hypercalls=hypercalls,
        injections=injections,
        wakeups=wakeups,
        timer_events=timer_events,
        duration_s=duration_s,
        cpu_s=cpu_s,
    )


def which_pit(machine: GuestMachine) -> str:
    """The record's ``pit``: the zoo's 8254, KVM's in-kernel PIT2 (Linux without the zoo),
    or none (the small guest has no PIT unless the zoo is asked for)."""
    if machine.device(PitDevice) is not None:
        return "tickless-i8254"
    if isinstance(machine.boot, LinuxBoot) and machine.boot.in_kernel_pit:
        return "kvm-pit2"
    return "none"


def _lateness_note(timers: HostTimerThread, tsc_hz: int) -> str:
    stats = timers.stats
    if not stats.wakeups:
        return "host timer thread did not wake"
    late_us = stats.late_ticks_total / stats.wakeups / tsc_hz * 1e6
    max_us = stats.late_ticks_max / tsc_hz * 1e6
    return f"host timer thread woke {late_us:.1f} us late on average (max {max_us:.1f} us)"


def linux_notes(machine: GuestMachine) -> list[str]:
    """What a Linux guest's drivers and this host's emulator gaps did (none for the small
    guest)."""
    if machine.config.guest is not GuestKind.LINUX:
        return []
    shared, notes = machine.shared, []
    if machine.boot_s is not None:
        notes.append(f"boot: {machine.boot_s:.1f} s until the workload ran (not in the rates)")
    if machine.outcome.assists:
        done = ", ".join(f"{name} x{n}" for name, n in sorted(machine.outcome.assists.items()))
        notes.append(f"emulator assists (this host's gaps, filled by the VMM): {done}")
    if machine.config.stock:
        rate = machine.config.rate
        notes.append(stock_tsc_note(machine.console.text(), machine.tsc_hz, rate))
    else:
        notes.append(
            f"linux driver: {int(shared.ce_etime)} set_next_event calls got -ETIME, "
            f"{int(shared.ce_min_delta_retries)} clockevents min-delta retries"
        )
    legacy = machine.device(LegacyPortsDevice)
    if legacy is not None:
        notes.append(legacy.summary())
    return notes
