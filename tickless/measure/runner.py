"""One measurement, the paper's way, on a chosen timer path.

N timer events every d; the measured interval is the time between consecutive events
(relative method: each event arms the next d after itself, so the mean is d plus the
delivery latency). Paths: ``pv`` (our paravirtual clock-event device), ``lapic`` (KVM's
in-kernel LAPIC timer in TSC-deadline mode: the paper's "KVM" row) and ``host`` (the same
method run on the host itself: the floor on this box).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from tickless.axes import Method, TickMode, TimerPath, Wait
from tickless.guest.abi import Scenario
from tickless.host.cputime import process_cpu_s
from tickless.host.load import HostCpuLoad
from tickless.host.realtime import RealtimePolicy
from tickless.host.timer_thread import HostTimerThread
from tickless.kvm.system import kvm_problem
from tickless.measure.machine_info import machine_facts
from tickless.measure.schema import HostCounts, ResultRecord
from tickless.measure.stats import summarize, summarize_lateness
from tickless.vmm.config import MAX_EVENTS, GuestConfig
from tickless.vmm.host import VmmHost
from tickless.vmm.machine import GuestMachine, GuestStopped

TIMER_PATHS = ("pv", "lapic", "precise", "host")
LOADS = ("idle", "cpu", "io")
PAPER_IO_RATE_PER_S = 1733.0  # the paper's measured heavy-I/O interrupt rate
# An I/O interrupt stalls a spinning ring-3 guest 30-45 us beyond its handler's own busy
# time here (world switch into emulated ring 0, entry, EOI, iret): measured, see README.
HANDLER_ENTRY_EXIT_NS = 70_000
MODES = ("tickless", "periodic")
METHODS = ("relative", "absolute")
WAITS = ("halt", "spin")
BACKENDS = ("kvm", "sim")
ASSUMED_LATENCY_NS = 60_000  # only for progress estimates

Progress = Callable[[int], None]


@dataclass(frozen=True)
class MeasureSpec:
    timer: str
    interval_ns: int
    count: int
    mode: str = "tickless"
    hz: int = 1000
    method: str = "relative"
    wait: str = "halt"
    slop_ns: int = 0
    realtime: bool = True
    rate: Fraction = Fraction(1)
    halt_poll_ns: int | None = None
    stall_timeout_s: float = 10.0
    load: str = "idle"
    backend: str = "kvm"  # "kvm" or "sim" (resolve "auto" with resolve_backend first)
    platform: str = "KVM"  # the simulator's platform profile
    seed: int = 0  # the simulator's random seed (runs are deterministic for a seed)
    io_rate_per_s: float = PAPER_IO_RATE_PER_S  # with load "io"
    io_handler_ns: int = 20_000  # busy time of the guest's I/O interrupt handler
    hold_back_ns: int | None = None  # precise: hold-back window; None: handler cost + 25 us
    spin_threshold_ns: int = 200_000  # precise: nearer deadlines are spun to directly

    def __post_init__(self) -> None:
        for name, value, choices in (
            ("timer", self.timer, TIMER_PATHS),
            ("mode", self.mode, MODES),
            ("method", self.method, METHODS),
            ("wait", self.wait, WAITS),
        ):
            if value not in choices:
                raise ValueError(f"--{name} must be one of {', '.join(choices)}, not {value!r}")
        if self.interval_ns <= 0:
            raise ValueError("--interval must be positive")
        if not 1 <= self.count <= MAX_EVENTS:
            raise ValueError(f"--count must be between 1 and {MAX_EVENTS:,}")
        if not 1 <= self.hz <= 100_000:
            raise ValueError("--hz must be between 1 and 100000")
        if self.mode == "periodic" and self.timer != "pv":
            raise ValueError("--mode periodic is offered by the pv timer only")
        if self.slop_ns < 0:
            raise ValueError("--slop must not be negative")
        if self.rate <= 0:
            raise ValueError("--dilation must be positive")
        loads = self.loads
        if not loads or any(part not in LOADS for part in loads):
            raise ValueError(f"--load takes {', '.join(LOADS)} (combine with +), not {self.load!r}")
        if "idle" in loads and len(loads) > 1:
            raise ValueError("--load idle cannot be combined with other loads")
        if self.timer == "host" and "io" in loads:
            raise ValueError("--load io is a device in the guest: --timer host has no guest")
        if self.io_rate_per_s <= 0 or self.io_handler_ns < 0:
            raise ValueError("--io-rate must be positive and --io-handler not negative")
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}")

    @property
    def hold_back_window_ns(self) -> int:
        """Long enough for one I/O handler (plus its emulated entry and EOI) to finish
        before the deadline, and no longer: a wider window only makes interrupts wait."""
        if self.hold_back_ns is not None:
            return self.hold_back_ns
        return self.io_handler_ns + HANDLER_ENTRY_EXIT_NS

    @property
    def loads(self) -> tuple[str, ...]:
        return tuple(sorted(part for part in self.load.split("+") if part))

    @property
    def expected_duration_s(self) -> float:
        step_ns = self.interval_ns + ASSUMED_LATENCY_NS
        if self.mode == "periodic":
            step_ns = max(step_ns, 1_000_000_000 // self.hz)
        return self.count * step_ns / 1e9


class MeasurementInterrupted(Exception):
    """Ctrl-C during a run; ``partial`` holds what was measured up to then."""

    def __init__(self, partial: ResultRecord | None) -> None:
        super().__init__("interrupted")
        self.partial = partial


def resolve_backend(requested: str) -> tuple[str, str | None]:
    """``auto`` means KVM where /dev/kvm is usable, else the simulator; returns the backend
    and, when auto fell back, the one line saying why."""
    if requested != "auto":
        return requested, None
    problem = kvm_problem()
    if problem is None:
        return "kvm", None
    return "sim", f"no usable KVM ({problem.split(':')[0]}): running the simulator instead"


def measure(spec: MeasureSpec, progress: Progress | None = None) -> ResultRecord:
    if spec.backend == "sim":
        from tickless.sim.measure import simulate_measurement

        return simulate_measurement(spec, progress)
    if spec.timer == "host":
        return _measure_host(spec, progress)
    return _measure_kvm(spec, progress)


def intervals_and_lateness(
    timestamps_ns: npt.NDArray[np.int64], interval_ns: int, method: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Measured intervals, and each event's lateness against the deadline it asked for."""
    intervals = np.diff(timestamps_ns)
    if method == "absolute":
        grid = timestamps_ns[0] + interval_ns * np.arange(1, len(timestamps_ns), dtype=np.int64)
        return intervals, timestamps_ns[1:] - grid
    return intervals, intervals - interval_ns


