"""Figures of a sweep's table (``tickless sweep --out``): one line per combination of the
other swept settings, against the setting the question is about.

- fleets and idle runs: host timer wake-ups/s and host CPU against the number of guests;
- measurements: mean and p99 lateness against the interval, one line per timer path.

Drawn in the house style of ``tickless.report.figures`` (a ``Figure`` on Agg, no pyplot,
PNGs without a timestamp), from rows as ``tickless.sweep.store.read_rows`` gives them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

from tickless.report.figures import FIGURE_DPI, FIGURE_SIZE_IN
from tickless.units import format_duration_ns

__all__ = ["SweepFigure", "sweep_figures"]

Row = dict[str, Any]
_PNG_METADATA: dict[str, str | None] = {"Software": None}
_LOG_SPAN = 20.0  # an axis whose values span more than this factor is drawn on a log scale


@dataclass(frozen=True)
class SweepFigure:
    name: str  # file name stem
    x: str  # column
    y: str
    x_label: str
    y_label: str
    y_scale: float = 1.0  # column value * y_scale = the value drawn
    x_scale: float = 1.0


FIGURES = (
    SweepFigure("wakeups-vs-guests", "guests", "wakeups_per_s", "Guests", "Host timer wake-ups/s"),
    SweepFigure("cpu-vs-guests", "guests", "cpu_percent_of_core", "Guests",
                "Host CPU (% of a core)"),
    SweepFigure("lateness-vs-interval", "interval_ns", "lateness.mean_ns", "Interval d (µs)",
                "Mean lateness (µs)", 1e-3, 1e-3),
    SweepFigure("p99-lateness-vs-interval", "interval_ns", "lateness.p99_ns", "Interval d (µs)",
                "p99 lateness (µs)", 1e-3, 1e-3),
)  # fmt: skip


def _setting_text(name: str, value: Any) -> str:
    if name.endswith("_ns") and isinstance(value, int | float):
        return f"{name.removesuffix('_ns')}={format_duration_ns(value)}"
    return f"{name}={value}"


def _series(rows: Sequence[Row], fig: SweepFigure) -> dict[str, list[tuple[float, float]]]:
    """(x, y) points per combination of the other settings swept, sorted by x."""
    out: dict[str, list[tuple[float, float]]] = {}
    order: dict[str, str] = {}
    for row in rows:
        x, y = row.get(fig.x), row.get(fig.y)
        if row.get("sweep_status") != "ok" or not isinstance(x, int | float) or y is None:
            continue
        others = [n for n in str(row.get("sweep_swept") or "").split(",") if n and n != fig.x]
        label = " ".join(_setting_text(n, row.get(n)) for n in others) or fig.y
        out.setdefault(label, []).append((x * fig.x_scale, float(y) * fig.y_scale))
        order[label] = repr([(isinstance(row.get(n), str), row.get(n)) for n in others])
    return {label: sorted(out[label]) for label in sorted(out, key=order.__getitem__)}


def _log_worthy(values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and max(positive) / min(positive) > _LOG_SPAN


def _draw(fig: SweepFigure, series: dict[str, list[tuple[float, float]]], title: str) -> bytes:
    figure = Figure(figsize=FIGURE_SIZE_IN, dpi=FIGURE_DPI, layout="constrained")
    ax = figure.add_subplot()
    for label, points in series.items():
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", markersize=4, linewidth=1.2, label=label)
    all_x = [x for p in series.values() for x, _ in p]
    all_y = [y for p in series.values() for _, y in p]
    if _log_worthy(all_x):
        ax.set_xscale("log")
    if _log_worthy(all_y):
        ax.set_yscale("log")
    ax.set_xlabel(fig.x_label)
    ax.set_ylabel(fig.y_label)
    ax.set_title(title, fontsize=9)
    ax.grid(True, linewidth=0.3, alpha=0.6)
    if len(series) > 1:
        ax.legend(fontsize=7, ncols=2 if len(series) > 6 else 1)
    buf = io.BytesIO()
    figure.savefig(buf, format="png", metadata=_PNG_METADATA)
    return buf.getvalue()


def sweep_figures(rows: Sequence[Row], title: str) -> dict[str, bytes]:
    """name -> PNG for every figure the table has the columns for (at least two x values)."""
    out: dict[str, bytes] = {}
    for fig in FIGURES:
        series = _series(rows, fig)
        if len({x for points in series.values() for x, _ in points}) >= 2:
            out[fig.name] = _draw(fig, series, title)
    return out
