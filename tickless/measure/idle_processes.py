"""An idle fleet split over several VMM processes (``tickless idle --processes K``).

KVM hangs one MMU notifier per VM off the address space of the process that created it,
and a host that scans pages (this one runs DAMON's proactive reclaim) calls every one of a
process's notifiers for each of its pages it samples: with all of a fleet in one process
the host's scanning grows with the square of the fleet. Each process here boots its share
of the guests (``run_idle`` with seed ``seed + i``), says so, and waits; once all have
booted they are told to go together, measure the same window, and send their records
back, which become one record: CPU and counts summed (this coordinating process's own
over the window too), every guest's counts kept. Whole-host figures are taken here,
leaving out every process of the fleet.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import signal
import time
import traceback
from collections import Counter
from multiprocessing.connection import Connection, wait
from typing import Any

from tickless.errors import GuestStopped, TicklessError
from tickless.host.cputime import process_cpu_s
from tickless.host.hostcpu import HostCpuSnapshot, host_cpu_window
from tickless.measure.fleet_limits import memory_available_mib
from tickless.measure.idle import check_host, host_cpu_fields, run_idle
from tickless.measure.idle_fleet import Progress
from tickless.results.idle import IdleResult, IdleSpec

BOOT_TIMEOUT_S = 120.0  # per process, beyond its guests' own boot timeout
RESULT_TIMEOUT_S = 120.0  # after the window: tearing a share down and sending its record


def shares(spec: IdleSpec) -> list[IdleSpec]:
    """Each process's part of the fleet: guests split as evenly as they go, seed + i."""
    k = spec.processes
    sizes = [spec.guests // k + (i < spec.guests % k) for i in range(k)]
    return [
        dataclasses.replace(spec, guests=n, seed=spec.seed + i, processes=1)
        for i, n in enumerate(sizes)
    ]


def _worker(spec: IdleSpec, conn: Connection) -> None:
    """One VMM process: boot, say so, wait for "go", measure, send the record."""
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def ready() -> None:
        conn.send(("booted", None))
        try:
            go = conn.recv()
        except EOFError:
            go = None
        if go != "go":
            raise KeyboardInterrupt  # the parent gave up on the fleet

    try:
        result = run_idle(spec, before_window=ready, whole_host=False)
        conn.send(("result", result.to_json_dict()))
    except TicklessError as exc:
        conn.send(("error", str(exc)))
    except KeyboardInterrupt:
        conn.send(("error", "interrupted before its window"))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        raise


def run_idle_processes(spec: IdleSpec, progress: Progress | None = None) -> IdleResult:
    """``run_idle`` over ``spec.processes`` processes, as one record."""
    check_host(spec)  # the whole fleet's memory and threads (each share checks its own)
    ctx = mp.get_context("spawn")  # a fresh interpreter: no KVM or thread state forked
    parts = shares(spec)
    avail0 = memory_available_mib()
    started = time.monotonic()
    links = []
    # Started with Ctrl-C ignored (inherited through exec), so one that comes while a
    # process is still starting Python stops only this one, which ends them all quietly;
    # each takes Ctrl-C again once it runs its share (_worker), to keep a partial window.
    sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for i, part in enumerate(parts):
            here, there = ctx.Pipe()
            process = ctx.Process(target=_worker, args=(part, there), name=f"tickless-vmm{i}")
            process.start()
            there.close()
            links.append((process, here))
    finally:
        signal.signal(signal.SIGINT, sigint)
    try:
        booted = 0
        while booted < len(links):
            _expect(links, "booted", BOOT_TIMEOUT_S + 0.05 * spec.guests)
            booted += 1
            if progress is not None:
                progress("booting", booted / len(links))
        boot_s = time.monotonic() - started
        avail1 = memory_available_mib()
        own = [os.getpid(), *(p.pid for p, _ in links if p.pid is not None)]
        for _, conn in links:
            conn.send("go")
        host0, cpu0 = HostCpuSnapshot.take(own), process_cpu_s()
        partial = _window(spec, links, progress)
        host_cpu = host_cpu_window(host0, HostCpuSnapshot.take(own))
        coordinator_cpu_s = process_cpu_s() - cpu0  # this process's, over the window
        records = [_expect([link], "result", RESULT_TIMEOUT_S) for link in links]
    except BaseException:
        for process, conn in links:
            if process.is_alive():
                conn.close()
                process.terminate()
        raise
    finally:
        for process, _ in links:
            process.join(RESULT_TIMEOUT_S)
    merged = merge(spec, [IdleResult.from_json_dict(r) for r in records])
    return dataclasses.replace(
        merged,
        process_cpu_s=merged.process_cpu_s + coordinator_cpu_s,
        boot_s=boot_s,
        host_mem_per_guest_mib=(avail0 - avail1) / spec.guests,
        partial=merged.partial or partial,
        **host_cpu_fields(host_cpu),
    )


def _expect(links: list[tuple[Any, Connection]], what: str, timeout_s: float) -> Any:
    """The next message from any of ``links``: ``what``'s payload, or a one-line error."""
    ready = wait([conn for _, conn in links], timeout_s)
    if not ready:
        raise GuestStopped(f"a VMM process sent no {what!r} in {timeout_s:.0f} s")
    conn = ready[0]
    assert isinstance(conn, Connection)
    name = next(p.name for p, c in links if c is conn)
    try:
        kind, payload = conn.recv()
    except EOFError:
        raise GuestStopped(f"{name} ended without a word (see its output above)") from None
    if kind == "error":
        raise GuestStopped(f"{name}: {payload}")
    return payload


def _window(spec: IdleSpec, links: list[tuple[Any, Connection]], progress: Progress | None) -> bool:
    """Wait out the window here too, or until a process reports (it is done, or its error
    is next; a process cut short says so in its own record); True on Ctrl-C (the processes
    keep what they measured)."""
    t0 = time.monotonic()
    end = t0 + spec.duration_ns / 1e9 / float(spec.rate)
    try:
        while (now := time.monotonic()) < end:
            if wait([conn for _, conn in links], min(1.0, end - now)):
                return False
            if progress is not None:
                progress("measuring", min(1.0, (time.monotonic() - t0) / (end - t0)))
    except KeyboardInterrupt:
        return True
    return False


def merge(spec: IdleSpec, parts: list[IdleResult]) -> IdleResult:
    """One record from each process's: counts and CPU summed, guests renamed p<i>/<name>."""
    first = parts[0]
    per_guest = [
        dataclasses.replace(g, name=f"p{i}/{g.name}")
        for i, part in enumerate(parts)
        for g in part.per_guest
    ]
    assists: Counter[str] = Counter()
    for part in parts:
        assists.update(part.assists)
    notes = list(dict.fromkeys(n for part in parts for n in part.notes))
    sizes = sorted({p.guests for p in parts})
    notes.append(
        f"the fleet ran in {len(parts)} VMM processes of {' or '.join(map(str, sizes))} "
        f"guests (seeds {spec.seed} to {spec.seed + len(parts) - 1}); CPU and counts are "
        "their sums over one window"
    )
    runs = [p.timer_runs for p in parts if p.timer_runs is not None]

    def total(name: str) -> Any:
        return sum(getattr(p, name) for p in parts)

    def mean(name: str) -> float:
        return float(sum(getattr(p, name) for p in parts)) / len(parts)

    return dataclasses.replace(
        first,
        guests=total("guests"),
        guests_requested=spec.guests,
        duration_s=mean("duration_s"),
        wall_time_s=mean("wall_time_s"),
        guest_time_s=mean("guest_time_s"),
        **{
            name: total(name)
            for name in (
                "host_timer_wakeups",
                "host_timer_expiries",
                "injections",
                "timer_thread_cpu_s",
                "vcpu_cpu_s",
                "process_cpu_s",
                "guest_spin_s",
                "boot_cpu_s",
                "rss_mib",
            )
        },
        per_guest=per_guest,
        assists=dict(assists),
        notes=notes,
        rss_per_guest_mib=sum((p.rss_per_guest_mib or 0.0) * p.guests for p in parts)
        / total("guests"),
        timer_runs=[sum(r) for r in zip(*runs, strict=True)] if runs else None,
        early_timer_runs=sum(p.early_timer_runs or 0 for p in parts),
        partial=any(p.partial for p in parts),
    )
