"""A device that raises I/O interrupts into the guest: the paper's heavy-I/O load.

Interrupts arrive as a Poisson process at ``rate_per_s`` (the paper measured 1733/s of disk
interrupts against 11.5/s idle) and go to the same vCPU as the timer, whose guest handler
stays busy for a configurable time with interrupts off, so they really compete with the
timer's. With a precise channel, interrupts due inside the hold-back window before the
guest's next precise deadline wait until just after it (never longer than
``max_hold_ns``: the guest only hints its deadline, and must not starve its own device).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tickless.devices.device import Device, MachineContext, register_device
from tickless.guest.abi import IO_VECTOR
from tickless.timers.clock import GuestClock
from tickless.timers.hrtimer import HostTimer, TimerBase
from tickless.timers.injection import HoldBackWindow

RETRY_NS = 50_000  # one interrupt in flight: look again this much later
LOST_AFTER_NS = 2_000_000  # an interrupt not handled by then is counted lost
RELEASE_AFTER_NS = 1_000  # held-back interrupts go in this long after the deadline


@dataclass
class IoStats:
    arrivals: int = 0  # interrupts the device raised
    injected: int = 0  # interrupts delivered to the guest
    deferred: int = 0  # interrupts held back by the precise channel's window
    forced: int = 0  # held too long: injected inside a window anyway
    lost: int = 0  # injected but never handled (e.g. merged into a pending one)
    not_ready: int = 0  # arrivals dropped before the guest took interrupts
    first_arrival_ns: int | None = None  # guest clock: when the load really began
    last_ns: int = 0  # guest clock: the device's last activity

    def rate_per_s(self, handled: int) -> float:
        """Interrupts the guest handled per second of the load's lifetime."""
        if self.first_arrival_ns is None or self.last_ns <= self.first_arrival_ns:
            return 0.0
        return handled * 1e9 / (self.last_ns - self.first_arrival_ns)


