"""One measurement, the paper's way, on a chosen timer path.

N timer events every d; the measured interval is the time between consecutive events
(relative method: each event arms the next d after itself, so the mean is d plus the
delivery latency). Paths: ``pv`` (our paravirtual clock-event device), ``lapic`` (KVM's
in-kernel LAPIC timer in TSC-deadline mode: the paper's "KVM" row) and ``host`` (the same
method run on the host itself: the floor on this box).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from tickless.guest.abi import Method, Scenario, TickMode, TimerKind, Wait
from tickless.host.cputime import process_cpu_s
from tickless.host.realtime import RealtimePolicy
from tickless.kvm.system import kvm_problem
from tickless.measure.machine_info import machine_facts
from tickless.measure.schema import HostCounts, ResultRecord
from tickless.measure.stats import summarize, summarize_lateness
from tickless.vmm.config import MAX_EVENTS, GuestConfig
from tickless.vmm.host import VmmHost
from tickless.vmm.machine import GuestMachine, GuestStopped

TIMER_PATHS = ("pv", "lapic", "host")
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
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}")

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
    return GuestConfig(
        scenario=Scenario.MEASURE,
        timer=TimerKind.PV if spec.timer == "pv" else TimerKind.LAPIC,
        method=Method[spec.method.upper()],
        wait=Wait[spec.wait.upper()],
        mode=TickMode[spec.mode.upper()],
        interval_ns=spec.interval_ns,
        count=spec.count,
        hz=spec.hz,
        rate=spec.rate,
        halt_poll_ns=spec.halt_poll_ns,
    )


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
    with VmmHost(spec.slop_ns, _policy(spec)) as host:
        machine = host.boot(_guest_config(spec))
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
        shared = machine.shared
        notes = [*host.timers.problems, *host.timers.callback_errors]
        if spec.timer == "pv":
            timer_events = int(shared.irq_count)
            injections, wakeups = outcome.injections, host.timers.stats.wakeups
            merged = int(shared.host_fired) - timer_events
            if merged > 0:
                notes.append(f"{merged} host timer expiries merged into earlier interrupts")
            stats = host.timers.stats
            if stats.wakeups:
                late_us = stats.late_ticks_total / stats.wakeups / host.tsc_hz * 1e6
                max_us = stats.late_ticks_max / host.tsc_hz * 1e6
                notes.append(
                    f"host timer thread woke {late_us:.1f} us late on average (max {max_us:.1f} us)"
                )
        else:
            timer_events = injections = wakeups = int(shared.lapic_irq_count)
            notes.append("lapic: expiries and injections are KVM's in-kernel LAPIC timer's")
        if interrupted:
            notes.append(f"interrupted after {events} of {spec.count} events")
        counts = HostCounts(
            exits=sum(outcome.exits.values()),
            hypercalls=outcome.hypercalls,
            injections=injections,
            wakeups=wakeups,
            timer_events=timer_events,
            duration_s=duration_s,
            cpu_s=cpu_s,
        )
        facts = machine_facts(
            tsc_khz=host.tsc_hz // 1000,
            timer_thread="SCHED_FIFO 90" if spec.realtime else "SCHED_OTHER",
            guest_wait=spec.wait,
            dilation=str(spec.rate),
            slop_ns=spec.slop_ns,
        )
        try:
            record = build_record(spec, "kvm", machine.timestamps_ns(events), counts, facts, notes)
        except GuestStopped:
            if interrupted:
                raise MeasurementInterrupted(None) from None
            raise
        if interrupted:
            raise MeasurementInterrupted(record)
        return record


def _measure_host(spec: MeasureSpec, progress: Progress | None) -> ResultRecord:
    from tickless.host.baseline import run_host_baseline

    run = run_host_baseline(spec.interval_ns, spec.count, spec.method, _policy(spec), progress)
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
    return build_record(spec, "host", run.timestamps_ns, counts, facts, list(run.problems))
