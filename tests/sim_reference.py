"""A straightforward implementation of the fleet model: the real classes on a SimPy clock.

One SimPy process per host CPU runs a real ``TimerQueue`` (with slop); each guest has a
real ``ClockEventDevice`` on an identity ``GuestClock`` (rate 1: host ticks are ns), and a
guest kernel written plainly as a Python object, independently of ``guest_model``. It is
slow by design. The engine must agree with it exactly, wake-up by wake-up
(``tests/test_sim_fleet.py``), and ``benchmarks/sim_vs_simpy.py`` races the two. It lives
with the tests because it needs ``simpy``, a development dependency.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from tickless.guest.abi import MAX_DELTA_NS, MIN_DELTA_NS
from tickless.sim import guest_model as gm
from tickless.sim import layout
from tickless.sim.fleet import FleetSpec, build
from tickless.timers.clock import GuestClock
from tickless.timers.clockevents import ClockEventDevice
from tickless.timers.hrtimer import TimerQueue

ORIGIN_NS = -(10**15)  # the guests' clocks reach back before t = 0 (their past armings)


@dataclass
class GuestTimer:
    next_ns: int
    period_ns: int
    housekeeping: bool


@dataclass
class RefGuest:
    """A guest kernel: its timers, its measurement, its tick mode; counts what it sees."""

    mode: str
    workload: str
    anchor_ns: int
    period_ns: int
    timers: list[GuestTimer]
    meas_next_ns: int | None
    meas_left: int
    interval_ns: int
    irqs: int = 0
    useful: int = 0
    housekeeping_runs: int = 0
    hypercalls: int = 0
    meas_events: int = 0
    late_sum_ns: int = 0
    late_max_ns: int = 0

    @property
    def ticking(self) -> bool:
        return self.mode == "periodic" or (self.mode == "nohz-idle" and self.workload == "cpu")

    def delta_to_program(self, now_ns: int) -> int | None:
        """The one-shot it asks for: its next timer (on the tick grid in nohz-idle)."""
        candidates = [t.next_ns for t in self.timers]
        if self.meas_next_ns is not None:
            candidates.append(self.meas_next_ns)
        if not candidates:
            return None
        nxt = min(candidates)
        if self.mode == "nohz-idle":
            ticks = -((self.anchor_ns - nxt) // self.period_ns)  # ceil((nxt - anchor) / P)
            nxt = self.anchor_ns + ticks * self.period_ns
        return min(max(nxt - now_ns, MIN_DELTA_NS), MAX_DELTA_NS)

    def on_irq(self, now_ns: int) -> int | None:
        self.irqs += 1
        useful = self.workload == "cpu"
        for t in self.timers:
            while t.next_ns <= now_ns:
                t.next_ns += t.period_ns
                self.housekeeping_runs += t.housekeeping
                useful = True
        if self.meas_next_ns is not None and self.meas_next_ns <= now_ns:
            late_ns = now_ns - self.meas_next_ns
            self.meas_events += 1
            self.late_sum_ns += late_ns
            self.late_max_ns = max(self.late_max_ns, late_ns)
            self.meas_left -= 1
            self.meas_next_ns = now_ns + self.interval_ns if self.meas_left else None
            useful = True
        self.useful += useful
        if self.ticking:
            return None
        delta = self.delta_to_program(now_ns)
        if delta is not None:
            self.hypercalls += 1
        return delta


@dataclass
class RefCpu:
    queue: TimerQueue
    io: list[tuple[int, int]]  # (arrival ns, handler ns), sorted
    wakeups: int = 0
    expiries: int = 0
    io_irqs: int = 0
    io_busy_ns: int = 0
    delayed: int = 0
    delay_ns: int = 0
    trace: list[tuple[int, int]] = field(default_factory=list)  # (wake-up ns, expired)


@dataclass
class Reference:
    guests: list[RefGuest]
    devices: list[ClockEventDevice]
    cpus: list[RefCpu]


def _guests(spec: FleetSpec) -> tuple[list[RefGuest], Any]:
    """The same initial state as the engine's (the seed's draws, ``fleet.build``)."""
    arrays, cpu_of = build(spec)
    rows, guests = arrays.rows, []
    for g in range(spec.guests):
        timers = [
            GuestTimer(int(rows[g, gm.TIMER0 + k]), int(arrays.timer_period_ns[k]), k < 2)
            for k in range(gm.N_TIMERS)
            if rows[g, gm.TIMER0 + k] < gm.NEVER
        ]
        measuring = rows[g, gm.MEAS_NEXT] < gm.NEVER
        guests.append(
            RefGuest(
                mode=spec.modes[g % len(spec.modes)],
                workload=spec.workloads[g % len(spec.workloads)],
                anchor_ns=int(rows[g, gm.ANCHOR]),
                period_ns=spec.period_ns,
                timers=timers,
                meas_next_ns=int(rows[g, gm.MEAS_NEXT]) if measuring else None,
                meas_left=int(rows[g, gm.MEAS_LEFT]),
                interval_ns=spec.measure_interval_ns,
            )
        )
    return guests, (arrays, cpu_of)


def _cpu_process(
    env: simpy.Environment, cpu: RefCpu, end_ns: int
) -> Generator[simpy.Event, None, None]:
    """One host CPU: I/O interrupts and timer wake-ups, by the engine's documented rules."""
    busy_until, io_i = 0, 0
    while True:
        wake = cpu.queue.next_wakeup()
        wake_ns = gm.NEVER if wake is None else wake
        if io_i < len(cpu.io) and cpu.io[io_i][0] <= min(wake_ns, end_ns):
            arrival_ns, handler_ns = cpu.io[io_i]
            io_i += 1
            yield env.timeout(max(0, arrival_ns - env.now))
            busy_until = max(arrival_ns, busy_until) + handler_ns
            cpu.io_irqs += 1
            cpu.io_busy_ns += handler_ns
            continue
        if wake_ns > end_ns:
            return
        now = wake_ns
        if busy_until > now:
            cpu.delayed += 1
            cpu.delay_ns += busy_until - now
            now = busy_until
        yield env.timeout(max(0, now - env.now))
        cpu.wakeups += 1
        due = cpu.queue.expire(now)
        cpu.expiries += len(due)
        cpu.trace.append((now, len(due)))
        for timer in due:
            timer.callback(now)


