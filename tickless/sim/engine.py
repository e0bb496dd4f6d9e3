"""The simulator's discrete-event core: host CPUs, their timer queues, guests, in virtual ns.

It runs the host timer logic of ``tickless.timers`` itself: the functions of
``tickless.timers.policy`` (delta checks, deadlines, periodic next-deadline with overruns,
the indexed heap, Xen's slop wake-up choice) are registered with numba here and called from
compiled code as the very same function objects ``TimerQueue`` and ``ClockEventDevice`` call
in Python. numba is imported only in ``tickless.sim``.

State is a struct of arrays (``FleetArrays``): one heap slot and one device row per guest,
one state row per host CPU. Host CPUs do not interact (each has its own timer queue, as
Linux's per-CPU hrtimer bases and Xen's per-CPU timer heaps do), so they are simulated in
parallel (``prange``) and the result does not depend on the number of threads. A run is cut
into chunks of virtual time (``run_until``) so that Python can show progress and take
Ctrl-C between them; the cut points never change the result.

Event rules on one CPU, in this order:

1. an I/O interrupt arriving no later than the next timer wake-up runs first; its handler
   keeps the CPU busy for its handling time (back to back when they pile up);
2. the timer wake-up (``slop_wakeup`` over the heap) runs at the wake-up time, or when the
   handler in progress ends; it expires every timer due by then, in (expiry, arming) order:
   the device computes its next periodic deadline (or shuts down, one-shot), the host
   injects the interrupt, the guest reacts and may program its device again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
from numba.extending import register_jitable

import tickless.guest.abi
from tickless.buildcache import cache_dir, fingerprint
from tickless.sim import guest_model as gm
from tickless.timers import policy

# The host timer logic, shared with tickless.timers (the same function objects).
SHARED_POLICY: tuple[Callable[..., Any], ...] = (
    policy.check_delta,
    policy.check_period,
    policy.oneshot_deadline_ns,
    policy.periodic_next_ns,
    policy.hold_back_release_ns,
    policy.heap_sift_up,
    policy.heap_sift_down,
    policy.heap_push,
    policy.heap_rekey,
    policy.heap_remove,
    policy.slop_wakeup,
)
GUEST_MODEL: tuple[Callable[..., Any], ...] = (
    gm.ticking,
    gm.jiffy_ceil_ns,
    gm.next_delta_ns,
    gm.on_timer_irq,
)
for _fn in SHARED_POLICY + GUEST_MODEL:
    register_jitable(_fn)

Int64Array = npt.NDArray[np.int64]

# --- device rows (the host side of each guest's clock-event device) --------------------------
DEV_SHUTDOWN, DEV_ONESHOT, DEV_PERIODIC = 0, 1, 2
D_MODE, D_NEXT_NS, D_PERIOD_NS, D_EXPIRIES, D_OVERRUNS, D_REJECTED = range(6)
N_DEV_FIELDS = 6

# --- host CPU rows -----------------------------------------------------------------------------
C_LO, C_HI = 0, 1  # this CPU's guests occupy heap slots [LO, HI)
C_N, C_ORDER = 2, 3  # armed timers; next arming number (the tie-break)
C_NOW_NS = 4  # simulated up to here
C_BUSY_UNTIL_NS = 5  # end of the I/O handler in progress
C_IO_NEXT, C_IO_END = 6, 7  # next and end index into this CPU's I/O arrivals
C_WAKEUPS, C_EXPIRIES = 8, 9  # timer wake-ups, timers expired (= injections)
C_IO_IRQS, C_IO_BUSY_NS = 10, 11  # I/O interrupts handled, handler time
C_DELAYED, C_DELAY_NS = 12, 13  # timer wake-ups held up by a handler, and by how long
C_TRACE_N = 14  # wake-ups traced so far
N_CPU_FIELDS = 15


@dataclass
class FleetArrays:
    """Everything a fleet run holds, as arrays (memory: ``bytes_per_guest`` per guest)."""

    rows: Int64Array  # [guests, gm.N_FIELDS]: the guest kernels
    dev: Int64Array  # [guests, N_DEV_FIELDS]: their clock-event devices, host side
    heap_exp: Int64Array  # [guests]: per-CPU heaps, CPU c in slots [LO, HI)
    heap_seq: Int64Array
    heap_ref: Int64Array  # guest index
    pos: Int64Array  # [guests]: slot of a guest's timer in its CPU's heap, -1: not armed
    cpu: Int64Array  # [cpus, N_CPU_FIELDS]
    io_t_ns: Int64Array  # I/O arrival times, grouped by CPU, sorted within each
    io_handler_ns: Int64Array
    timer_period_ns: Int64Array  # [gm.N_TIMERS]
    trace_ns: Int64Array  # [cpus, capacity]: first wake-up times (capacity 0: no trace)
    trace_count: Int64Array  # [cpus, capacity]: timers each of them expired
    period_ns: int
    slop_ns: int
    interval_ns: int

    @property
    def now_ns(self) -> int:
        """How far every CPU has been simulated."""
        return int(self.cpu[:, C_NOW_NS].min())


BYTES_PER_GUEST = 8 * (gm.N_FIELDS + N_DEV_FIELDS + 4)


def _numba_cache_dir() -> Path:
    """Compiled code cached per content of everything it depends on: numba keys its cache
    on the decorated function's own file only, which would go stale when the shared policy,
    the guest model or the ABI constants change."""
    modules = (policy, gm, tickless.guest.abi)
    inputs = [Path(m.__file__).read_bytes() for m in modules if m.__file__]
    inputs += [Path(__file__).read_bytes(), numba.__version__.encode()]
    return cache_dir() / f"numba-{fingerprint('numba', inputs)}"


@contextlib.contextmanager
def _cache_in(path: Path) -> Iterator[None]:
    """Point numba's cache at ``path`` while our functions are decorated (numba picks the
    cache location then), and leave the setting as it was for everyone else."""
    saved = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = str(path)
    try:
        yield
    finally:
        numba.config.CACHE_DIR = saved


with _cache_in(_numba_cache_dir()):

    @numba.njit(cache=True)  # type: ignore[misc]
    def _set_next_event(
        dev: Int64Array,
        exp: Int64Array,
        seq: Int64Array,
        ref: Int64Array,
        pos: Int64Array,
        n: int,
        order: int,
        g: int,
        delta_ns: int,
        now_ns: int,
    ) -> tuple[int, int]:
        """ClockEventDevice.set_next_event(delta) at ``now_ns`` on one CPU's heap (rate 1:
        host ticks are guest ns); TimerQueue.arm re-keys an armed timer, else pushes.
        Returns the heap's new (n, next arming number)."""
        if policy.check_delta(delta_ns) != 0:
            dev[g, D_REJECTED] += 1
            return n, order
        deadline_ns = policy.oneshot_deadline_ns(now_ns, delta_ns)
        dev[g, D_MODE] = DEV_ONESHOT
        dev[g, D_NEXT_NS] = deadline_ns
        if pos[g] >= 0:
            policy.heap_rekey(exp, seq, ref, pos, n, pos[g], deadline_ns, order)
        else:
            n = policy.heap_push(exp, seq, ref, pos, n, deadline_ns, order, g)
        return n, order + 1

    @numba.njit(cache=True)  # type: ignore[misc]
    def _init(
        rows: Int64Array,
        dev: Int64Array,
        heap_exp: Int64Array,
        heap_seq: Int64Array,
        heap_ref: Int64Array,
        pos: Int64Array,
        cpu: Int64Array,
        cpu_of: Int64Array,
        period_ns: int,
    ) -> None:
        """Arm every guest's device as it stands at time 0 (a fleet in steady state): ticking
        guests on their tick grid, the others for their next timer, in guest order."""
        for g in range(rows.shape[0]):
            c = cpu_of[g]
            lo, hi = cpu[c, C_LO], cpu[c, C_HI]
            exp, seq, ref = heap_exp[lo:hi], heap_seq[lo:hi], heap_ref[lo:hi]
            n, order = cpu[c, C_N], cpu[c, C_ORDER]
            if gm.ticking(rows[g, gm.MODE], rows[g, gm.WORKLOAD]):
                # SET_PERIODIC issued one period before the first tick, in the past.
                first_ns = policy.oneshot_deadline_ns(rows[g, gm.ANCHOR] - period_ns, period_ns)
                dev[g, D_MODE] = DEV_PERIODIC
                dev[g, D_PERIOD_NS] = period_ns
                dev[g, D_NEXT_NS] = first_ns
                n = policy.heap_push(exp, seq, ref, pos, n, first_ns, order, g)
                order += 1
            else:
                delta_ns = gm.next_delta_ns(rows, g, 0, period_ns)
                if delta_ns:
                    n, order = _set_next_event(dev, exp, seq, ref, pos, n, order, g, delta_ns, 0)
            cpu[c, C_N], cpu[c, C_ORDER] = n, order

    @numba.njit(cache=True)  # type: ignore[misc]
    def _run_cpu(
        c: int,
        t_end_ns: int,
        rows: Int64Array,
        dev: Int64Array,
        heap_exp: Int64Array,
        heap_seq: Int64Array,
        heap_ref: Int64Array,
        pos: Int64Array,
        cpu: Int64Array,
        io_t_ns: Int64Array,
        io_handler_ns: Int64Array,
        timer_period_ns: Int64Array,
        period_ns: int,
        slop_ns: int,
        interval_ns: int,
        trace_ns: Int64Array,
        trace_count: Int64Array,
    ) -> None:
        """Host CPU ``c`` from where it stands to ``t_end_ns`` (every wake-up due by then)."""
        lo, hi = cpu[c, C_LO], cpu[c, C_HI]
        exp, seq, ref = heap_exp[lo:hi], heap_seq[lo:hi], heap_ref[lo:hi]
        n, order = cpu[c, C_N], cpu[c, C_ORDER]
        busy_until = cpu[c, C_BUSY_UNTIL_NS]
        io_i, io_end = cpu[c, C_IO_NEXT], cpu[c, C_IO_END]
        wakeups = expiries = io_irqs = io_busy = delayed = delay_ns = 0
        while True:
            wake = policy.slop_wakeup(exp, n, slop_ns) if n > 0 else gm.NEVER
            if io_i < io_end and io_t_ns[io_i] <= wake and io_t_ns[io_i] <= t_end_ns:
                start = max(io_t_ns[io_i], busy_until)
                busy_until = start + io_handler_ns[io_i]
                io_busy += io_handler_ns[io_i]
                io_irqs += 1
                io_i += 1
                continue
            if wake > t_end_ns:
                break
            now = wake
            if busy_until > now:
                delayed += 1
                delay_ns += busy_until - now
                now = busy_until
            if cpu[c, C_TRACE_N] < trace_ns.shape[1]:
                trace_ns[c, cpu[c, C_TRACE_N]] = now
                trace_count[c, cpu[c, C_TRACE_N]] = 0
            wakeups += 1
            while n > 0 and exp[0] <= now:
                g = ref[0]
                if cpu[c, C_TRACE_N] < trace_ns.shape[1]:
                    trace_count[c, cpu[c, C_TRACE_N]] += 1
                expiries += 1
                dev[g, D_EXPIRIES] += 1
                if dev[g, D_MODE] == DEV_PERIODIC:
                    nxt, missed = policy.periodic_next_ns(dev[g, D_NEXT_NS], dev[g, D_PERIOD_NS], now)
                    dev[g, D_OVERRUNS] += missed
                    dev[g, D_NEXT_NS] = nxt
                    policy.heap_rekey(exp, seq, ref, pos, n, 0, nxt, order)
                    order += 1
                else:
                    dev[g, D_MODE] = DEV_SHUTDOWN
                    dev[g, D_NEXT_NS] = gm.NEVER
                    n = policy.heap_remove(exp, seq, ref, pos, n, 0)
                    pos[g] = -1
                # The injection: the guest takes its interrupt and may program a one-shot.
                delta_ns = gm.on_timer_irq(rows, g, now, period_ns, timer_period_ns, interval_ns)
                if delta_ns:
                    n, order = _set_next_event(
                        dev, exp, seq, ref, pos, n, order, g, delta_ns, now
                    )
            if cpu[c, C_TRACE_N] < trace_ns.shape[1]:
                cpu[c, C_TRACE_N] += 1
        cpu[c, C_N], cpu[c, C_ORDER] = n, order
        cpu[c, C_NOW_NS] = max(cpu[c, C_NOW_NS], t_end_ns)
        cpu[c, C_BUSY_UNTIL_NS] = busy_until
        cpu[c, C_IO_NEXT] = io_i
        cpu[c, C_WAKEUPS] += wakeups
        cpu[c, C_EXPIRIES] += expiries
        cpu[c, C_IO_IRQS] += io_irqs
        cpu[c, C_IO_BUSY_NS] += io_busy
        cpu[c, C_DELAYED] += delayed
        cpu[c, C_DELAY_NS] += delay_ns

    @numba.njit(cache=True, parallel=True)  # type: ignore[misc]
    def _run_all(
        t_end_ns: int,
        rows: Int64Array,
        dev: Int64Array,
        heap_exp: Int64Array,
        heap_seq: Int64Array,
        heap_ref: Int64Array,
        pos: Int64Array,
        cpu: Int64Array,
        io_t_ns: Int64Array,
        io_handler_ns: Int64Array,
        timer_period_ns: Int64Array,
        period_ns: int,
        slop_ns: int,
        interval_ns: int,
        trace_ns: Int64Array,
        trace_count: Int64Array,
    ) -> None:
        for c in numba.prange(cpu.shape[0]):
            _run_cpu(
                c,
                t_end_ns,
                rows,
                dev,
                heap_exp,
                heap_seq,
                heap_ref,
                pos,
                cpu,
                io_t_ns,
                io_handler_ns,
                timer_period_ns,
                period_ns,
                slop_ns,
                interval_ns,
                trace_ns,
                trace_count,
            )


