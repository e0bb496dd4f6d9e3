"""The paper's Table 1, simulated row by row, beside the paper's, fitted or predicted.

Of the 56 rows, 8 are fitted (each platform's idle 50 µs row, and Linux's heavy-IO 50 µs
row for the global disk-handler cost, see ``tickless.sim.platforms``); the other 48 are
predictions, and the error summary is over those only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tickless.axes import Backend, Load, TimerPath
from tickless.results.paper import PAPER_EVENTS, PAPER_IO_RATE_PER_S, PaperRow, paper_rows
from tickless.results.spec import MeasureSpec
from tickless.results.stats import IntervalStats
from tickless.sim.interference import HandlerCost, fit_handler_cost
from tickless.sim.measure import simulate
from tickless.sim.platforms import (
    HANDLER_FIT_PLATFORM,
    builtin_profiles,
    handler_fit_row,
    is_fitted_row,
)
from tickless.sim.profile import PlatformProfile

__all__ = [
    "ErrorSummary",
    "Table1Row",
    "calibrate_bare_handler",
    "simulate_table1",
    "summarize_errors",
    "table1_to_json",
]


@dataclass(frozen=True)
class Table1Row:
    """One paper row and the simulator's run of the same setting."""

    paper: PaperRow
    sim: IntervalStats
    fitted: bool

    @property
    def status(self) -> str:
        return "fitted" if self.fitted else "predicted"

    @property
    def mean_error_us(self) -> float:
        return self.sim.mean_ns / 1000 - self.paper.mean_us

    @property
    def mean_error_pct(self) -> float:
        return 100 * self.mean_error_us / self.paper.mean_us

    @property
    def sd_ratio(self) -> float:
        """Simulated sd over the paper's: 1 is exact, 2 twice too wide."""
        return self.sim.sd_ns / 1000 / self.paper.sd_us

    @property
    def label(self) -> str:
        p = self.paper
        return f"{p.platform} {p.load} {p.interval_us} us"


@dataclass(frozen=True)
class ErrorSummary:
    """Prediction error over a group of rows (|error of the mean| in % of the paper's mean)."""

    group: str
    rows: int
    median_abs_pct: float
    max_abs_pct: float
    worst: str
    within_10pct: int
    median_sd_ratio: float
    sd_within_2x: int


def simulate_table1(
    count: int = PAPER_EVENTS,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    profiles: Mapping[str, PlatformProfile] | None = None,
) -> list[Table1Row]:
    """Every paper row on its platform's profile (the same seed for all: common numbers)."""
    profiles = builtin_profiles() if profiles is None else profiles
    rows = []
    for i, paper in enumerate(paper_rows(), start=1):
        spec = MeasureSpec(
            timer=TimerPath.LGUEST,
            interval_ns=paper.interval_us * 1000,
            count=count,
            loads=frozenset({Load(paper.load)}),
            backend=Backend.SIM,
            platform=paper.platform,
            seed=seed,
        )
        record = simulate(spec, profiles[paper.platform])
        rows.append(Table1Row(paper=paper, sim=record.stats, fitted=is_fitted_row(paper)))
        if progress is not None:
            progress(i)
    return rows


def _summary(group: str, rows: list[Table1Row]) -> ErrorSummary:
    errors = [abs(r.mean_error_pct) for r in rows]
    worst = max(rows, key=lambda r: abs(r.mean_error_pct))
    ratios = [r.sd_ratio for r in rows]
    return ErrorSummary(
        group=group,
        rows=len(rows),
        median_abs_pct=statistics.median(errors),
        max_abs_pct=max(errors),
        worst=worst.label,
        within_10pct=sum(e <= 10 for e in errors),
        median_sd_ratio=statistics.median(ratios),
        sd_within_2x=sum(0.5 <= q <= 2 for q in ratios),
    )


def summarize_errors(rows: list[Table1Row]) -> list[ErrorSummary]:
    """Fitted rows (a check of the simulator), then predicted idle and predicted io rows."""
    groups = (
        ("fitted", [r for r in rows if r.fitted]),
        ("predicted idle", [r for r in rows if not r.fitted and r.paper.load == "idle"]),
        ("predicted io", [r for r in rows if not r.fitted and r.paper.load == "io"]),
    )
    return [_summary(name, members) for name, members in groups if members]


def table1_to_json(rows: list[Table1Row], count: int, seed: int) -> dict[str, Any]:
    """The ``--json`` payload: every row (µs, as the paper) and the summaries."""

    def stats_us(s: IntervalStats) -> dict[str, Any]:
        return {
            "mean_us": s.mean_ns / 1000,
            "sd_us": s.sd_ns / 1000,
            "ci99_us": [s.ci99_low_ns / 1000, s.ci99_high_ns / 1000],
        }

    return {
        "kind": "sim-table1",
        "version": 1,
        "count": count,
        "seed": seed,
        "rows": [
            {
                "interval_us": r.paper.interval_us,
                "load": r.paper.load,
                "platform": r.paper.platform,
                "status": r.status,
                "paper": {
                    "mean_us": r.paper.mean_us,
                    "sd_us": r.paper.sd_us,
                    "ci_us": [r.paper.ci99_low_us, r.paper.ci99_high_us],
                },
                "sim": stats_us(r.sim),
                "mean_error_us": r.mean_error_us,
                "mean_error_pct": r.mean_error_pct,
                "sd_ratio": r.sd_ratio,
            }
            for r in rows
        ],
        "summary": [vars(s) for s in summarize_errors(rows)],
    }


def calibrate_bare_handler(count: int = 200_000, iterations: int = 4, seed: int = 0) -> HandlerCost:
    """Fit the bare disk-handler cost on the Linux heavy-IO 50 µs row, by simulation.

    The analytic moments (``interference_moments``) ignore queueing and long intervals, so
    the simulator reproduces the row only roughly from them. Each round fits the analytic
    model to a corrected target, simulates ``count`` events, and scales the target by
    (wanted / simulated), for the mean and the variance the interrupts add.
    """
    row, delivery = handler_fit_row()
    profile = builtin_profiles()[HANDLER_FIT_PLATFORM]
    step = row.interval_us * 1000 + delivery.mean_ns
    want_mean = row.mean_us * 1000 - step
    want_var = (row.sd_us * 1000) ** 2 - delivery.sd_ns**2
    goal_mean, goal_var = want_mean, want_var
    spec = MeasureSpec(
        timer=TimerPath.LGUEST,
        interval_ns=row.interval_us * 1000,
        count=count,
        loads=frozenset({Load.IO}),
        backend=Backend.SIM,
        platform=HANDLER_FIT_PLATFORM,
        seed=seed,
    )
    handler = fit_handler_cost(
        step_ns=step,
        extra_mean_ns=goal_mean,
        extra_var_ns2=goal_var,
        rate_per_s=PAPER_IO_RATE_PER_S,
    )
    for _ in range(iterations):
        stats = simulate(spec, profile, handler=handler).stats
        got_mean = stats.mean_ns - step
        got_var = max(stats.sd_ns**2 - delivery.sd_ns**2, 1.0)
        if math.isclose(got_mean, want_mean, rel_tol=2e-3) and math.isclose(
            got_var, want_var, rel_tol=4e-3
        ):
            break
        goal_mean *= want_mean / got_mean
        goal_var *= want_var / got_var
        handler = fit_handler_cost(
            step_ns=step,
            extra_mean_ns=goal_mean,
            extra_var_ns2=goal_var,
            rate_per_s=PAPER_IO_RATE_PER_S,
        )
    return handler
