"""CPU time of threads and of the process, precise to the nanosecond.

/proc/stat tick sampling is useless at HZ=250; schedstat's sum_exec_runtime is exact.
"""

from __future__ import annotations

import resource


def thread_cpu_ns(native_id: int) -> int:
    """On-CPU time of one thread of this process (guest time included for a vCPU thread)."""
    try:
        with open(f"/proc/self/task/{native_id}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def thread_busy_ns(native_id: int) -> int:
    """Time one thread of this process was on a CPU or runnable, waiting for one: what a
    thread that never sleeps accrues at the wall clock's pace however loaded the host is
    (on-CPU time alone shrinks with the load)."""
    try:
        with open(f"/proc/self/task/{native_id}/schedstat") as f:
            on_cpu, waiting = f.read().split()[:2]
        return int(on_cpu) + int(waiting)
    except (OSError, ValueError):
        return 0


def process_cpu_s() -> float:
    """User and system CPU of the whole process (every thread, the timer thread included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
