"""Synthetic result records for tests that need one without running a guest."""

from __future__ import annotations

from typing import Any

import numpy as np

from tickless.results.schema import HostCounts, ResultRecord
from tickless.results.stats import summarize, summarize_lateness


def record_from(intervals: list[int], lateness: list[int], /, **overrides: Any) -> ResultRecord:
    """A record of these raw samples; every other field has a plain default."""
    n = len(intervals)
    fields: dict[str, Any] = {
        "backend": "kvm",
        "timer": "pv",
        "mode": "tickless",
        "method": "relative",
        "hz": None,
        "interval_ns": 50_000,
        "stats": summarize(intervals),
        "lateness": summarize_lateness(lateness),
        "host": HostCounts(
            exits=n,
            hypercalls=0,
            injections=n,
            wakeups=n,
            timer_events=n,
            duration_s=1.0,
            cpu_s=0.5,
        ),
        "intervals_ns": intervals,
        "lateness_ns": lateness,
    }
    fields.update(overrides)
    return ResultRecord(**fields)


def kvm_like_record(
    n: int = 300,
    seed: int = 1,
    interval_ns: int = 50_000,
    scale_ns: float = 800.0,
    **overrides: Any,
) -> ResultRecord:
    """A KVM-like run: ~15 µs late with a gamma tail, never early."""
    rng = np.random.default_rng(seed)
    lateness = (15_000 + rng.gamma(2.0, scale_ns, n)).astype(int).tolist()
    intervals = [interval_ns + late for late in lateness]
    overrides.setdefault("timer", "lapic")
    return record_from(intervals, lateness, interval_ns=interval_ns, **overrides)
