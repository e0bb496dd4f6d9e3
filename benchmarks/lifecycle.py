"""Lifecycle soak: guests and hosts created, booted, run briefly and destroyed in a loop,
while the host process's file descriptors, threads and memory must stay flat.

    ./run bench lifecycle [--cycles 1000] [--kind both|machines|hosts]

Two kinds of cycle, each soaked on its own:

* ``machines``: one ``VmmHost`` for the whole soak; each cycle boots a small guest
  (alternately a 20-event measure every 100 us and a 2 ms idle run), runs it to its end
  and destroys it with ``VmmHost.destroy``: what a long-lived VMM does guest after guest.
* ``hosts``: each cycle is a whole ``tickless measure``-sized run, 20 events every 100 us
  through ``tickless.backends.measure``: its own ``VmmHost`` (``/dev/kvm``, timer thread,
  watchdog), guest, record, and teardown.

For each kind it prints file descriptors, threads (Python's count, and the kernel's, which
also counts KVM's per-VM kernel thread), resident memory and memory mappings at the start,
after a warm-up (a tenth of the cycles) and at the end, then PASS or FAIL against: fds and
threads back to their start value, RSS growth after the warm-up under 1 %. It asserts
nothing (``tests/test_lifecycle.py`` does, on 100 cycles) and exits 1 on a FAIL.

Each snapshot follows ``gc.collect()``: garbage waiting for the collector is not a leak,
and collecting first makes snapshots comparable. Taken once per process, before the start
snapshot, is the one thing a run holds on purpose for the life of the process: the PM QoS
request on ``/dev/cpu_dma_latency`` (``tickless/host/realtime.py``).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tickless.axes import Backend, TimerPath
from tickless.backends import measure
from tickless.devices.config import GuestConfig
from tickless.guest.abi import Scenario
from tickless.host.realtime import hold_cpu_dma_latency
from tickless.results.spec import MeasureSpec
from tickless.vmm.host import VmmHost

RSS_GROWTH_LIMIT = 0.01  # after the warm-up
KINDS = ("machines", "hosts")


@dataclass(frozen=True)
class Snapshot:
    """What the host process holds at one moment."""

    fds: int
    py_threads: int  # threading.active_count()
    os_threads: int  # /proc/self/status Threads: every thread, KVM's kernel threads included
    rss_kib: int
    mappings: int  # lines of /proc/self/maps (shown, not judged: the RSS is)

    @classmethod
    def take(cls) -> Snapshot:
        gc.collect()
        status = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                status[key] = value.split()
        with open("/proc/self/maps") as f:
            mappings = sum(1 for _ in f)
        return cls(
            fds=len(os.listdir("/proc/self/fd")),
            py_threads=threading.active_count(),
            os_threads=int(status["Threads"][0]),
            rss_kib=int(status["VmRSS"][0]),
            mappings=mappings,
        )


@dataclass(frozen=True)
class Verdict:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class SoakResult:
    kind: str
    cycles: int
    warmup: int
    wall_s: float
    start: Snapshot
    warm: Snapshot
    end: Snapshot

    @property
    def rss_growth(self) -> float:
        return (self.end.rss_kib - self.warm.rss_kib) / self.warm.rss_kib

    def verdicts(self) -> list[Verdict]:
        s, e = self.start, self.end
        threads_ok = (s.py_threads, s.os_threads) == (e.py_threads, e.os_threads)
        return [
            Verdict("fds back to start", s.fds == e.fds, f"{s.fds} -> {e.fds}"),
            Verdict(
                "threads back to start",
                threads_ok,
                f"python {s.py_threads} -> {e.py_threads}, kernel {s.os_threads} -> {e.os_threads}",
            ),
            Verdict(
                "RSS growth after warm-up",
                self.rss_growth < RSS_GROWTH_LIMIT,
                f"{100 * self.rss_growth:+.2f} % (limit {100 * RSS_GROWTH_LIMIT:g} %)",
            ),
        ]

    @property
    def passed(self) -> bool:
        return all(v.ok for v in self.verdicts())


MACHINE_CONFIGS = (
    GuestConfig(interval_ns=100_000, count=20),
    GuestConfig(scenario=Scenario.IDLE, duration_ns=2_000_000),
)
HOST_SPEC = MeasureSpec(timer=TimerPath.PV, interval_ns=100_000, count=20, backend=Backend.KVM)


@contextmanager
def _machines() -> Iterator[Callable[[int], None]]:
    """One host; a cycle boots, runs and destroys one small guest on it."""
    with VmmHost() as host:

        def cycle(i: int) -> None:
            machine = host.boot(MACHINE_CONFIGS[i % len(MACHINE_CONFIGS)])
            machine.start()
            machine.join(10)
            ok, reason = machine.outcome.ok, machine.outcome.reason
            host.destroy(machine)
            if not ok:
                raise SystemExit(f"cycle {i}: the guest stopped: {reason}")

        yield cycle


@contextmanager
def _hosts() -> Iterator[Callable[[int], None]]:
    """A cycle is a whole measurement: its own host, guest and record."""

    def cycle(i: int) -> None:
        record = measure(HOST_SPEC)
        if record.stats.count != HOST_SPEC.count:
            raise SystemExit(f"cycle {i}: {record.stats.count} of {HOST_SPEC.count} events")

    yield cycle


def soak(kind: str, cycles: int, report: Callable[[str], None] = print) -> SoakResult:
    """Run ``cycles`` cycles of ``kind`` and snapshot the process around them."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if cycles < 2:
        raise ValueError("a soak needs at least 2 cycles (one of warm-up)")
    hold_cpu_dma_latency()  # held for the life of the process on purpose (see above)
    warmup = max(1, cycles // 10)
    runner = _machines() if kind == "machines" else _hosts()
    with runner as cycle:
        start = Snapshot.take()
        t0 = time.monotonic()
        for i in range(warmup):
            cycle(i)
        warm = Snapshot.take()
        for i in range(warmup, cycles):
            cycle(i)
            if (i + 1) % max(1, cycles // 4) == 0:
                report(f"  {kind}: {i + 1} of {cycles} cycles, {time.monotonic() - t0:.1f} s")
        wall_s = time.monotonic() - t0
        end = Snapshot.take()
    return SoakResult(kind, cycles, warmup, wall_s, start, warm, end)


def render(result: SoakResult) -> str:
    """The three snapshots and the verdicts, as printed."""
    lines = [
        f"{result.kind}: {result.cycles} cycles ({result.warmup} of warm-up) in "
        f"{result.wall_s:.1f} s, {1000 * result.wall_s / result.cycles:.1f} ms a cycle",
        f"  {'':14} {'fds':>5} {'threads':>8} {'(kernel)':>9} {'RSS KiB':>9} {'mappings':>9}",
    ]
    for label, s in (("start", result.start), ("after warm-up", result.warm), ("end", result.end)):
        lines.append(
            f"  {label:14} {s.fds:5d} {s.py_threads:8d} {s.os_threads:9d} {s.rss_kib:9d} "
            f"{s.mappings:9d}"
        )
    for v in result.verdicts():
        lines.append(f"  {'PASS' if v.ok else 'FAIL'}  {v.name}: {v.detail}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--kind", choices=("both", *KINDS), default="both")
    args = parser.parse_args()
    kinds = KINDS if args.kind == "both" else (args.kind,)
    results = []
    for kind in kinds:
        result = soak(kind, args.cycles, report=lambda line: print(line, flush=True))
        print(render(result), flush=True)
        results.append(result)
    passed = all(r.passed for r in results)
    print("PASS" if passed else "FAIL")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