def build_record(
    spec: MeasureSpec,
    backend: str,
    timestamps_ns: npt.NDArray[np.int64],
    host: HostCounts,
    machine: dict[str, str],
    notes: list[str],
) -> ResultRecord:
    if len(timestamps_ns) < 2:
        raise GuestStopped("no timer event was recorded")
    intervals, lateness = intervals_and_lateness(timestamps_ns, spec.interval_ns, spec.method)
    return ResultRecord(
        backend=backend,
        timer=spec.timer,
        mode=spec.mode,
        method=spec.method,
        hz=spec.hz if spec.mode == "periodic" else None,
        load=spec.load,
        interval_ns=spec.interval_ns,
        stats=summarize(intervals),
        lateness=summarize_lateness(lateness),
        host=host,
        intervals_ns=intervals.tolist(),
        lateness_ns=lateness.tolist(),
        machine=machine,
        notes=notes,
    )


def _policy(spec: MeasureSpec) -> RealtimePolicy:
    if spec.realtime:
        return RealtimePolicy()
    return RealtimePolicy(fifo_priority=None, hold_cpu_dma_latency=False)


def _guest_config(spec: MeasureSpec) -> GuestConfig:
    precise = spec.timer == "precise"
    return GuestConfig(
        scenario=Scenario.MEASURE,
        timer=TimerPath(spec.timer),
        method=Method(spec.method),
        wait=Wait(spec.wait),
        mode=TickMode(spec.mode),
        interval_ns=spec.interval_ns,
        count=spec.count,
        hz=spec.hz,
        rate=spec.rate,
        halt_poll_ns=spec.halt_poll_ns,
        io_rate_per_s=spec.io_rate_per_s if "io" in spec.loads else 0.0,
        io_handler_ns=spec.io_handler_ns,
        hold_back_ns=spec.hold_back_window_ns if precise else 0,
        spin_threshold_ns=spec.spin_threshold_ns,
        second_vcpu_busy="cpu" in spec.loads,
        vcpu_policy=VCPU_PRECISE_POLICY if precise else None,
        seed=spec.seed,
    )


