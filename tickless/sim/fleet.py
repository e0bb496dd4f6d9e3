"""Fleets of simulated guests: what their timers cost the host, in virtual time.

The simulated counterpart of ``tickless idle`` (``tickless.measure.idle``): the same
question for fleets no real machine here can hold, answered in the same result fields.

A fleet starts in steady state at t = 0 (guests booted long ago): every guest's tick phase,
housekeeping phase, residual-tick phase and measurement phase is drawn from the seed, as
are I/O interrupt arrivals (Poisson). Nothing else is random, so a seed fixes the run.

This module builds and runs a fleet; what it asks for is ``fleet_spec`` and what it found
``fleet_result`` (both re-exported here, the names callers use).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from tickless.sim import engine, layout, warp
from tickless.sim import guest_model as gm
from tickless.sim.fleet_result import CpuCounts, FleetGuestCounts, FleetResult, summarize
from tickless.sim.fleet_spec import (
    SECOND_NS,
    FleetSpec,
    IoSource,
    available_memory_bytes,
    check_memory,
)
from tickless.sim.layout import FleetArrays, Int64Array

__all__ = [
    "CpuCounts",
    "FleetGuestCounts",
    "FleetResult",
    "FleetSpec",
    "IoSource",
    "available_memory_bytes",
    "build",
    "check_memory",
    "compile_engine",
    "placement",
    "run_fleet",
]


# --- building the fleet ---------------------------------------------------------------------


def placement(spec: FleetSpec) -> Int64Array:
    """Host CPU of each guest's vCPU."""
    g = np.arange(spec.guests, dtype=np.int64)
    if spec.placement == "round-robin":
        return g % spec.cpus
    if spec.placement == "block":
        return g * spec.cpus // spec.guests
    return np.full(spec.guests, int(spec.placement.partition(":")[2]), dtype=np.int64)


def _dealt(values: list[int], guests: int) -> Int64Array:
    return np.resize(np.asarray(values, dtype=np.int64), guests)


def _io_arrivals(spec: FleetSpec, rng: np.random.Generator) -> list[tuple[Int64Array, int]]:
    """Poisson arrival times (guest ns, in [0, duration]) of each source, in spec order, and
    its handler time in guest ns: host I/O runs at its own (wall) rate, whatever the guests'
    clocks do, so at dilation R its arrivals are R times as far apart in guest time."""
    out = []
    for src in spec.io:
        mean_gap_ns = SECOND_NS * float(spec.rate) / src.rate_per_s
        expected = src.rate_per_s * spec.duration_ns / SECOND_NS / float(spec.rate)
        times: list[npt.NDArray[np.float64]] = []
        t = 0.0
        while t <= spec.duration_ns:
            gaps = rng.exponential(mean_gap_ns, int(expected * 0.05) + 64)
            block = t + np.cumsum(gaps)
            times.append(block)
            t = float(block[-1])
        arrivals = np.floor(np.concatenate(times)).astype(np.int64)
        out.append((arrivals[arrivals <= spec.duration_ns], spec.guest_ns(src.handler_ns)))
    return out


