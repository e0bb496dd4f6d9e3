"""Summary statistics of timer intervals, computed the way Adamczyk & Chydzinski (2015) did.

The paper reports the mean interval, the *uncorrected* sample standard deviation (ddof=0) and a
"99%" confidence interval of the mean. We keep ddof=0 for the sd so our numbers sit beside theirs,
but compute a genuine 99% Student-t interval; ``implied_z`` shows what the paper's intervals
really are (about ±1.96·sd/√n, i.e. 95% normal intervals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from tickless.jsonfields import StrictReader

__all__ = [
    "IntervalStats",
    "LatenessStats",
    "histogram",
    "implied_z",
    "summarize",
    "summarize_lateness",
]

CI_LEVEL = 0.99
_MAX_HISTOGRAM_BINS = 1_000_000


@dataclass(frozen=True)
class IntervalStats:
    """Summary of measured intervals between consecutive timer events, all in ns."""

    count: int
    mean_ns: float
    sd_ns: float  # uncorrected (ddof=0), as in the paper
    ci99_low_ns: float  # Student-t 99% CI of the mean
    ci99_high_ns: float
    min_ns: float
    p50_ns: float
    p99_ns: float
    p999_ns: float
    max_ns: float


@dataclass(frozen=True)
class LatenessStats:
    """How late events fired relative to their deadline, in ns; negative means early."""

    mean_ns: float
    sd_ns: float  # uncorrected (ddof=0)
    p99_ns: float
    max_ns: float
    early_count: int  # events that fired before their deadline: a correctness failure


def _samples(values_ns: npt.ArrayLike, what: str) -> npt.NDArray[np.float64]:
    """Validate once here so every statistic below can assume a finite, non-empty 1-D array."""
    arr = np.asarray(values_ns, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D sequence, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"no {what}: cannot summarise an empty set of samples")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contain NaN or infinite values")
    return arr


def summarize(samples_ns: npt.ArrayLike) -> IntervalStats:
    """Mean, uncorrected sd, 99% t-interval of the mean and tail percentiles of intervals."""
    arr = _samples(samples_ns, "intervals")
    n = int(arr.size)
    mean = float(np.mean(arr))
    low, high = mean, mean
    if n >= 2:
        sem = float(np.std(arr, ddof=1)) / math.sqrt(n)
        if sem > 0:  # scipy returns NaN for a zero scale; a constant sample has a point CI
            t_low, t_high = sps.t.interval(CI_LEVEL, n - 1, loc=mean, scale=sem)
            low, high = float(t_low), float(t_high)
    p50, p99, p999 = (float(p) for p in np.percentile(arr, [50.0, 99.0, 99.9]))
    return IntervalStats(
        count=n,
        mean_ns=mean,
        sd_ns=float(np.std(arr, ddof=0)),
        ci99_low_ns=low,
        ci99_high_ns=high,
        min_ns=float(np.min(arr)),
        p50_ns=p50,
        p99_ns=p99,
        p999_ns=p999,
        max_ns=float(np.max(arr)),
    )


def summarize_lateness(lateness_ns: npt.ArrayLike) -> LatenessStats:
    """Summarise event lateness (actual minus deadline); counts early firings separately."""
    arr = _samples(lateness_ns, "lateness values")
    return LatenessStats(
        mean_ns=float(np.mean(arr)),
        sd_ns=float(np.std(arr, ddof=0)),
        p99_ns=float(np.percentile(arr, 99.0)),
        max_ns=float(np.max(arr)),
        early_count=int(np.count_nonzero(arr < 0)),
    )


def histogram(
    samples_ns: npt.ArrayLike, bin_ns: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Return (bin edges, counts) with edges on multiples of ``bin_ns``.

    Edges are aligned to multiples of the bin width, so histograms of different runs share bins
    and can be overlaid in one figure. Every bin is half-open [edge, next edge).
    """
    if not (math.isfinite(bin_ns) and bin_ns > 0):
        raise ValueError(f"histogram bin width must be a positive number of ns, got {bin_ns}")
    arr = _samples(samples_ns, "samples")
    lo, hi = float(np.min(arr)), float(np.max(arr))
    first = math.floor(lo / bin_ns)
    if first * bin_ns > lo:  # floating-point division can round up across an edge
        first -= 1
    n_bins = math.floor(hi / bin_ns) - first + 1
    if (first + n_bins) * bin_ns <= hi:  # keep the maximum strictly inside the last bin
        n_bins += 1
    if n_bins > _MAX_HISTOGRAM_BINS:
        raise ValueError(
            f"histogram would need {n_bins} bins of {bin_ns} ns; use a wider bin "
            f"(at most {_MAX_HISTOGRAM_BINS} bins)"
        )
    edges = (first + np.arange(n_bins + 1, dtype=np.float64)) * bin_ns
    counts, _ = np.histogram(arr, bins=edges)
    return edges, counts.astype(np.int64)


def implied_z(sd: float, n: int, low: float, high: float) -> float:
    """Half-width of a published CI in standard errors: 1.96 for a 95% normal interval.

    Lets us check what confidence a table's interval really has, whatever its label says.
    """
    if n < 1:
        raise ValueError(f"sample size must be at least 1, got {n}")
    if not sd > 0:
        raise ValueError(f"standard deviation must be positive, got {sd}")
    return (high - low) / 2 / (sd / math.sqrt(n))


def read_interval_stats(top: StrictReader) -> IntervalStats:
    """The interval statistics of an on-disk record (``results/schema.py``)."""
    ci = top.float_list("ci99_ns")
    if len(ci) != 2:
        raise top.fail("ci99_ns", f"must be a [low, high] pair, got {len(ci)} items")
    ci_low, ci_high = ci
    return IntervalStats(
        count=top.int_("count", minimum=1),
        mean_ns=top.float_("mean_ns"),
        sd_ns=top.float_("sd_ns"),
        ci99_low_ns=ci_low,
        ci99_high_ns=ci_high,
        min_ns=top.float_("min_ns"),
        p50_ns=top.float_("p50_ns"),
        p99_ns=top.float_("p99_ns"),
        p999_ns=top.float_("p999_ns"),
        max_ns=top.float_("max_ns"),
    )


def read_lateness(top: StrictReader) -> LatenessStats:
    """Its ``lateness`` object."""
    late = top.object_("lateness")
    lateness = LatenessStats(
        mean_ns=late.float_("mean_ns"),
        sd_ns=late.float_("sd_ns"),
        p99_ns=late.float_("p99_ns"),
        max_ns=late.float_("max_ns"),
        early_count=late.int_("early_count"),
    )
    late.check_no_extra()
    return lateness