# The precise channel pins its vCPU and its host timer thread to different CPUs, as the
# paper pinned the timer's VCPU to a physical CPU of its own.
VCPU_PRECISE_POLICY = RealtimePolicy(fifo_priority=80, cpu=1)
PRECISE_TIMER_POLICY = RealtimePolicy(fifo_priority=95, cpu=0)
OTHER_TIMERS_WITH_PRECISE = RealtimePolicy(fifo_priority=90, cpu=0)  # off the vCPU's CPU


def watch(
    machine: GuestMachine, host: VmmHost, stall_timeout_s: float, progress: Progress | None
) -> None:
    """Wait for the guest, reporting progress; stop it if it stalls or the host fails."""
    last_events, last_change = -1, time.monotonic()
    while machine.running:
        machine.join(0.1)
        events = machine.events_recorded
        if progress is not None:
            progress(events)
        now = time.monotonic()
        if events != last_events:
            last_events, last_change = events, now
        elif now - last_change > stall_timeout_s:
            machine.request_stop(f"guest made no progress for {stall_timeout_s:g} s")
        if host.timers.error is not None:
            machine.request_stop(f"host timer thread failed: {host.timers.error!r}")
    machine.join(5)


def _measure_kvm(spec: MeasureSpec, progress: Progress | None) -> ResultRecord:
    with contextlib.ExitStack() as stack:
        cpu_load = stack.enter_context(HostCpuLoad()) if "cpu" in spec.loads else None
        policy = OTHER_TIMERS_WITH_PRECISE if spec.timer == "precise" else _policy(spec)
        host = stack.enter_context(VmmHost(spec.slop_ns, policy))
        precise_timers = (
            host.dedicated_precise_timers(PRECISE_TIMER_POLICY) if spec.timer == "precise" else None
        )
        machine = host.boot(_guest_config(spec), precise_timers=precise_timers)
        cpu0, t0 = process_cpu_s(), time.monotonic()
        machine.start()
        interrupted = False
        try:
            watch(machine, host, spec.stall_timeout_s + spec.interval_ns / 1e9, progress)
        except KeyboardInterrupt:
            interrupted = True
            machine.request_stop("interrupted (Ctrl-C)")
            machine.join(5)
        duration_s, cpu_s = time.monotonic() - t0, process_cpu_s() - cpu0
        outcome = machine.outcome
        if not outcome.ok and not interrupted:
            console = f"; guest console: {outcome.console.strip()}" if outcome.console else ""
            raise GuestStopped(f"guest stopped: {outcome.reason}{console}")
        events = outcome.events if outcome.ok else machine.events_recorded
        notes = [*host.timers.problems, *host.timers.callback_errors, *machine.vcpu_problems]
        counts = _host_counts(spec, host, machine, duration_s, cpu_s, notes)
        if machine.io is not None:
            notes.extend(_io_notes(spec, machine, duration_s))
        if machine.ap is not None:
            machine.join(5)
            ap_cpu_s = machine.ap_cpu_ns / 1e9
            notes.append(f"cpu load: guest vCPU 1 busy for {ap_cpu_s:.2f} CPU-s")
            if machine.ap_error:
                notes.append(machine.ap_error)
        if interrupted:
            notes.append(f"interrupted after {events} of {spec.count} events")
        facts = machine_facts(
            tsc_khz=host.tsc_hz // 1000,
            timer_thread="SCHED_FIFO 90" if spec.realtime else "SCHED_OTHER",
            guest_wait=spec.wait,
            dilation=str(spec.rate),
            slop_ns=spec.slop_ns,
        )
        timestamps = machine.timestamps_ns(events) if events else None
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
    record = build_record(spec, "kvm", timestamps, counts, facts, notes)
    if interrupted:
        raise MeasurementInterrupted(record)
    return record


