"""The simulator's discrete-event engine, as Python sees it: arm a fleet and run it in
chunks of virtual time.

The work is done by the numba kernels of ``tickless.sim.kernels`` on the struct of arrays
of ``tickless.sim.layout``. Host CPUs do not interact (each has its own timer queue, as
Linux's per-CPU hrtimer bases and Xen's per-CPU timer heaps do), so they run in parallel
(``prange``) and the result does not depend on the number of threads. A run is cut into
chunks of virtual time (``run_until``) so that Python can show progress and take Ctrl-C
between them; the cut points never change the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tickless.sim import kernels
from tickless.sim.layout import FleetArrays, Int64Array


def init_arrays(a: FleetArrays, cpu_of: Int64Array) -> None:
    """Arm the fleet's devices at time 0 (``rows`` already hold the guests' initial state)."""
    kernels.init_devices(
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
    kernels.run_all(
        t_end_ns,
        a.rows,
        a.dev,
        a.heap_exp,
        a.heap_seq,
        a.heap_ref,
        a.run_exp,
        a.run_seq,
        a.run_ref,
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


def warm_up(make: Callable[[], tuple[FleetArrays, Int64Array]]) -> float:
    """Compile (or load from cache) the engine on a tiny fleet; returns the seconds it took,
    so that events/s measure simulation and not compilation."""
    t0 = time.perf_counter()
    arrays, cpu_of = make()
    init_arrays(arrays, cpu_of)
    run_until(arrays, 1)
    return time.perf_counter() - t0
