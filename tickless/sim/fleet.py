"""Fleets of simulated guests: what their timers cost the host, in virtual time.

The simulated counterpart of ``tickless idle`` (``tickless.measure.idle``): the same
question for fleets no real machine here can hold, answered in the same result fields.

A fleet starts in steady state at t = 0 (guests booted long ago): every guest's tick phase,
housekeeping phase, residual-tick phase and measurement phase is drawn from the seed, as
are I/O interrupt arrivals (Poisson). Nothing else is random, so a seed fixes the run.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from tickless.guest.abi import MAX_DELTA_NS, MIN_DELTA_NS, MIN_PERIOD_NS
from tickless.measure.idle import IDLE_SCHEMA_VERSION
from tickless.sim import engine
from tickless.sim import guest_model as gm
from tickless.sim.cost import COST_MODELS, CostModel

SECOND_NS = 1_000_000_000
MAX_DURATION_NS = 30 * 24 * 3600 * SECOND_NS  # keeps every sum of times far inside int64
MAX_CPUS = 4096
REPORT_BYTES_PER_GUEST = 2_000  # its per_guest entry: Python objects and JSON text
IO_BYTES_PER_ARRIVAL = 40  # int64 time and handler, plus the float64 draws while building
MEMORY_HEADROOM = 0.8  # use at most this share of the memory available now

Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True)
class IoSource:
    """Host device interrupts: Poisson arrivals at ``rate_per_s`` on host CPU ``cpu``, each
    keeping it busy for ``handler_ns`` (timer wake-ups wait for the handler to finish)."""

    rate_per_s: float
    handler_ns: int
    cpu: int = 0

    def to_json_dict(self) -> dict[str, Any]:
        return {"rate_per_s": self.rate_per_s, "handler_ns": self.handler_ns, "cpu": self.cpu}


@dataclass(frozen=True)
class FleetSpec:
    """A fleet run. ``mode`` and ``workload`` may list several values (comma-separated):
    they are dealt to guests round-robin, so fleets can mix kinds of guests."""

    guests: int = 10
    mode: str = "periodic"
    hz: int = 1000
    duration_ns: int = 60 * SECOND_NS
    cpus: int = 2
    slop_ns: int = 0
    workload: str = "idle"
    placement: str = "round-robin"  # round-robin | block | cpu:N (all vCPUs pinned to N)
    housekeeping_ns: tuple[int, ...] = (1 * SECOND_NS, 4 * SECOND_NS)
    measure_count: int = 4500
    measure_interval_ns: int = 1_000_000
    io: tuple[IoSource, ...] = ()
    seed: int = 0
    cost_model: str = "box"

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ValueError(problem)

    def _problem(self) -> str | None:
        """The first thing wrong with the spec, as one line, or None."""
        if self.guests < 1:
            return "--guests must be at least 1"
        unknown = [m for m in self.modes if m not in gm.MODES]
        if unknown:
            return f"unknown mode {unknown[0]!r}: use {', '.join(gm.MODES)}"
        unknown = [w for w in self.workloads if w not in gm.WORKLOADS]
        if unknown:
            return f"unknown workload {unknown[0]!r}: use {', '.join(gm.WORKLOADS)}"
        if not 1 <= self.hz <= 10_000:
            return "--hz must be between 1 and 10000"
        if not 0 < self.duration_ns <= MAX_DURATION_NS:
            return "--duration must be positive and at most 30 days"
        if not 1 <= self.cpus <= MAX_CPUS:
            return f"--cpus must be between 1 and {MAX_CPUS}"
        if not 0 <= self.slop_ns <= SECOND_NS:
            return "--slop must be between 0 and 1s"
        if self.placement not in ("round-robin", "block") and not self._pinned_ok():
            return f"--placement {self.placement!r}: use round-robin, block or cpu:N (N < cpus)"
        if len(self.housekeeping_ns) > gm.N_HOUSEKEEPING or not all(
            MIN_PERIOD_NS <= p <= MAX_DELTA_NS for p in self.housekeeping_ns
        ):
            return "at most two housekeeping timers, each between 10us and 1h"
        if self.measure_count < 1:
            return "--count must be at least 1"
        if not MIN_DELTA_NS <= self.measure_interval_ns <= MAX_DELTA_NS:
            return "--interval must be between 100ns and 1h"
        if self.seed < 0:
            return "--seed must not be negative"
        if self.cost_model not in COST_MODELS:
            return f"unknown cost model {self.cost_model!r}: use {', '.join(COST_MODELS)}"
        return self._io_problem()

    def _pinned_ok(self) -> bool:
        name, _, num = self.placement.partition(":")
        return name == "cpu" and num.isdigit() and int(num) < self.cpus

    def _io_problem(self) -> str | None:
        load = [0.0] * self.cpus
        for src in self.io:
            if not 0 < src.rate_per_s <= 10_000_000 or src.handler_ns < 0:
                return "--io: rate must be in (0, 1e7]/s and handler time not negative"
            if not 0 <= src.cpu < self.cpus:
                return f"--io: cpu {src.cpu} does not exist (--cpus {self.cpus})"
            load[src.cpu] += src.rate_per_s * src.handler_ns / SECOND_NS
        busiest = max(range(self.cpus), key=load.__getitem__)
        if load[busiest] >= 1.0:
            return f"--io keeps cpu {busiest} busy {100 * load[busiest]:.0f} % of the time"
        return None

    @property
    def modes(self) -> list[str]:
        return self.mode.split(",")

    @property
    def workloads(self) -> list[str]:
        return self.workload.split(",")

    @property
    def period_ns(self) -> int:
        """The tick period: TICK_NSEC, NSEC_PER_SEC / HZ rounded to nearest."""
        return (SECOND_NS + self.hz // 2) // self.hz

    @property
    def cost(self) -> CostModel:
        return COST_MODELS[self.cost_model]

    def io_arrivals_expected(self) -> float:
        return sum(src.rate_per_s for src in self.io) * self.duration_ns / SECOND_NS

    def memory_bytes(self) -> int:
        """What the run will hold: the struct of arrays, the result, the I/O arrivals."""
        per_guest = engine.BYTES_PER_GUEST + REPORT_BYTES_PER_GUEST
        io = IO_BYTES_PER_ARRIVAL * (self.io_arrivals_expected() * 1.01 + 64 * len(self.io))
        return int(self.guests * per_guest + io + self.cpus * 8 * engine.N_CPU_FIELDS)

    def expected_events(self) -> float:
        """A rough count of simulated events, to decide whether a progress bar is worth it."""
        pattern = math.lcm(len(self.modes), len(self.workloads))
        kinds = [
            (
                gm.MODES[self.modes[g % len(self.modes)]],
                gm.WORKLOADS[self.workloads[g % len(self.workloads)]],
            )
            for g in range(pattern)
        ]
        per_guest_per_s = sum(self.hz if gm.ticking(m, w) else 2 for m, w in kinds) / pattern
        timers = per_guest_per_s * self.guests * self.duration_ns / SECOND_NS
        return timers + self.io_arrivals_expected()


def available_memory_bytes() -> int:
    """Memory free right now (``os.sysconf``), the budget a run must fit in."""
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(spec: FleetSpec, available: int | None = None) -> None:
    """Refuse, in one line, a fleet that would not fit in memory (before allocating any)."""
    budget = int(MEMORY_HEADROOM * (available_memory_bytes() if available is None else available))
    need = spec.memory_bytes()
    if need > budget:
        per_guest = engine.BYTES_PER_GUEST + REPORT_BYTES_PER_GUEST
        fits = max(0, (budget - need + spec.guests * per_guest) // per_guest)
        raise MemoryError(
            f"{spec.guests:,} guests need ~{need / 2**30:,.1f} GiB but only "
            f"{budget / 2**30:.1f} GiB is available: at most ~{fits:,} guests fit"
        )


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
    """Poisson arrival times (ns, in [0, duration]) of each source, in spec order."""
    out = []
    for src in spec.io:
        mean_gap_ns = SECOND_NS / src.rate_per_s
        expected = src.rate_per_s * spec.duration_ns / SECOND_NS
        times: list[npt.NDArray[np.float64]] = []
        t = 0.0
        while t <= spec.duration_ns:
            gaps = rng.exponential(mean_gap_ns, int(expected * 0.05) + 64)
            block = t + np.cumsum(gaps)
            times.append(block)
            t = float(block[-1])
        arrivals = np.floor(np.concatenate(times)).astype(np.int64)
        out.append((arrivals[arrivals <= spec.duration_ns], src.handler_ns))
    return out


def build(
    spec: FleetSpec, trace_capacity: int = 0, sorted_runs: bool = True
) -> tuple[engine.FleetArrays, Int64Array]:
    """The fleet at t = 0, drawn from ``spec.seed``: arrays for the engine, and placement.
    ``sorted_runs=False`` turns the engine's O(1) fast path off (heap only): same result."""
    rng = np.random.Generator(np.random.PCG64(spec.seed))
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

    cpu_of = placement(spec)
    per_cpu = np.bincount(cpu_of, minlength=spec.cpus).astype(np.int64)
    cpu = np.zeros((spec.cpus, engine.N_CPU_FIELDS), dtype=np.int64)
    cpu[:, engine.C_HI] = np.cumsum(per_cpu)
    cpu[:, engine.C_LO] = cpu[:, engine.C_HI] - per_cpu
    run_slots = np.array([engine.run_capacity(k) if sorted_runs else 0 for k in per_cpu])
    cpu[:, engine.C_FHI] = np.cumsum(run_slots)
    cpu[:, engine.C_FLO] = cpu[:, engine.C_FHI] - run_slots
    total_run = int(run_slots.sum())

    io_by_cpu: list[list[tuple[Int64Array, int]]] = [[] for _ in range(spec.cpus)]
    for src, (arrivals, handler_ns) in zip(spec.io, _io_arrivals(spec, rng), strict=True):
        io_by_cpu[src.cpu].append((arrivals, handler_ns))
    io_t: list[Int64Array] = []
    io_h: list[Int64Array] = []
    for c, sources in enumerate(io_by_cpu):
        t = np.concatenate([a for a, _ in sources] or [np.zeros(0, np.int64)])
        h = np.concatenate([np.full(len(a), hn, np.int64) for a, hn in sources] or [t])
        order = np.argsort(t, kind="stable")  # ties: the source listed first goes first
        cpu[c, engine.C_IO_NEXT] = sum(x.size for x in io_t)
        io_t.append(t[order])
        io_h.append(h[order])
        cpu[c, engine.C_IO_END] = cpu[c, engine.C_IO_NEXT] + len(t)

    arrays = engine.FleetArrays(
        rows=rows,
        dev=np.zeros((g_count, engine.N_DEV_FIELDS), dtype=np.int64),
        heap_exp=np.zeros(g_count, dtype=np.int64),
        heap_seq=np.zeros(g_count, dtype=np.int64),
        heap_ref=np.zeros(g_count, dtype=np.int64),
        run_exp=np.zeros(total_run, dtype=np.int64),
        run_seq=np.zeros(total_run, dtype=np.int64),
        run_ref=np.full(total_run, -1, dtype=np.int64),
        pos=np.full(g_count, -1, dtype=np.int64),
        cpu=cpu,
        io_t_ns=np.concatenate(io_t).astype(np.int64),
        io_handler_ns=np.concatenate(io_h).astype(np.int64),
        timer_period_ns=timer_period_ns,
        trace_ns=np.zeros((spec.cpus, trace_capacity), dtype=np.int64),
        trace_count=np.zeros((spec.cpus, trace_capacity), dtype=np.int64),
        period_ns=period_ns,
        slop_ns=spec.slop_ns,
        interval_ns=spec.measure_interval_ns,
    )
    return arrays, cpu_of