def run_reference(spec: FleetSpec) -> Reference:
    """Run ``spec`` with the real classes under SimPy's virtual clock."""
    guests, (arrays, cpu_of) = _guests(spec)
    cpus = []
    for c in range(spec.cpus):
        lo, hi = arrays.cpu[c, layout.C_IO_NEXT], arrays.cpu[c, layout.C_IO_END]
        times, handlers = arrays.io_t_ns[lo:hi].tolist(), arrays.io_handler_ns[lo:hi].tolist()
        io = list(zip(times, handlers, strict=True))
        cpus.append(RefCpu(TimerQueue(spec.slop_ns), io))
    clock = GuestClock.create(10**9, now_ticks=ORIGIN_NS, system_time_ns=ORIGIN_NS)
    devices: list[ClockEventDevice] = []
    for g, guest in enumerate(guests):

        def interrupt(now_ns: int, guest: RefGuest = guest, g: int = g) -> None:
            delta = guest.on_irq(now_ns)
            if delta is not None:
                devices[g].set_next_event(delta, now_ns)

        queue = cpus[int(cpu_of[g])].queue
        devices.append(ClockEventDevice(clock, queue, interrupt, name=f"guest{g}"))
    for guest, dev in zip(guests, devices, strict=True):
        if guest.ticking:  # SET_PERIODIC one period before the first tick, in the past
            dev.set_periodic(spec.period_ns, guest.anchor_ns - spec.period_ns)
        elif (delta := guest.delta_to_program(0)) is not None:
            dev.set_next_event(delta, 0)
    env = simpy.Environment()
    for cpu in cpus:
        env.process(_cpu_process(env, cpu, spec.duration_ns))
    env.run()
    return Reference(guests, devices, cpus)