class IoInterruptSource:
    def __init__(
        self,
        rate_per_s: float,
        clock: GuestClock,
        timers: TimerBase,
        inject: Callable[[], None],
        guest_handled: Callable[[], int],
        guest_ready: Callable[[], bool],
        precise_deadline_ns: Callable[[], int] | None = None,
        hold_back: HoldBackWindow | None = None,
        seed: int = 0,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("I/O interrupt rate must be positive")
        self.rate_per_s = rate_per_s
        self.clock = clock
        self.timers = timers
        self.inject = inject
        self.guest_handled = guest_handled
        self.guest_ready = guest_ready
        self._last_handled = 0
        self._progress_ns = 0
        self.precise_deadline_ns = precise_deadline_ns
        self.hold_back = hold_back
        self.max_hold_ns = 2 * hold_back.window_ns + RETRY_NS if hold_back else 0
        self.stats = IoStats()
        self._rng = np.random.default_rng(seed)
        self._backlog: list[int] = []  # arrival times (guest ns) not yet injected
        self._counted_deferred = 0  # head of the backlog already counted as deferred
        self._arrival = HostTimer(self._arrive, name="io-arrival")
        self._pump_timer = HostTimer(self._pump, name="io-pump")
        self._mean_gap_ns = 1e9 / rate_per_s
        self._next_arrival_ns = 0

    def start(self, now_ticks: int) -> None:
        self._next_arrival_ns = self.clock.ns_at(now_ticks) + self._gap_ns()
        self.timers.arm(self._arrival, self.clock.ticks_at_or_after(self._next_arrival_ns))

    def stop(self, now_ticks: int) -> None:
        self.stats.last_ns = self.clock.ns_at(max(now_ticks, self.clock.tsc_timestamp))
        self.timers.cancel(self._arrival)
        self.timers.cancel(self._pump_timer)

    def begin_clock_change(self) -> None:
        """Nothing to mark: the arrivals follow at ``clock_changed``."""

    def clock_changed(self, clock: GuestClock, now_ticks: int) -> None:
        """The schedule is in guest time: re-arm it on the re-anchored clock (a new rate
        changes the rate per wall second; nothing arrives while the clock is frozen)."""
        self.timers.cancel(self._arrival)
        self.timers.cancel(self._pump_timer)
        self.clock = clock
        if clock.frozen or not self._next_arrival_ns:
            return
        self.timers.arm(self._arrival, clock.ticks_at_or_after(self._next_arrival_ns))
        if self._backlog:
            self.timers.arm(self._pump_timer, now_ticks + 1)

    def _gap_ns(self) -> int:
        return max(1, int(self._rng.exponential(self._mean_gap_ns)))

    def _arrive(self, now_ticks: int) -> None:
        """Take every arrival due by now: the schedule is absolute, so a late host wake-up
        delays interrupts but does not thin them out."""
        now_ns = self.clock.ns_at(max(now_ticks, self.clock.tsc_timestamp))
        ready = self.guest_ready()
        while self._next_arrival_ns <= now_ns:
            if ready:
                self.stats.arrivals += 1
                if self.stats.first_arrival_ns is None:
                    self.stats.first_arrival_ns = self._next_arrival_ns
                self._backlog.append(self._next_arrival_ns)
            else:
                self.stats.not_ready += 1
            self._next_arrival_ns += self._gap_ns()
        if not self.clock.frozen:
            self.timers.arm(self._arrival, self.clock.ticks_at_or_after(self._next_arrival_ns))
        self._pump(now_ticks)

    def _retry(self, now_ticks: int, at_ns: int) -> None:
        if self.clock.frozen:
            return  # clock_changed pumps again at the thaw
        at_ticks = max(now_ticks + 1, self.clock.ticks_at_or_after(at_ns))
        self.timers.arm(self._pump_timer, at_ticks)

    def _pump(self, now_ticks: int) -> None:
        if not self._backlog:
            return
        now_ns = self.clock.ns_at(max(now_ticks, self.clock.tsc_timestamp))
        if self.hold_back is not None and self.precise_deadline_ns is not None:
            release_ns = self.hold_back.release_at(now_ns, self.precise_deadline_ns())
            if release_ns > now_ns:
                if now_ns - self._backlog[0] < self.max_hold_ns:
                    self.stats.deferred += len(self._backlog) - self._counted_deferred
                    self._counted_deferred = len(self._backlog)
                    self._retry(now_ticks, release_ns + RELEASE_AFTER_NS)
                    return
                self.stats.forced += 1
        handled = self.guest_handled()
        if handled != self._last_handled:
            self._last_handled, self._progress_ns = handled, now_ns
        in_flight = self.stats.injected - self.stats.lost - handled
        if in_flight < 0:  # counted lost, but the guest took them after all
            self.stats.lost = max(0, self.stats.lost + in_flight)
            in_flight = self.stats.injected - self.stats.lost - handled
        if in_flight >= 1:  # not yet in service: another now would merge with it in IRR
            if now_ns - self._progress_ns < LOST_AFTER_NS:
                self._retry(now_ticks, now_ns + RETRY_NS)
                return
            self.stats.lost += in_flight  # no progress for long: stop waiting for them
        if in_flight <= 0:
            self._progress_ns = now_ns
        self._backlog.pop(0)
        self._counted_deferred = max(0, self._counted_deferred - 1)
        self.stats.injected += 1
        self.inject()
        if self._backlog:
            self._retry(now_ticks, now_ns + RETRY_NS)


@register_device
class IoInterruptDevice(Device):
    """The I/O load as a device of the machine: present when ``io_rate_per_s`` > 0."""

    def __init__(self, ctx: MachineContext, source: IoInterruptSource) -> None:
        self.ctx = ctx
        self.source = source

    @classmethod
    def create(cls, ctx: MachineContext) -> IoInterruptDevice | None:
        cfg, shared = ctx.config, ctx.shared
        if cfg.io_rate_per_s <= 0:
            return None
        source = IoInterruptSource(
            cfg.io_rate_per_s,
            ctx.clock,
            ctx.timers,
            inject=lambda: ctx.inject(IO_VECTOR),
            guest_handled=lambda: int(shared.io_irq_count),
            guest_ready=lambda: bool(shared.ready),
            precise_deadline_ns=lambda: int(shared.precise_deadline_ns),
            hold_back=HoldBackWindow(cfg.hold_back_ns) if cfg.hold_back_ns else None,
            seed=cfg.seed,
        )
        ctx.timeline.subscribe(source)
        return cls(ctx, source)

    def close(self) -> None:
        self.ctx.timeline.unsubscribe(self.source)

    def start(self, now_ticks: int) -> None:
        self.source.start(now_ticks)

    def stop(self, now_ticks: int) -> None:
        self.source.stop(now_ticks)