# --- results ------------------------------------------------------------------------------------


@dataclass
class FleetResult:
    """One simulated fleet run, in the fields of ``IdleResult`` (``tickless idle --json``)
    plus what only a simulation has: ``per_cpu``, the model parameters, the cost model."""

    spec: FleetSpec
    duration_s: float  # virtual time simulated (less than asked when interrupted)
    host_timer_wakeups: int
    host_timer_expiries: int
    injections: int
    timer_thread_cpu_s: float  # modelled: host timer wake-ups
    vcpu_cpu_s: float  # modelled: per-guest timer work and baseline
    process_cpu_s: float  # modelled: all of it, I/O handlers included
    per_guest: list[dict[str, Any]]
    per_cpu: list[dict[str, Any]]
    wall_s: float
    compile_s: float
    partial: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def wakeups_per_s(self) -> float:
        return self.host_timer_wakeups / self.duration_s

    @property
    def expiries_per_s(self) -> float:
        return self.host_timer_expiries / self.duration_s

    @property
    def injections_per_s(self) -> float:
        return self.injections / self.duration_s

    @property
    def interrupts_per_guest_per_s(self) -> float:
        total = sum(int(g["timer_interrupts"]) for g in self.per_guest)
        return total / len(self.per_guest) / self.duration_s

    @property
    def cpu_percent_of_core(self) -> float:
        return 100.0 * self.process_cpu_s / self.duration_s

    @property
    def events_per_wall_s(self) -> float:
        """Simulation speed: host timer events per second of wall time (compile excluded)."""
        return self.host_timer_expiries / self.wall_s if self.wall_s > 0 else 0.0

    def to_json_dict(self) -> dict[str, Any]:
        s = self.spec
        return {
            "schema_version": IDLE_SCHEMA_VERSION,
            "kind": "fleet",
            "backend": "sim",
            "guests": s.guests,
            "mode": s.mode,
            "hz": s.hz if any(m != "nohz-full" for m in s.modes) else None,
            "duration_s": self.duration_s,
            "host_timer_wakeups": self.host_timer_wakeups,
            "host_timer_expiries": self.host_timer_expiries,
            "injections": self.injections,
            "timer_thread_cpu_s": self.timer_thread_cpu_s,
            "vcpu_cpu_s": self.vcpu_cpu_s,
            "process_cpu_s": self.process_cpu_s,
            "per_guest": self.per_guest,
            "machine": {"simulator": "tickless.sim.engine", "numba": numba.__version__},
            "notes": self.notes,
            "wakeups_per_s": self.wakeups_per_s,
            "expiries_per_s": self.expiries_per_s,
            "injections_per_s": self.injections_per_s,
            "interrupts_per_guest_per_s": self.interrupts_per_guest_per_s,
            "cpu_percent_of_core": self.cpu_percent_of_core,
            "per_cpu": self.per_cpu,
            "partial": self.partial,
            "requested_duration_s": s.duration_ns / SECOND_NS,
            "model": {
                "cpus": s.cpus,
                "slop_ns": s.slop_ns,
                "workload": s.workload,
                "placement": s.placement,
                "period_ns": s.period_ns,
                "housekeeping_ns": list(s.housekeeping_ns),
                "measure_count": s.measure_count,
                "measure_interval_ns": s.measure_interval_ns,
                "io": [src.to_json_dict() for src in s.io],
                "seed": s.seed,
                "cost_model": s.cost.to_json_dict(),
            },
            "simulation": {
                "wall_s": self.wall_s,
                "compile_s": self.compile_s,
                "events_per_wall_s": self.events_per_wall_s,
            },
        }


