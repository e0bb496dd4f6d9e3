"""Synthetic result records for tests that need one without running a guest."""

from __future__ import annotations

from typing import Any

import numpy as np

from tickless.results.cron import CronRecord
from tickless.results.idle import GuestIdleCounts, IdleResult
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


def idle_record(**overrides: Any) -> IdleResult:
    """An idle run's record: two periodic 100 Hz guests over 2 s (300 host wake-ups, 400
    expiries and injections, 190 timer interrupts each); ``overrides`` replace any field."""
    fields: dict[str, Any] = {
        "guests": 2,
        "mode": "periodic",
        "hz": 100,
        "duration_s": 2.0,
        "host_timer_wakeups": 300,
        "host_timer_expiries": 400,
        "injections": 400,
        "timer_thread_cpu_s": 0.1,
        "vcpu_cpu_s": 0.2,
        "process_cpu_s": 0.4,
        "per_guest": [GuestIdleCounts(f"g{i}", 190, 190, 0, 0, 0, 0.1) for i in range(2)],
    }
    fields.update(overrides)
    return IdleResult(**fields)


def cron_record(**overrides: Any) -> CronRecord:
    """A cron run's record before its events: two guests, one 1 s timer each, warped."""
    fields: dict[str, Any] = {
        "periods_ns": [1_000_000_000],
        "guests": 2,
        "duration_s": 10.0,
        "dilation": "1",
        "warp_idle": True,
        "seed": 0,
        "timer": "pv",
        "origin_ns": 0,
        "resolution_ns": 10_000_000,
    }
    fields.update(overrides)
    return CronRecord(**fields)
