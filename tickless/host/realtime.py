"""Real-time scheduling for the host timer thread.

Measured here: a normal Python thread wakes 30-43 us late; cyclictest with SCHED_FIFO and
/dev/cpu_dma_latency held at 0 gets 14 us on average. These are per-thread settings.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

_dma_latency_fd: int | None = None


@dataclass(frozen=True)
class RealtimePolicy:
    fifo_priority: int | None = 90  # None: leave the thread SCHED_OTHER
    cpu: int | None = None  # pin to this host CPU
    hold_cpu_dma_latency: bool = True


def apply_to_current_thread(policy: RealtimePolicy) -> list[str]:
    """Apply what can be applied; return one line per setting that could not be."""
    problems: list[str] = []
    if policy.cpu is not None:
        try:
            os.sched_setaffinity(0, {policy.cpu})
        except OSError as exc:
            problems.append(f"cannot pin the timer thread to CPU {policy.cpu}: {exc.strerror}")
    if policy.fifo_priority is not None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(policy.fifo_priority))
        except OSError as exc:
            problems.append(f"no SCHED_FIFO for the timer thread ({exc.strerror}): run as root")
    if policy.hold_cpu_dma_latency:
        problem = hold_cpu_dma_latency()
        if problem:
            problems.append(problem)
    return problems


def scheduling_of(thread_id: int | None) -> str:
    """The policy the kernel says thread ``thread_id`` runs under ("SCHED_FIFO 90",
    "SCHED_OTHER"), read back rather than taken from what was asked: a refused
    ``sched_setscheduler`` leaves a thread SCHED_OTHER, and a record must say so."""
    if not thread_id:
        return "not running"
    try:
        policy = os.sched_getscheduler(thread_id)
        priority = os.sched_getparam(thread_id).sched_priority
    except OSError:
        return "ended"
    names = {os.SCHED_FIFO: "SCHED_FIFO", os.SCHED_RR: "SCHED_RR", os.SCHED_OTHER: "SCHED_OTHER"}
    name = names.get(policy, f"policy {policy}")
    return f"{name} {priority}" if priority else name


def hold_cpu_dma_latency() -> str | None:
    """Keep CPUs out of deep idle states for the life of the process (PM QoS)."""
    global _dma_latency_fd
    if _dma_latency_fd is not None:
        return None
    try:
        fd = os.open("/dev/cpu_dma_latency", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, struct.pack("i", 0))
    except OSError as exc:
        return f"cannot hold /dev/cpu_dma_latency ({exc.strerror})"
    _dma_latency_fd = fd
    return None