def summarize(
    spec: FleetSpec,
    a: engine.FleetArrays,
    cpu_of: Int64Array,
    wall_s: float,
    compile_s: float,
    partial: bool,
) -> FleetResult:
    """Counts of a (possibly partial) run, with the cost model applied."""
    duration_ns = a.now_ns if partial else spec.duration_ns
    duration_s = duration_ns / SECOND_NS
    cost = spec.cost
    rows, dev = a.rows, a.dev
    irqs = rows[:, gm.IRQS]
    guest_cpu_ns = cost.guest_cpu_ns(irqs, rows[:, gm.HYPERCALLS], duration_ns)
    busy = rows[:, gm.WORKLOAD] == gm.CPU
    per_guest = []
    for g in range(spec.guests):
        events = int(rows[g, gm.MEAS_EVENTS])
        per_guest.append(
            {
                "name": f"guest{g}",
                "timer_interrupts": int(irqs[g]),
                "wakeups": 0 if busy[g] else int(irqs[g]),
                "housekeeping_runs": int(rows[g, gm.HK_RUNS]),
                "hypercalls": int(rows[g, gm.HYPERCALLS]),
                "exits": int(rows[g, gm.HYPERCALLS] + irqs[g]),
                "vcpu_cpu_s": float(guest_cpu_ns[g]) / SECOND_NS,
                "cpu": int(cpu_of[g]),
                "mode": spec.modes[g % len(spec.modes)],
                "workload": spec.workloads[g % len(spec.workloads)],
                "useful_interrupts": int(rows[g, gm.USEFUL]),
                "overruns": int(dev[g, engine.D_OVERRUNS]),
                "measure_events": events,
                "mean_lateness_ns": float(rows[g, gm.LATE_SUM_NS]) / events if events else None,
                "max_lateness_ns": int(rows[g, gm.LATE_MAX_NS]) if events else None,
            }
        )
    per_cpu = []
    notes = []
    for c in range(spec.cpus):
        row = a.cpu[c]
        mine = cpu_of == c
        wake_ns = cost.wakeup_cpu_ns(int(row[engine.C_WAKEUPS]))
        cpu_ns = float(guest_cpu_ns[mine].sum()) + wake_ns + int(row[engine.C_IO_BUSY_NS])
        per_cpu.append(
            {
                "cpu": c,
                "guests": int(mine.sum()),
                "host_timer_wakeups": int(row[engine.C_WAKEUPS]),
                "host_timer_expiries": int(row[engine.C_EXPIRIES]),
                "injections": int(row[engine.C_EXPIRIES]),
                "io_interrupts": int(row[engine.C_IO_IRQS]),
                "io_busy_s": int(row[engine.C_IO_BUSY_NS]) / SECOND_NS,
                "wakeups_delayed_by_io": int(row[engine.C_DELAYED]),
                "io_delay_s": int(row[engine.C_DELAY_NS]) / SECOND_NS,
                "wakeups_per_s": int(row[engine.C_WAKEUPS]) / duration_s,
                "expiries_per_s": int(row[engine.C_EXPIRIES]) / duration_s,
                "timer_thread_cpu_s": wake_ns / SECOND_NS,
                "modelled_cpu_s": cpu_ns / SECOND_NS,
                "cpu_percent_of_core": 100.0 * cpu_ns / duration_ns,
            }
        )
        if cpu_ns > duration_ns:
            notes.append(
                f"cpu {c}: modelled load {100.0 * cpu_ns / duration_ns:,.0f} % of a core: a real "
                "host could not keep up, the simulation assumes it does (no feedback)"
            )
    if partial:
        notes.insert(
            0,
            f"interrupted: simulated {duration_s:.3f} s of {spec.duration_ns / SECOND_NS:g} s; "
            "rates are over the simulated part",
        )
    wakeups = int(a.cpu[:, engine.C_WAKEUPS].sum())
    expiries = int(a.cpu[:, engine.C_EXPIRIES].sum())
    timer_thread_s = sum(c["timer_thread_cpu_s"] for c in per_cpu)
    return FleetResult(
        spec=spec,
        duration_s=duration_s,
        host_timer_wakeups=wakeups,
        host_timer_expiries=expiries,
        injections=expiries,
        timer_thread_cpu_s=timer_thread_s,
        vcpu_cpu_s=float(guest_cpu_ns.sum()) / SECOND_NS,
        process_cpu_s=sum(c["modelled_cpu_s"] for c in per_cpu),
        per_guest=per_guest,
        per_cpu=per_cpu,
        wall_s=wall_s,
        compile_s=compile_s,
        partial=partial,
        notes=notes,
    )


