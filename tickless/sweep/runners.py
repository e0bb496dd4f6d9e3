"""Running one point where a Dask worker runs it, and turning its record into one row.

A point arrives as its command's name and its spec (the dataclass the command itself
builds), so a worker needs no command line: it calls the same entry point the command
calls. The record is flattened into scalar columns; per-sample and per-guest lists stay out
of the table (run the command itself with ``--json`` for them).
"""

from __future__ import annotations

import functools
import math
import signal
import threading
import time
from collections.abc import Callable
from enum import Enum
from fractions import Fraction
from pathlib import Path
from typing import Any

__all__ = ["RUNNERS", "Scalar", "flatten", "run_point"]

Scalar = int | float | str | bool | None
SHORT_LIST = 4  # lists up to this long of scalars (a CI's two ends) become columns


def _run_measure(spec: Any) -> dict[str, Any]:
    from tickless.axes import Backend
    from tickless.backends import backend_for, measure
    from tickless.results.schema import to_json_dict

    if backend_for(spec) is not Backend.SIM:
        _make_vcpu_kicks_harmless()
    return to_json_dict(measure(spec))


def _run_idle(spec: Any) -> dict[str, Any]:
    from tickless.measure.idle import run_idle

    _make_vcpu_kicks_harmless()
    return run_idle(spec).to_json_dict()


@functools.cache
def _engine_compile_s() -> float:
    """Compile or load the fleet engine once per worker process, not once per point."""
    from tickless.sim.fleet import compile_engine

    return compile_engine()


def _run_sim_fleet(spec: Any) -> dict[str, Any]:
    from tickless.sim.fleet import run_fleet

    result, _ = run_fleet(spec, compile_s=_engine_compile_s())
    return result.to_json_dict()


RUNNERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "measure": _run_measure,
    "idle": _run_idle,
    "sim fleet": _run_sim_fleet,
}


def _make_vcpu_kicks_harmless() -> None:
    """The VMM stops a vCPU thread with a signal whose no-op handler only the main thread
    can install; a Dask task runs in a worker thread. Without the handler the signal's
    default action would kill the worker, so a point that cannot have one fails instead."""
    from tickless.vmm.vcpu_run import STOP_SIGNAL, install_stop_signal

    install_stop_signal()
    if signal.getsignal(STOP_SIGNAL) in (signal.SIG_DFL, None):
        where = threading.current_thread().name
        raise RuntimeError(
            f"no {signal.Signals(STOP_SIGNAL).name} handler in this process ({where}): "
            "the worker must run tickless.sweep.executor.StopSignalPlugin"
        )


def _scalar(value: Any) -> Scalar:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Enum):
        return _scalar(value.value)
    if isinstance(value, Fraction | Path):
        return str(value)
    return str(value)


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Scalar]:
    """Nested dicts as ``outer.inner`` columns, short lists of scalars as ``name.0``...,
    lists of text joined with "; ", longer lists (samples, per guest) left out."""
    row: dict[str, Scalar] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            row.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            if all(isinstance(v, str) for v in value):
                row[name] = "; ".join(value)
            elif len(value) <= SHORT_LIST and all(isinstance(v, int | float) for v in value):
                row.update({f"{name}.{i}": _scalar(v) for i, v in enumerate(value)})
        else:
            row[name] = _scalar(value)
    return row


def run_point(command: str, spec: Any) -> tuple[dict[str, Scalar], float]:
    """Run one point of ``command`` (a key of ``RUNNERS``): its flat record and wall seconds.
    Exceptions propagate: the executor records them as the point's error."""
    t0 = time.perf_counter()
    record = RUNNERS[command](spec)
    return flatten(record), time.perf_counter() - t0
