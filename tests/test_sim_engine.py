"""The discrete-event core: it compiles the shared policy functions themselves, and its
result depends on the spec and the seed only, not on how the run is cut into chunks, on
the O(1) sorted-run fast path, or on that path running out of room."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tickless.sim import engine, fleet, kernels, layout
from tickless.sim import guest_model as gm
from tickless.timers import policy

SPEC = fleet.FleetSpec(
    guests=24,
    mode="periodic,nohz-idle,nohz-full",
    workload="idle,cpu,measure,idle",
    hz=1000,
    duration_ns=200_000_000,
    cpus=2,
    slop_ns=40_000,
    housekeeping_ns=(30_000_000, 70_000_000),
    measure_count=100,
    measure_interval_ns=300_000,
    io=(fleet.IoSource(2000, 20_000, 0), fleet.IoSource(50, 1_500_000, 1)),
    seed=5,
)


def _run(
    spec: fleet.FleetSpec, cuts: list[int], sorted_runs: bool = True, run_slots: int | None = None
) -> layout.FleetArrays:
    arrays, cpu_of = fleet.build(spec, trace_capacity=50_000, sorted_runs=sorted_runs)
    if run_slots is not None:  # shrink every CPU's sorted run to force the heap fallback
        arrays.cpu[:, layout.C_FHI] = arrays.cpu[:, layout.C_FLO] + run_slots
    engine.init_arrays(arrays, cpu_of)
    for t in cuts:
        engine.run_until(arrays, t)
    return arrays


def _same(a: layout.FleetArrays, b: layout.FleetArrays) -> bool:
    """Same guests, devices, CPU counters and wake-up traces (queue layout may differ)."""
    counters = [layout.C_NOW_NS, layout.C_WAKEUPS, layout.C_EXPIRIES, layout.C_IO_IRQS]
    counters += [layout.C_IO_BUSY_NS, layout.C_DELAYED, layout.C_DELAY_NS, layout.C_TRACE_N]
    return (
        np.array_equal(a.rows, b.rows)
        and np.array_equal(a.dev, b.dev)
        and np.array_equal(a.cpu[:, counters], b.cpu[:, counters])
        and np.array_equal(a.trace_ns, b.trace_ns)
        and np.array_equal(a.trace_count, b.trace_count)
    )


def test_shared_functions_are_the_policy_objects() -> None:
    """The engine registers the very function objects the timer classes call."""
    names = [fn.__name__ for fn in kernels.SHARED_POLICY]
    assert all(
        getattr(policy, name) is fn for name, fn in zip(names, kernels.SHARED_POLICY, strict=True)
    )
    for name in ("slop_wakeup", "heap_push", "heap_remove", "hrtimer_forward", "check_delta"):
        assert name in names


@functools.cache
def _compiled(fn: Callable[..., Any]) -> Any:
    """``numba.njit`` of the very function object the kernels call."""
    assert fn in kernels.SHARED_POLICY + kernels.GUEST_MODEL
    return numba.njit(fn)


def _functions(module: types.ModuleType) -> dict[str, types.FunctionType]:
    return {
        name: fn
        for name, fn in vars(module).items()
        if inspect.isfunction(fn) and fn.__module__ == module.__name__
    }


def test_the_compiled_list_names_what_the_kernels_call() -> None:
    """SHARED_POLICY and GUEST_MODEL hold exactly the shared functions the kernels call,
    directly or through one another: none missing (numba could not compile the caller),
    none extra (the list would claim a sharing that does not happen)."""
    shared = _functions(policy) | _functions(gm)
    todo = [k.py_func.__code__ for k in (kernels.init_devices, kernels.run_cpu, kernels.run_all)]
    called: set[str] = set()
    while todo:
        code = todo.pop()
        todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        for name in set(code.co_names) & set(shared) - called:
            called.add(name)
            todo.append(shared[name].__code__)
    listed = {fn.__name__ for fn in kernels.SHARED_POLICY + kernels.GUEST_MODEL}
    assert listed == called


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=40),
    st.integers(0, 200_000),
    st.integers(-(10**9), 10**9),
    st.integers(1, 10**7),
    st.integers(0, 10**9),
)
def test_compiled_equals_python(
    expiries: list[int], slop: int, last: int, period: int, late: int
) -> None:
    """numba.njit of a policy function answers exactly as the function run by Python."""
    n = len(expiries)
    exp, seq, ref = (np.zeros(n, np.int64) for _ in range(3))
    pos = np.full(n, -1, np.int64)
    push = _compiled(policy.heap_push)
    for i, e in enumerate(expiries):
        assert push(exp, seq, ref, pos, i, e, i, i) == i + 1
    py_exp, py_seq, py_ref = [0] * n, [0] * n, [0] * n
    py_pos: dict[int, int] = {}
    for i, e in enumerate(expiries):
        policy.heap_push(py_exp, py_seq, py_ref, py_pos, i, e, i, i)
    assert exp.tolist() == py_exp and ref.tolist() == py_ref
    assert _compiled(policy.slop_wakeup)(exp, n, slop) == policy.slop_wakeup(py_exp, n, slop)
    now = last + late
    assert _compiled(policy.hrtimer_forward)(last, now, period) == (
        policy.hrtimer_forward(last, now, period)
    )
    delta = late - 10**8
    assert _compiled(policy.check_delta)(delta) == policy.check_delta(delta)


def test_chunking_does_not_change_the_result() -> None:
    """One call to the end, or many cuts (even mid-burst, at odd times): same run."""
    whole = _run(SPEC, [SPEC.duration_ns])
    cuts = [*range(1, SPEC.duration_ns, 7_777_777), SPEC.duration_ns]
    assert _same(whole, _run(SPEC, cuts))
    assert whole.cpu[:, layout.C_EXPIRIES].sum() > 1000


def test_sorted_runs_change_nothing_but_speed() -> None:
    """The O(1) fast path, off, on, or too small to hold the timers: the same run."""
    fast = _run(SPEC, [SPEC.duration_ns])
    assert _same(fast, _run(SPEC, [SPEC.duration_ns], sorted_runs=False))
    assert _same(fast, _run(SPEC, [SPEC.duration_ns], run_slots=2))


def test_seed_decides() -> None:
    """A seed fixes the run; another seed draws other phases and arrivals."""
    again = _run(SPEC, [SPEC.duration_ns])
    assert _same(_run(SPEC, [SPEC.duration_ns]), again)
    other = dataclasses.replace(SPEC, seed=6)
    assert not np.array_equal(_run(other, [SPEC.duration_ns]).trace_ns, again.trace_ns)