def init_arrays(a: FleetArrays, cpu_of: Int64Array) -> None:
    """Arm the fleet's devices at time 0 (``rows`` already hold the guests' initial state)."""
    _init(
        a.rows,
        a.dev,
        a.heap_exp,
        a.heap_seq,
        a.heap_ref,
        a.pos,
        a.cpu,
        cpu_of,
        a.period_ns,
    )


def run_until(a: FleetArrays, t_end_ns: int) -> None:
    """Simulate every CPU up to ``t_end_ns`` (inclusive); resumable, chunking-invariant."""
    _run_all(
        t_end_ns,
        a.rows,
        a.dev,
        a.heap_exp,
        a.heap_seq,
        a.heap_ref,
        a.pos,
        a.cpu,
        a.io_t_ns,
        a.io_handler_ns,
        a.timer_period_ns,
        a.period_ns,
        a.slop_ns,
        a.interval_ns,
        a.trace_ns,
        a.trace_count,
    )


def compiled(fn: Callable[..., Any]) -> Any:
    """A shared policy or guest-model function compiled for direct calls from Python."""
    if fn not in SHARED_POLICY + GUEST_MODEL:
        raise ValueError(f"{fn.__name__} is not a shared simulator function")
    return numba.njit(fn)


def warm_up(make: Callable[[], tuple[FleetArrays, Int64Array]]) -> float:
    """Compile (or load from cache) the engine on a tiny fleet; returns the seconds it took,
    so that events/s measure simulation and not compilation."""
    t0 = time.perf_counter()
    arrays, cpu_of = make()
    init_arrays(arrays, cpu_of)
    run_until(arrays, 1)
    return time.perf_counter() - t0
