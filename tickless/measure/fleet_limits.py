"""What a fleet of real guests needs from the host, checked before the first one boots.

A guest here is a KVM VM with one vCPU thread parked in ``KVM_RUN``: its RAM (which a guest
may touch all of), a few descriptors (VM, vCPU, an eventfd), a thread, a handful of memory
mappings, and the VMM's own share. What runs out first is refused in one line, as
``tickless sim fleet`` refuses a fleet that would not fit in memory, with how many would fit.
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tickless.errors import InputError

MEMORY_HEADROOM = 0.8  # use at most this share of the memory available now
VMM_BYTES_PER_GUEST = 2 << 20  # beyond its RAM: KVM's per-VM state, thread, Python objects
FDS_PER_GUEST = 6  # VM, vCPU, the PV deadline device's eventfd, and room to spare
MAPS_PER_GUEST = 8  # guest RAM, kvm_run, thread stack and guard, and room to spare
BASE_FDS = 64  # the process's own: KVM, timerfds, logs, the JSON file
BASE_THREADS = 32  # other threads on the host start and stop meanwhile
# A vCPU thread's Python calls are shallow (run loop, bus, device): 512 KiB of stack is
# plenty, and a thousand default 8 MiB stacks would reserve 8 GiB of address space.
VCPU_STACK_BYTES = 512 << 10


@dataclass(frozen=True)
class HostLimits:
    """What this host has left, read once before a run (tests build their own)."""

    available_bytes: int
    fd_hard: int
    fds_open: int
    threads_max: int
    threads_now: int
    max_map_count: int
    maps_now: int

    @classmethod
    def now(cls) -> HostLimits:
        _, fd_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        return cls(
            available_bytes=_meminfo_kib("MemAvailable") * 1024,
            fd_hard=fd_hard if fd_hard != resource.RLIM_INFINITY else 1 << 30,
            fds_open=len(os.listdir("/proc/self/fd")),
            threads_max=_read_int("/proc/sys/kernel/threads-max", 1 << 30),
            threads_now=_threads_now(),
            max_map_count=_read_int("/proc/sys/vm/max_map_count", 1 << 30),
            maps_now=_count_lines("/proc/self/maps"),
        )


def _read_int(path: str, default: int) -> int:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _count_lines(path: str) -> int:
    try:
        with open(path) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _threads_now() -> int:
    """Threads on the whole host (the 4th field of /proc/loadavg is running/total)."""
    try:
        with open("/proc/loadavg") as f:
            return int(f.read().split()[3].split("/")[1])
    except (OSError, ValueError, IndexError):
        return 0


def _meminfo_kib(key: str) -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 1024


def memory_available_mib() -> float:
    """MemAvailable now: its drop over a boot counts the kernel's share (KVM) too."""
    return _meminfo_kib("MemAvailable") / 1024


def check_fleet(guests: int, guest_ram_bytes: int, limits: HostLimits, kind: str) -> int:
    """Refuse, in one line, ``guests`` guests of ``guest_ram_bytes`` each that this host
    cannot hold; returns the descriptors the run needs (see ``raise_fd_limit``)."""
    per_guest = guest_ram_bytes + VMM_BYTES_PER_GUEST
    budget = int(MEMORY_HEADROOM * limits.available_bytes)
    checks = [
        ("of memory", guests * per_guest, budget, per_guest, _gib),
        ("file descriptors", BASE_FDS + guests * FDS_PER_GUEST, limits.fd_hard, FDS_PER_GUEST, _n),
        (
            "threads",
            BASE_THREADS + guests,
            limits.threads_max - limits.threads_now,
            1,
            _n,
        ),
        (
            "memory mappings",
            limits.maps_now + guests * MAPS_PER_GUEST,
            limits.max_map_count,
            MAPS_PER_GUEST,
            _n,
        ),
    ]
    for what, need, have, each, fmt in checks:
        if need > have:
            fits = max(0, (have - (need - guests * each)) // each)
            raise InputError(
                f"--guests {guests:,}: {guests:,} {kind} guests need ~{fmt(need)} {what} but "
                f"this host has {fmt(max(have, 0))}: at most ~{fits:,} fit"
            )
    return BASE_FDS + limits.fds_open + guests * FDS_PER_GUEST


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def _n(n: int) -> str:
    return f"{n:,}"


def raise_fd_limit(need: int) -> None:
    """Raise this process's soft descriptor limit towards the hard one when ``need`` is
    over it (1,024 is a common soft limit; a thousand guests need several thousand)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and need > soft:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@contextmanager
def vcpu_stacks() -> Iterator[None]:
    """Threads started inside get ``VCPU_STACK_BYTES`` stacks (the old size after)."""
    old = threading.stack_size(VCPU_STACK_BYTES)
    try:
        yield
    finally:
        threading.stack_size(old)
