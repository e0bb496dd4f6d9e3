"""Fit a fleet cost model (``tickless.sim.cost``) to real ``tickless idle`` records.

Each record splits its steady-state CPU three ways, and each part gets its own least-squares
fit (non-negative: a cost is never below zero), a row per record, on counts the simulator
also produces, each with a fixed term (CPU per second whatever the counts):

* the host timer thread: ``per_wakeup x host timer wake-ups + fixed x window``;
* the vCPU threads: ``per_interrupt x interrupts + per_hypercall x hypercalls
  + baseline x guests x window + fixed x window``;
* the rest of the process (the VMM's loop and watchdog):
  ``per-guest x guests x window + fixed x window``.

The model's ``fixed_ns_per_s`` is the three fixed terms, its ``baseline_ns_per_s`` the two
per-guest ones. On this host an event costs more when events are sparse (10 idle guests:
~390 µs of vCPU thread per interrupt; 100: ~110 µs): a per-event cost alone cannot fit
both, a per-event cost plus a fixed one can.

A term the records cannot tell apart from the terms before it (its column, normalized, is
within ``SEPARABLE`` of their span: hypercalls that are exactly one per interrupt, or a
per-guest baseline when every guest takes the same interrupt rate) is not fitted: it is 0,
its cost stays in the terms kept, and the fit says so. So records of one fleet size cannot
split a cost into fixed and per-guest; two sizes can, and three or more are a true least
squares (two sizes give each part exactly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import nnls

from tickless.results.idle import IdleResult
from tickless.sim.cost import SECOND_NS, CostModel

SEPARABLE = 0.05  # a column's normalized distance from the kept ones' span, to be fitted

Matrix = npt.NDArray[np.float64]


class FitError(ValueError):
    """Records a cost model cannot be fitted on; one line."""


@dataclass(frozen=True)
class FitInput:
    """One record and where it came from (a file name, for the model's ``fit`` block)."""

    record: IdleResult
    label: str


def check_record(r: IdleResult, label: str) -> None:
    """Only a straight, complete, steady-state window can be fitted on."""
    if r.partial:
        raise FitError(f"{label}: an interrupted run (partial window)")
    if r.dilation != "1" or r.warped_s:
        raise FitError(f"{label}: a run with dilation or idle warp; fit on straight time")
    if r.duration_s <= 0 or len(r.per_guest) != r.guests or r.guests < 1:
        raise FitError(f"{label}: no steady window, or its guests are missing")


def _keep(columns: list[Matrix]) -> list[int]:
    """Indices of the columns kept, in order: each must stand ``SEPARABLE`` apart from the
    span of those kept before it (columns normalized)."""
    kept: list[int] = []
    basis: list[Matrix] = []
    for i, col in enumerate(columns):
        norm = float(np.linalg.norm(col))
        if norm == 0:
            continue
        v = col / norm
        for b in basis:
            v = v - float(v @ b) * b
        rest = float(np.linalg.norm(v))
        if rest > SEPARABLE:
            kept.append(i)
            basis.append(v / rest)
    return kept


def _solve(
    names: Sequence[str], columns: list[Matrix], y: Matrix, folded: list[str]
) -> dict[str, float]:
    """Non-negative least squares on the separable columns; the others are 0 (and named in
    ``folded``)."""
    kept = _keep(columns)
    for i, n in enumerate(names):
        if i not in kept:
            why = "not separable from the terms before it" if columns[i].any() else "never seen"
            folded.append(f"{n}: {why} in these runs: 0, its cost is in the terms kept")
    out = dict.fromkeys(names, 0.0)
    if not kept:
        return out
    a = np.column_stack([columns[i] for i in kept])
    scale = np.linalg.norm(a, axis=0)
    coef, _ = nnls(a / scale, y)
    for i, c in zip(kept, coef / scale, strict=True):
        out[names[i]] = float(c)
    return out


def _summary(item: FitInput) -> dict[str, Any]:
    r = item.record
    t = r.duration_s
    return {
        "file": item.label,
        "guests": r.guests,
        "mode": r.mode,
        "window_s": round(t, 3),
        "host_wakeups_per_s": round(r.host_timer_wakeups / t, 2),
        "guest_interrupts_per_s": round(sum(g.timer_interrupts for g in r.per_guest) / t, 2),
        "hypercalls_per_s": round(sum(g.hypercalls for g in r.per_guest) / t, 2),
        "steady_cpu_percent_of_core": round(r.cpu_percent_of_core, 3),
    }


def predicted_cpu_s(model: CostModel, r: IdleResult) -> float:
    """The model's CPU for a record's own counts (what the fit saw; in-sample)."""
    t_ns = r.duration_s * SECOND_NS
    irqs = np.array([g.timer_interrupts for g in r.per_guest], dtype=np.int64)
    calls = np.array([g.hypercalls for g in r.per_guest], dtype=np.int64)
    guests_ns = float(model.guest_cpu_ns(irqs, calls, t_ns).sum())
    total = guests_ns + model.wakeup_cpu_ns(r.host_timer_wakeups) + model.fixed_cpu_ns(t_ns)
    return total / SECOND_NS


def fit_cost_model(inputs: Sequence[FitInput], name: str) -> CostModel:
    """The cost model of these records (see the module docstring)."""
    if not inputs:
        raise FitError("no records to fit")
    for item in inputs:
        check_record(item.record, item.label)
    recs = [i.record for i in inputs]
    ns = float(SECOND_NS)
    folded: list[str] = []

    def column(values: Sequence[float]) -> Matrix:
        return np.array(values, dtype=float)

    window = column([r.duration_s for r in recs])
    guest_s = column([r.guests * r.duration_s for r in recs])
    timer = _solve(
        ["per_wakeup_ns", "timer_fixed_ns_per_s"],
        [column([r.host_timer_wakeups for r in recs]), window],
        column([r.timer_thread_cpu_s * ns for r in recs]),
        folded,
    )
    vcpu_s = [sum(g.vcpu_cpu_s for g in r.per_guest) for r in recs]
    vcpu = _solve(
        ["per_interrupt_ns", "per_hypercall_ns", "vcpu_baseline_ns_per_s", "vcpu_fixed_ns_per_s"],
        [
            column([sum(g.timer_interrupts for g in r.per_guest) for r in recs]),
            column([sum(g.hypercalls for g in r.per_guest) for r in recs]),
            guest_s,
            window,
        ],
        column([v * ns for v in vcpu_s]),
        folded,
    )
    rest = [r.process_cpu_s - r.timer_thread_cpu_s - v for r, v in zip(recs, vcpu_s, strict=True)]
    vmm = _solve(
        ["vmm_per_guest_ns_per_s", "vmm_fixed_ns_per_s"],
        [guest_s, window],
        column([x * ns for x in rest]),
        folded,
    )

    sizes = sorted({r.guests for r in recs})
    model = CostModel(
        name=name,
        per_interrupt_ns=vcpu["per_interrupt_ns"],
        per_hypercall_ns=vcpu["per_hypercall_ns"],
        per_wakeup_ns=timer["per_wakeup_ns"],
        baseline_ns_per_s=vcpu["vcpu_baseline_ns_per_s"] + vmm["vmm_per_guest_ns_per_s"],
        fixed_ns_per_s=timer["timer_fixed_ns_per_s"]
        + vcpu["vcpu_fixed_ns_per_s"]
        + vmm["vmm_fixed_ns_per_s"],
        source=f"fitted by tickless sim fit to {len(recs)} real tickless idle run(s) of "
        f"{', '.join(map(str, sizes))} guests, steady state (see fit.inputs)",
    )
    residuals = [
        {
            "file": item.label,
            "measured_cpu_s": round(item.record.process_cpu_s, 6),
            "model_cpu_s": round(predicted_cpu_s(model, item.record), 6),
        }
        for item in inputs
    ]
    fit = {
        "method": "non-negative least squares per thread class (tickless.sim.cost_fit)",
        "parts": {**timer, **vcpu, **vmm},
        "notes": folded,
        "inputs": [_summary(i) for i in inputs],
        "in_sample": residuals,
    }
    return replace(model, fit=fit)
