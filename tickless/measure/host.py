"""The host backend: the paper's method run on the bare host, no guest in the way.

The floor for every virtualised path on this machine (``--timer host``).
"""

from __future__ import annotations

import contextlib

from tickless.axes import Backend, Load
from tickless.host.baseline import run_host_baseline
from tickless.host.load import HostCpuLoad
from tickless.measure.kvm import realtime_policy
from tickless.measure.machine_info import machine_facts
from tickless.results.record import build_record
from tickless.results.schema import HostCounts, ResultRecord
from tickless.results.spec import MeasureSpec, Progress

__all__ = ["measure_host"]


def measure_host(spec: MeasureSpec, progress: Progress | None = None) -> ResultRecord:
    """N events every d from a host thread, timed as the guest times them."""
    with contextlib.ExitStack() as stack:
        cpu_load = stack.enter_context(HostCpuLoad()) if Load.CPU in spec.loads else None
        run = run_host_baseline(
            spec.interval_ns, spec.count, spec.method, realtime_policy(spec), progress
        )
    notes = list(run.problems)
    if cpu_load is not None and cpu_load.report is not None:
        r = cpu_load.report
        notes.append(f"cpu load: stress-ng used {r.cpu_s:.2f} CPU-s ({r.cores_busy:.2f} cores)")
    counts = HostCounts(
        exits=0,
        hypercalls=0,
        injections=0,
        wakeups=spec.count,
        timer_events=spec.count,
        duration_s=run.wall_s,
        cpu_s=run.cpu_s,
    )
    facts = machine_facts(timer_thread=f"hostbench, {run.scheduling}")
    return build_record(spec, Backend.HOST, run.timestamps_ns, counts, facts, notes)