# --- running -------------------------------------------------------------------------------------

CHUNK_WALL_S = 0.1  # return to Python about this often (progress, Ctrl-C)


def compile_engine() -> float:
    """Compile or load the engine (seconds taken), on a one-guest fleet of every kind."""
    spec = FleetSpec(
        guests=3,
        mode="periodic,nohz-idle,nohz-full",
        workload="measure",
        duration_ns=SECOND_NS,
        cpus=1,
        io=(IoSource(1.0, 1),),
    )
    return engine.warm_up(lambda: build(spec))


def run_fleet(
    spec: FleetSpec,
    progress: Callable[[float], None] | None = None,
    trace_capacity: int = 0,
    sorted_runs: bool = True,
    compile_s: float | None = None,
) -> tuple[FleetResult, engine.FleetArrays]:
    """Simulate ``spec``; Ctrl-C (or a KeyboardInterrupt from ``progress``) ends the run
    early with a partial result over what was simulated (``partial`` set, and a note).
    ``compile_s``: the engine was compiled already (and took this long)."""
    check_memory(spec)
    if compile_s is None:
        compile_s = compile_engine()
    arrays, cpu_of = build(spec, trace_capacity, sorted_runs)
    engine.init_arrays(arrays, cpu_of)
    t0 = time.perf_counter()
    done_ns, step_ns = 0, max(1_000_000, spec.duration_ns // 1000)
    partial = False
    try:
        while done_ns < spec.duration_ns:
            target = min(spec.duration_ns, done_ns + step_ns)
            c0 = time.perf_counter()
            engine.run_until(arrays, target)
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
