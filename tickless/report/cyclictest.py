"""Latency histograms as cyclictest prints them, so existing cyclictest tooling can read ours.

We follow the format of ``print_hist()`` in cyclictest from rt-tests 1.x (the 1.0 - 1.10
releases that have ``--histfile``; ``cyclictest -h N`` prints the same text to stdout):

    # Histogram
    000000 000012<TAB>000007          one line per 1 µs bucket 0..N-1: "%06d " then one
    ...                               "%06lu" count per thread, TAB-separated
    # Total: 000004490 000004500      " %09llu" per thread: events inside the histogram
    # Min Latencies: 00015 00015      " %05lu" per thread, µs
    # Avg Latencies: 00016 00016      integer µs, truncated
    # Max Latencies: 00025 00031
    # Histogram Overflows: 00010 00000    events with latency >= N µs
    # Histogram Overflow at cycle number:
    # Thread 0: 00017 00230 ...       0-based event indexes of the overflows, at most N listed,
    # Thread 1:                       then " # %05lu others" for the rest
    (a blank line)

rt-tests 2.0 moved histograms into a library and dropped the ``# Total:`` line; rteval and
most plotting scripts expect the 1.x text, hence that version. We print no ``-H`` (histofall)
sum column. One column per record stands in for cyclictest's one column per thread.

Latency is the record's ``lateness_ns``, truncated toward zero to whole µs as cyclictest's
``calcdiff()`` does. Only for choosing a bucket is it clamped at 0 from below (a never-early
timer never needs it); min/avg/max use the unclamped values, so an early event stays visible
there as a negative number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tickless.results.schema import ResultRecord

__all__ = [
    "CYCLICTEST_FORMAT",
    "DEFAULT_HISTOGRAM_US",
    "MAX_HISTOGRAM_US",
    "LatencyColumn",
    "cyclictest_histogram",
    "latency_column",
]

CYCLICTEST_FORMAT = "rt-tests 1.x cyclictest print_hist() (-h N / --histfile)"
DEFAULT_HISTOGRAM_US = 1000
MAX_HISTOGRAM_US = 1_000_000  # cyclictest's HIST_MAX
_NO_SAMPLES_MIN_US = 1_000_000  # cyclictest starts each thread's min here and prints it if unused


@dataclass(frozen=True)
class LatencyColumn:
    """One cyclictest thread column: bucket counts and the trailer values, all in µs."""

    buckets: tuple[int, ...]  # events per 1 µs bucket, len == histogram size
    overflows: int  # events at or above the histogram size
    overflow_events: tuple[int, ...]  # 0-based event indexes of the first overflows listed
    min_us: int
    avg_us: int
    max_us: int

    @property
    def total(self) -> int:
        """Events inside the histogram: what cyclictest's ``# Total:`` counts."""
        return sum(self.buckets)


def _trunc_div(a: int, b: int) -> int:
    """C integer division (toward zero), as cyclictest computes µs and the average."""
    q = abs(a) // b
    return q if a >= 0 else -q


def latency_column(lateness_ns: Sequence[int], histogram_us: int) -> LatencyColumn:
    """Bucket one run's lateness into ``histogram_us`` buckets of 1 µs, cyclictest-style."""
    if not 1 <= histogram_us <= MAX_HISTOGRAM_US:
        raise ValueError(f"histogram size must be 1..{MAX_HISTOGRAM_US} µs, got {histogram_us}")
    ns = np.asarray(lateness_ns, dtype=np.int64)
    if ns.size == 0:
        return LatencyColumn((0,) * histogram_us, 0, (), _NO_SAMPLES_MIN_US, 0, 0)
    us = np.sign(ns) * (np.abs(ns) // 1000)  # truncate toward zero
    bucket = np.maximum(us, 0)
    inside = bucket < histogram_us
    counts = np.bincount(bucket[inside], minlength=histogram_us)
    overflow_at = np.flatnonzero(~inside)
    return LatencyColumn(
        buckets=tuple(int(c) for c in counts),
        overflows=int(overflow_at.size),
        overflow_events=tuple(int(i) for i in overflow_at[:histogram_us]),
        min_us=int(us.min()),
        avg_us=_trunc_div(int(us.sum()), int(us.size)),
        max_us=int(us.max()),
    )


def _trailer(label: str, values: Sequence[int], width: int) -> str:
    return f"# {label}:" + "".join(f" {v:0{width}d}" for v in values)


def cyclictest_histogram(
    records: Sequence[ResultRecord], histogram_us: int = DEFAULT_HISTOGRAM_US
) -> str:
    """The histogram text of ``cyclictest -h histogram_us``, one column per record."""
    if not records:
        raise ValueError("no records: a cyclictest histogram needs at least one run")
    columns = [latency_column(r.lateness_ns, histogram_us) for r in records]
    lines = ["# Histogram"]
    for i in range(histogram_us):
        lines.append(f"{i:06d} " + "\t".join(f"{c.buckets[i]:06d}" for c in columns))
    lines.append(_trailer("Total", [c.total for c in columns], 9))
    lines.append(_trailer("Min Latencies", [c.min_us for c in columns], 5))
    lines.append(_trailer("Avg Latencies", [c.avg_us for c in columns], 5))
    lines.append(_trailer("Max Latencies", [c.max_us for c in columns], 5))
    lines.append(_trailer("Histogram Overflows", [c.overflows for c in columns], 5))
    lines.append("# Histogram Overflow at cycle number:")
    for j, c in enumerate(columns):
        line = f"# Thread {j}:" + "".join(f" {i:05d}" for i in c.overflow_events)
        if len(c.overflow_events) < c.overflows:
            line += f" # {c.overflows - len(c.overflow_events):05d} others"
        lines.append(line)
    lines.append("")  # cyclictest ends the block with an empty line
    return "\n".join(lines) + "\n"