def _guest_rows(spec: FleetSpec, rng: np.random.Generator) -> tuple[Int64Array, Int64Array]:
    """The guests' kernels at t = 0 (phases drawn from ``rng``), and their timers' periods."""
    g_count, period_ns = spec.guests, spec.period_ns
    rows = np.zeros((g_count, gm.N_FIELDS), dtype=np.int64)
    modes = _dealt([gm.MODES[m] for m in spec.modes], g_count)
    workloads = _dealt([gm.WORKLOADS[w] for w in spec.workloads], g_count)
    rows[:, gm.MODE] = modes
    rows[:, gm.WORKLOAD] = workloads
    rows[:, gm.ANCHOR] = rng.integers(1, period_ns, size=g_count, endpoint=True)
    # Housekeeping timers as in user.c: every period from the guest's start, long ago.
    longest = max(spec.housekeeping_ns, default=1)
    start_ns = -rng.integers(0, longest, size=g_count)
    timer_period_ns = np.ones(gm.N_TIMERS, dtype=np.int64)
    rows[:, gm.TIMER0 : gm.TIMER0 + gm.N_TIMERS] = gm.NEVER
    for k, p in enumerate(spec.housekeeping_ns):
        timer_period_ns[k] = p
        rows[:, gm.TIMER0 + k] = start_ns + ((-start_ns) // p + 1) * p
    residual = gm.N_TIMERS - 1
    timer_period_ns[residual] = gm.RESIDUAL_TICK_NS
    residual_ns = rng.integers(1, gm.RESIDUAL_TICK_NS, size=g_count, endpoint=True)
    busy_full = (modes == gm.NOHZ_FULL) & (workloads == gm.CPU)
    rows[:, gm.TIMER0 + residual] = np.where(busy_full, residual_ns, gm.NEVER)
    measure_ns = rng.integers(1, spec.measure_interval_ns, size=g_count, endpoint=True)
    measuring = workloads == gm.MEASURE
    rows[:, gm.MEAS_NEXT] = np.where(measuring, measure_ns, gm.NEVER)
    rows[:, gm.MEAS_LEFT] = np.where(measuring, spec.measure_count, 0)
    return rows, timer_period_ns


def _cpu_rows(spec: FleetSpec, cpu_of: Int64Array, sorted_runs: bool) -> Int64Array:
    """Each CPU's share of the heap and sorted-run slots (its guests' timers)."""
    per_cpu = np.bincount(cpu_of, minlength=spec.cpus).astype(np.int64)
    cpu = np.zeros((spec.cpus, layout.N_CPU_FIELDS), dtype=np.int64)
    cpu[:, layout.C_HI] = np.cumsum(per_cpu)
    cpu[:, layout.C_LO] = cpu[:, layout.C_HI] - per_cpu
    run_slots = np.array([layout.run_capacity(k) if sorted_runs else 0 for k in per_cpu])
    cpu[:, layout.C_FHI] = np.cumsum(run_slots)
    cpu[:, layout.C_FLO] = cpu[:, layout.C_FHI] - run_slots
    return cpu


def _io_rows(
    spec: FleetSpec, rng: np.random.Generator, cpu: Int64Array
) -> tuple[Int64Array, Int64Array]:
    """I/O arrival times and handler times, grouped by CPU (whose rows get their ranges)."""
    io_by_cpu: list[list[tuple[Int64Array, int]]] = [[] for _ in range(spec.cpus)]
    for src, (arrivals, handler_ns) in zip(spec.io, _io_arrivals(spec, rng), strict=True):
        io_by_cpu[src.cpu].append((arrivals, handler_ns))
    io_t: list[Int64Array] = []
    io_h: list[Int64Array] = []
    for c, sources in enumerate(io_by_cpu):
        t = np.concatenate([a for a, _ in sources] or [np.zeros(0, np.int64)])
        h = np.concatenate([np.full(len(a), hn, np.int64) for a, hn in sources] or [t])
        order = np.argsort(t, kind="stable")  # ties: the source listed first goes first
        cpu[c, layout.C_IO_NEXT] = sum(x.size for x in io_t)
        io_t.append(t[order])
        io_h.append(h[order])
        cpu[c, layout.C_IO_END] = cpu[c, layout.C_IO_NEXT] + len(t)
    return np.concatenate(io_t).astype(np.int64), np.concatenate(io_h).astype(np.int64)


def build(
    spec: FleetSpec, trace_capacity: int = 0, sorted_runs: bool = True
) -> tuple[FleetArrays, Int64Array]:
    """The fleet at t = 0, drawn from ``spec.seed``: arrays for the engine, and placement.
    ``sorted_runs=False`` turns the engine's O(1) fast path off (heap only): same result."""
    rng = np.random.Generator(np.random.PCG64(spec.seed))
    rows, timer_period_ns = _guest_rows(spec, rng)
    cpu_of = placement(spec)
    cpu = _cpu_rows(spec, cpu_of, sorted_runs)
    io_t_ns, io_handler_ns = _io_rows(spec, rng, cpu)
    g_count, total_run = spec.guests, int(cpu[-1, layout.C_FHI])
    arrays = FleetArrays(
        rows=rows,
        dev=np.zeros((g_count, layout.N_DEV_FIELDS), dtype=np.int64),
        heap_exp=np.zeros(g_count, dtype=np.int64),
        heap_seq=np.zeros(g_count, dtype=np.int64),
        heap_ref=np.zeros(g_count, dtype=np.int64),
        run_exp=np.zeros(total_run, dtype=np.int64),
        run_seq=np.zeros(total_run, dtype=np.int64),
        run_ref=np.full(total_run, -1, dtype=np.int64),
        pos=np.full(g_count, layout.UNARMED, dtype=np.int64),
        cpu=cpu,
        io_t_ns=io_t_ns,
        io_handler_ns=io_handler_ns,
        timer_period_ns=timer_period_ns,
        trace_ns=np.zeros((spec.cpus, trace_capacity), dtype=np.int64),
        trace_count=np.zeros((spec.cpus, trace_capacity), dtype=np.int64),
        period_ns=spec.period_ns,
        slop_ns=spec.guest_ns(spec.slop_ns),  # the engine's clock is the guests'
        interval_ns=spec.measure_interval_ns,
    )
    return arrays, cpu_of


# --- running -------------------------------------------------------------------------------------

CHUNK_WALL_S = 0.1  # return to Python about this often (progress, Ctrl-C)


def compile_engine() -> float:
    """Compile or load the engine and the warp kernels (seconds taken), on a one-guest
    fleet of every kind."""
    spec = FleetSpec(
        guests=3,
        mode="periodic,nohz-idle,nohz-full",
        workload="measure",
        duration_ns=SECOND_NS,
        cpus=1,
        io=(IoSource(1.0, 1),),
    )
    warped = FleetSpec(guests=2, mode="nohz-idle,nohz-full", duration_ns=SECOND_NS, cpus=1)
    return engine.warm_up(lambda: build(spec)) + warp.warm_up(build(warped)[0])


def _runner(spec: FleetSpec, arrays: FleetArrays, cpu_of: Int64Array) -> Callable[[int], None]:
    """What advances the fleet to a guest time: the host CPUs' timer queues, or with
    ``warp_idle`` every VM's own warped clock (its handler runs ``rate`` x its wall cost)."""
    if not spec.warp_idle:
        engine.init_arrays(arrays, cpu_of)
        return lambda t_end_ns: engine.run_until(arrays, t_end_ns)
    handler_ns = spec.guest_ns(spec.cost.per_interrupt_ns)
    return lambda t_end_ns: warp.run_until(arrays, t_end_ns, handler_ns)


def run_fleet(
    spec: FleetSpec,
    progress: Callable[[float], None] | None = None,
    trace_capacity: int = 0,
    sorted_runs: bool = True,
    compile_s: float | None = None,
) -> tuple[FleetResult, FleetArrays]:
    """Simulate ``spec`` for its ``duration_ns`` of guest time; Ctrl-C (or a
    KeyboardInterrupt from ``progress``) ends the run early with a partial result over what
    was simulated (``partial`` set, and a note). ``compile_s``: the engine was compiled
    already (and took this long). ``trace_capacity``: wake-ups traced per host CPU, or
    with warp events per guest (``arrays.warp_deadline_ns``, ``warp_inject_ns``)."""
    check_memory(spec)
    if compile_s is None:
        compile_s = compile_engine()
    arrays, cpu_of = build(spec, trace_capacity, sorted_runs)
    if spec.warp_idle:
        warp.attach(arrays, trace_capacity)
    run_until = _runner(spec, arrays, cpu_of)
    t0 = time.perf_counter()
    done_ns, step_ns = 0, max(1_000_000, spec.duration_ns // 1000)
    partial = False
    try:
        while done_ns < spec.duration_ns:
            target = min(spec.duration_ns, done_ns + step_ns)
            c0 = time.perf_counter()
            run_until(target)
            took = time.perf_counter() - c0
            done_ns = target
            # Aim at CHUNK_WALL_S per chunk; never grow by more than 4x at once.
            step_ns = int(step_ns * min(4.0, CHUNK_WALL_S / max(took, 1e-6)))
            step_ns = max(1_000_000, step_ns)
            if progress is not None:
                progress(done_ns / spec.duration_ns)
    except KeyboardInterrupt:
        partial = arrays.now_ns < spec.duration_ns
        if arrays.now_ns == 0:
            raise
    wall_s = time.perf_counter() - t0
    return summarize(spec, arrays, cpu_of, wall_s, compile_s, partial), arrays
