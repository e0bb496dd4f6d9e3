"""PNG figures of one result record, in the style of Adamczyk & Chydzinski (2015).

Two figures per run: the paper's (measured interval minus the expected interval d against the
measurement number, as points) and a latency histogram with a log-scaled count axis, so rare
late outliers stay visible next to thousands of on-time events.

We draw on ``matplotlib.figure.Figure`` with an explicit ``FigureCanvasAgg`` and never import
pyplot: no global backend switch and no figure registry, so this is safe inside other programs.
PNGs are written without the "Software" text chunk and carry no timestamp, so the same record
gives the same bytes (within one matplotlib installation).
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tickless.atomicfile import write_bytes_atomic
from tickless.results.schema import ResultRecord
from tickless.results.stats import histogram
from tickless.units import format_duration_ns

__all__ = [
    "FIGURE_DPI",
    "FIGURE_SIZE_IN",
    "difference_png",
    "figure_stem",
    "latency_histogram_png",
    "record_figures",
    "record_title",
    "write_bytes_atomic",
    "write_record_figures",
]

FIGURE_SIZE_IN = (8.0, 4.5)
FIGURE_DPI = 100  # 800 x 450 px: readable in a browser, small enough to embed a dozen
# No "Software" chunk: it names the matplotlib version, the only non-content metadata Agg writes.
_PNG_METADATA: dict[str, str | None] = {"Software": None}
_NS_AXIS_LIMIT_NS = 2_000  # differences all within ±2 µs read better in ns, as the paper's
_HISTOGRAM_TARGET_BINS = 100
_MIN_HISTOGRAM_SPAN_NS = 1_000  # a constant sample still gets bins of a sensible width
_POINT_COLOR = "#1f4e9a"
_BAR_COLOR = "#c0504d"


def record_title(record: ResultRecord) -> str:
    """One line naming what was measured; shared by figure titles and the HTML report."""
    platform = record.platform if record.platform is not None else "real"  # null = a real run
    return (
        f"timer {record.path_label} · backend {record.backend} · platform {platform} · "
        f"load {record.load} · d = {format_duration_ns(record.interval_ns)}"
    )


def _unit_for(values_ns: npt.NDArray[np.float64]) -> tuple[str, float]:
    """(label, ns per unit): ns when every value is within a couple of µs, else µs."""
    if values_ns.size and float(np.max(np.abs(values_ns))) < _NS_AXIS_LIMIT_NS:
        return "ns", 1.0
    return "µs", 1_000.0


def _new_figure() -> Figure:
    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas: Agg rendering without pyplot
    return fig


def _png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=_PNG_METADATA)  # drawn by the figure's Agg canvas
    return buf.getvalue()


def _no_samples(fig: Figure, title: str) -> None:
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=9)
    ax.text(0.5, 0.5, "no raw samples in this record", ha="center", va="center")
    ax.set_axis_off()


def difference_png(record: ResultRecord) -> bytes:
    """The paper's figure: measured interval minus d for each measurement, with a line at 0."""
    fig = _new_figure()
    expected = format_duration_ns(record.interval_ns)
    title = f"Measured interval minus its expected value {expected}\n{record_title(record)}"
    diff_ns = np.asarray(record.intervals_ns, dtype=np.float64) - record.interval_ns
    if diff_ns.size == 0:
        _no_samples(fig, title)
        return _png_bytes(fig)
    unit, ns_per_unit = _unit_for(diff_ns)
    ax = fig.add_subplot()
    ax.axhline(0.0, color="black", linewidth=0.8, zorder=1)
    ax.plot(
        np.arange(diff_ns.size),
        diff_ns / ns_per_unit,
        linestyle="none",
        marker=".",
        markersize=2.5,
        color=_POINT_COLOR,
        zorder=2,
    )
    ax.set_xlim(0, max(diff_ns.size - 1, 1))
    ax.set_xlabel("Measurement number")
    ax.set_ylabel(f"Difference from expected value ({unit})")
    ax.set_title(title, fontsize=9)
    ax.grid(True, linewidth=0.3, alpha=0.6)
    return _png_bytes(fig)


def _nice_bin_ns(span_ns: float) -> float:
    """A 1-2-5 x 10^k ns bin width giving about ``_HISTOGRAM_TARGET_BINS`` bins over the span."""
    raw = max(span_ns, _MIN_HISTOGRAM_SPAN_NS) / _HISTOGRAM_TARGET_BINS
    decade = 10.0 ** math.floor(math.log10(raw))
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * decade >= raw:
            return max(step * decade, 1.0)
    return 10.0 * decade  # unreachable: 10 x decade >= raw by construction


def latency_histogram_png(record: ResultRecord) -> bytes:
    """Histogram of event lateness in µs, counts on a log axis; a line marks the deadline."""
    fig = _new_figure()
    title = f"Latency (lateness against the deadline)\n{record_title(record)}"
    late_ns = np.asarray(record.lateness_ns, dtype=np.float64)
    if late_ns.size == 0:
        _no_samples(fig, title)
        return _png_bytes(fig)
    bin_ns = _nice_bin_ns(float(np.max(late_ns) - np.min(late_ns)))
    edges_ns, counts = histogram(late_ns, bin_ns)
    ax = fig.add_subplot()
    ax.bar(
        edges_ns[:-1] / 1_000.0,
        counts,
        width=bin_ns / 1_000.0,
        align="edge",
        color=_BAR_COLOR,
        linewidth=0,
    )
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.7, top=max(float(np.max(counts)), 1.0) * 2.0)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(f"Lateness (µs), bins of {format_duration_ns(bin_ns)}")
    ax.set_ylabel("Events (log scale)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, axis="y", which="major", linewidth=0.3, alpha=0.6)
    return _png_bytes(fig)


def record_figures(record: ResultRecord) -> dict[str, bytes]:
    """Both figures of one record by kind ("difference", "latency"), in a stable order."""
    return {"difference": difference_png(record), "latency": latency_histogram_png(record)}


_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def figure_stem(record: ResultRecord, index: int) -> str:
    """A file-name stem unique per position in a report: "03-pv-kvm-50us-idle"."""
    d = record.interval_ns
    interval = f"{d // 1000}us" if d % 1000 == 0 else f"{d}ns"
    parts = (f"{index:02d}", record.timer, record.backend, interval, record.load)
    return "-".join(_UNSAFE_NAME_CHARS.sub("_", part).strip("._") or "_" for part in parts)


def write_record_figures(figures: dict[str, bytes], directory: Path, stem: str) -> list[Path]:
    """Write pre-rendered figures as ``<stem>-<kind>.png`` in ``directory``; return the paths."""
    directory = Path(directory)
    paths = []
    for kind, png in figures.items():
        path = directory / f"{stem}-{kind}.png"
        write_bytes_atomic(path, png)
        paths.append(path)
    return paths
