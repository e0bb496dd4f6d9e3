"""Idle guests, ticking or tickless: what their timers cost the host.

Ten guests at 1000 HZ make the host take 10,000 timer wake-ups a second for nothing; the
same guests tickless ask only for their own sparse timers (here a 1 s and a 4 s
housekeeping timer, so tickless idle is not trivially zero).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from tickless.axes import TickMode
from tickless.guest.abi import Scenario
from tickless.host.cputime import process_cpu_s, thread_cpu_ns
from tickless.host.realtime import RealtimePolicy
from tickless.measure.machine_info import machine_facts
from tickless.vmm.config import SECOND_NS, GuestConfig
from tickless.vmm.host import VmmHost
from tickless.vmm.machine import GuestStopped

IDLE_SCHEMA_VERSION = 1
MAX_GUESTS = 64


@dataclass(frozen=True)
class IdleSpec:
    guests: int = 10
    mode: str = "tickless"
    hz: int = 1000
    duration_ns: int = 2 * SECOND_NS
    housekeeping_ns: tuple[int, int] = (1 * SECOND_NS, 4 * SECOND_NS)
    slop_ns: int = 0
    halt_poll_ns: int | None = None
    realtime: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.guests <= MAX_GUESTS:
            raise ValueError(f"--guests must be between 1 and {MAX_GUESTS}")
        if self.mode not in ("tickless", "periodic"):
            raise ValueError("--mode must be periodic or tickless")
        if not 1 <= self.hz <= 10_000:
            raise ValueError("--hz must be between 1 and 10000")
        if self.duration_ns < 10_000_000:
            raise ValueError("--duration must be at least 10ms")


@dataclass
class GuestIdleCounts:
    name: str
    timer_interrupts: int  # PV timer interrupts the guest took
    wakeups: int  # times the guest's idle loop woke
    housekeeping_runs: int  # its own timers that ran
    hypercalls: int
    exits: int
    vcpu_cpu_s: float  # host CPU of its vCPU thread (guest code included)


@dataclass
class IdleResult:
    """One idle run; written as JSON by ``tickless idle --json`` (``kind`` = "idle")."""

    guests: int
    mode: str
    hz: int | None
    duration_s: float
    host_timer_wakeups: int  # returns of the host timer thread from its timerfd
    host_timer_expiries: int  # guest timer events the host ran (one per injection)
    injections: int
    timer_thread_cpu_s: float
    vcpu_cpu_s: float
    process_cpu_s: float
    per_guest: list[GuestIdleCounts]
    machine: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    schema_version: int = IDLE_SCHEMA_VERSION
    kind: str = "idle"

    @property
    def wakeups_per_s(self) -> float:
        return self.host_timer_wakeups / self.duration_s

    @property
    def expiries_per_s(self) -> float:
        return self.host_timer_expiries / self.duration_s

    @property
    def interrupts_per_guest_per_s(self) -> float:
        total = sum(g.timer_interrupts for g in self.per_guest)
        return total / len(self.per_guest) / self.duration_s

    @property
    def cpu_percent_of_core(self) -> float:
        return 100.0 * self.process_cpu_s / self.duration_s

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["wakeups_per_s"] = self.wakeups_per_s
        d["expiries_per_s"] = self.expiries_per_s
        d["interrupts_per_guest_per_s"] = self.interrupts_per_guest_per_s
        d["cpu_percent_of_core"] = self.cpu_percent_of_core
        return d


def run_idle(spec: IdleSpec, progress: Callable[[float], None] | None = None) -> IdleResult:
    """Boot ``spec.guests`` idle guests at once, let them idle, count what the host did."""
    policy = RealtimePolicy() if spec.realtime else RealtimePolicy(fifo_priority=None)
    config = GuestConfig(
        scenario=Scenario.IDLE,
        mode=TickMode(spec.mode),
        hz=spec.hz,
        duration_ns=spec.duration_ns,
        housekeeping_ns=spec.housekeeping_ns,
        halt_poll_ns=spec.halt_poll_ns,
    )
    with VmmHost(spec.slop_ns, policy) as host:
        machines = [host.boot(config, f"guest{i}") for i in range(spec.guests)]
        timers = host.timers
        wake0, exp0 = timers.stats.wakeups, timers.stats.expiries
        thread_cpu0 = thread_cpu_ns(timers.native_id) if timers.native_id else 0
        cpu0, t0 = process_cpu_s(), time.monotonic()
        for machine in machines:
            machine.start()
        deadline = t0 + spec.duration_ns / 1e9 + 10.0
        while any(m.running for m in machines):
            machines[0].join(0.1)
            now = time.monotonic()
            if progress is not None:
                progress(min(1.0, (now - t0) / (spec.duration_ns / 1e9)))
            if now > deadline:
                host.stop_all("idle guests did not finish in time")
        duration_s = time.monotonic() - t0
        cpu_s = process_cpu_s() - cpu0
        thread_cpu_s = (
            (thread_cpu_ns(timers.native_id) - thread_cpu0) / 1e9 if timers.native_id else 0.0
        )
        failed = [m for m in machines if not m.outcome.ok]
        if failed:
            raise GuestStopped(f"{failed[0].name} stopped: {failed[0].outcome.reason}")
        per_guest = [
            GuestIdleCounts(
                name=m.name,
                timer_interrupts=int(m.shared.irq_count),
                wakeups=int(m.shared.wakeups),
                housekeeping_runs=int(m.shared.timer_callbacks),
                hypercalls=m.outcome.hypercalls,
                exits=sum(m.outcome.exits.values()),
                vcpu_cpu_s=m.outcome.vcpu_cpu_ns / 1e9,
            )
            for m in machines
        ]
        return IdleResult(
            guests=spec.guests,
            mode=spec.mode,
            hz=spec.hz if spec.mode == "periodic" else None,
            duration_s=duration_s,
            host_timer_wakeups=timers.stats.wakeups - wake0,
            host_timer_expiries=timers.stats.expiries - exp0,
            injections=sum(m.outcome.injections for m in machines),
            timer_thread_cpu_s=thread_cpu_s,
            vcpu_cpu_s=sum(g.vcpu_cpu_s for g in per_guest),
            process_cpu_s=cpu_s,
            per_guest=per_guest,
            machine=machine_facts(tsc_khz=host.tsc_hz // 1000, slop_ns=spec.slop_ns),
            notes=list(timers.problems) + list(timers.callback_errors),
        )