def _host_counts(
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
    if spec.timer == "pv":
        timer_events = int(shared.irq_count)
        injections, wakeups = int(shared.host_fired), host.timers.stats.wakeups
        merged = injections - timer_events
        if merged > 0:
            notes.append(f"{merged} host timer expiries merged into earlier interrupts")
        notes.append(_lateness_note(host.timers, host.tsc_hz))
    elif spec.timer == "precise":
        timers = host.precise_timers
        assert timers is not None
        timer_events = int(shared.precise_irq_count)
        injections, wakeups = machine.precise.stats.fired, timers.stats.wakeups
        spin_s = int(shared.spin_ns) / 1e9
        notes.append(
            f"precise: {int(shared.precise_irq_events)} events by early interrupt, "
            f"{int(shared.precise_spin_events)} spun to without one; the guest spun "
            f"{spin_s:.3f} s ({100 * spin_s / duration_s:.0f} % of the run): the CPU cost "
            f"of this precision"
        )
        notes.append(
            f"precise: adaptive advance ended at {machine.precise.advance.advance_ns / 1000:.1f}"
            f" us; host woke after the deadline {machine.precise.stats.late_wakeups} times"
        )
        notes.append(_lateness_note(timers, host.tsc_hz))
    else:
        timer_events = injections = wakeups = int(shared.lapic_irq_count)
        notes.append("lapic: expiries and injections are KVM's in-kernel LAPIC timer's")
    return HostCounts(
        exits=exits,
        hypercalls=hypercalls,
        injections=injections,
        wakeups=wakeups,
        timer_events=timer_events,
        duration_s=duration_s,
        cpu_s=cpu_s,
    )


def _lateness_note(timers: HostTimerThread, tsc_hz: int) -> str:
    stats = timers.stats
    if not stats.wakeups:
        return "host timer thread did not wake"
    late_us = stats.late_ticks_total / stats.wakeups / tsc_hz * 1e6
    max_us = stats.late_ticks_max / tsc_hz * 1e6
    return f"host timer thread woke {late_us:.1f} us late on average (max {max_us:.1f} us)"


def io_rate_achieved(machine: GuestMachine) -> float:
    """Device interrupts the guest's handler actually ran, per second of the load."""
    assert machine.io is not None
    return machine.io.stats.rate_per_s(int(machine.shared.io_irq_count))


def _io_notes(spec: MeasureSpec, machine: GuestMachine, duration_s: float) -> list[str]:
    assert machine.io is not None
    stats = machine.io.stats
    notes = [
        f"io load: requested {spec.io_rate_per_s:.0f} IRQ/s, achieved "
        f"{io_rate_achieved(machine):.0f} IRQ/s in the guest "
        f"(handler busy {spec.io_handler_ns / 1000:g} us each)"
    ]
    achieved = io_rate_achieved(machine)
    if achieved < 0.9 * spec.io_rate_per_s:
        notes.append(
            f"io load: WARNING the guest took only {achieved:.0f} of {spec.io_rate_per_s:.0f} "
            f"IRQ/s ({int(machine.shared.io_irq_count)} interrupts): this run was short or "
            "the device fell behind, so it was less loaded than asked"
        )
    if machine.io.hold_back is not None:
        notes.append(
            f"io load: {stats.deferred} interrupts held back by the precise channel's "
            f"{spec.hold_back_window_ns / 1000:g} us window, {stats.forced} forced in"
        )
    return notes


def _measure_host(spec: MeasureSpec, progress: Progress | None) -> ResultRecord:
    from tickless.host.baseline import run_host_baseline

    with contextlib.ExitStack() as stack:
        cpu_load = stack.enter_context(HostCpuLoad()) if "cpu" in spec.loads else None
        run = run_host_baseline(spec.interval_ns, spec.count, spec.method, _policy(spec), progress)
    notes = list(run.problems)
    if cpu_load is not None and cpu_load.report is not None:
        r = cpu_load.report
        notes.append(f"cpu load: stress-ng used {r.cpu_s:.2f} CPU-s ({r.cores_busy:.2f} cores)")
    counts = HostCounts(
        exits=0,
        hypercalls=0,
        injections=0,
        wakeups=spec.count,
        timer_events=spec.count,
        duration_s=run.wall_s,
        cpu_s=run.cpu_s,
    )
    facts = machine_facts(timer_thread="SCHED_FIFO 90" if spec.realtime else "SCHED_OTHER")
    return build_record(spec, "host", run.timestamps_ns, counts, facts, notes)
