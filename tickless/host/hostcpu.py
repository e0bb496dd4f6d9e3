"""What the whole host's CPUs did during a window, beside our own process.

A fleet costs the host more than its process's CPU: kernel threads work on its behalf.
On this host DAMON's proactive reclaim (``kdamond``, physical-address mode) checks sampled
pages' accessed bits through every KVM VM's MMU notifier on the page's address space, so
its cost grows with the VMs one process holds. Two views: the other tasks' CPU, exact
(``schedstat``) and by name; and the host's busy time from ``/proc/stat``, which sees
every task but is tick-sampled (HZ), so coarse over short windows. Neither sees time in
hard interrupt context charged to an idle CPU (this kernel has no IRQ time accounting).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

# /proc/stat's cpu line: user nice system idle iowait irq softirq steal guest guest_nice;
# guest time is inside user already, idle/iowait/steal are not the host's work.
BUSY_COLUMNS = (0, 1, 2, 5, 6)
TOP_TASKS = 5


@dataclass(frozen=True)
class HostCpuSnapshot:
    t_s: float
    busy_ticks: int  # /proc/stat, every CPU
    tasks_ns: dict[int, tuple[str, int]]  # tid -> (name, on-CPU ns), tasks not ours

    @classmethod
    def take(cls, own_pids: Collection[int]) -> HostCpuSnapshot:
        """Now, leaving out the processes in ``own_pids`` (the fleet's)."""
        return cls(time.monotonic(), _busy_ticks(), _other_tasks(set(own_pids)))


@dataclass(frozen=True)
class HostCpuWindow:
    """The host's CPU between two snapshots, in percent of one core."""

    busy_percent_of_core: float  # /proc/stat: every task, ours included
    other_tasks_percent_of_core: float  # schedstat: every task but the fleet's processes
    other_tasks_top: dict[str, float]  # the busiest of them by name, largest first


def host_cpu_window(a: HostCpuSnapshot, b: HostCpuSnapshot) -> HostCpuWindow | None:
    """None when the window is empty (nothing to divide by)."""
    span_s = b.t_s - a.t_s
    if span_s <= 0:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    by_name: Counter[str] = Counter()
    for tid, (name, ns) in b.tasks_ns.items():
        before = a.tasks_ns.get(tid)
        if before is not None and before[0] == name and ns > before[1]:
            by_name[name] += ns - before[1]  # tasks born or gone meanwhile: left out
    to_percent = 100.0 / 1e9 / span_s
    return HostCpuWindow(
        busy_percent_of_core=100.0 * (b.busy_ticks - a.busy_ticks) / hz / span_s,
        other_tasks_percent_of_core=sum(by_name.values()) * to_percent,
        other_tasks_top={
            name: round(ns * to_percent, 3) for name, ns in by_name.most_common(TOP_TASKS)
        },
    )


def _busy_ticks() -> int:
    try:
        with open("/proc/stat") as f:
            columns = f.readline().split()[1:]
        return sum(int(columns[i]) for i in BUSY_COLUMNS if i < len(columns))
    except (OSError, ValueError):
        return 0


def _other_tasks(own: set[int]) -> dict[int, tuple[str, int]]:
    tasks: dict[int, tuple[str, int]] = {}
    for pid_name in os.listdir("/proc"):
        if not pid_name.isdigit() or int(pid_name) in own:
            continue
        try:
            tids = os.listdir(f"/proc/{pid_name}/task")
        except OSError:  # gone meanwhile
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid_name}/task/{tid}/comm") as f:
                    name = f.read().strip()
                with open(f"/proc/{pid_name}/task/{tid}/schedstat") as f:
                    tasks[int(tid)] = (name, int(f.read().split()[0]))
            except (OSError, ValueError, IndexError):
                continue
    return tasks
