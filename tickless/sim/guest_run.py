"""One simulated guest: a timer path and an optional device interrupt source on one vCPU,
run through the real host timer classes in virtual time (``sim/measure.py`` turns it into a
result record). ``lguest`` and ``lapic`` arm a ``ClockEventDevice`` for every event; the
absolute-deadline paths (``precise``, ``pv``) share one early-interrupt-and-spin loop here,
with what differs in ``sim/deadline_wait.py``."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from tickless.axes import Method, TickMode, TimerPath, Wait
from tickless.guest.abi import MIN_DELTA_NS
from tickless.results.spec import MeasureSpec, Progress
from tickless.sim.counts import SimCounts
from tickless.sim.deadline_wait import DeadlineWaiter, PreciseWaiter, PvWaiter
from tickless.sim.interference import HandlerCost, IrqSource, VcpuBusy
from tickless.sim.platforms import hold_back_for
from tickless.sim.profile import PlatformProfile
from tickless.timers.clock import NSEC_PER_SEC, GuestClock
from tickless.timers.clockevents import ClockEventDevice
from tickless.timers.hrtimer import TimerQueue
from tickless.timers.injection import HoldBackWindow
from tickless.timers.precise import PreciseTimerChannel
from tickless.timers.pv_deadline import PvDeadlineChannel

_PROGRESS_EVERY = 512
_LATENCY_CHUNK = 4096


@dataclass
class Latencies:
    """Delivery latencies drawn in chunks from their own stream."""

    profile: PlatformProfile
    rng: np.random.Generator
    _buf: list[int] = field(default_factory=list)
    _i: int = 0

    def next(self) -> int:
        if self._i == len(self._buf):
            self._buf = self.profile.delivery.sample(self.rng, _LATENCY_CHUNK).tolist()
            self._i = 0
        value = self._buf[self._i]
        self._i += 1
        return value


class SimulatedGuest:
    """One guest with one timer and (optionally) one device interrupt source on its vCPU."""

    def __init__(
        self,
        spec: MeasureSpec,
        profile: PlatformProfile,
        irq_rate_per_s: float,
        handler: HandlerCost,
    ) -> None:
        self.spec = spec
        self.profile = profile
        latency_seq, irq_seq = np.random.SeedSequence(spec.seed).spawn(2)
        self.latencies = Latencies(profile, np.random.default_rng(latency_seq))
        # The device's rate is in guest time, its handler's cost in wall time: at dilation
        # R a guest second is 1/R wall seconds, so R x the rate arrives per wall second.
        self.irqs = IrqSource(
            irq_rate_per_s * float(spec.rate),
            handler,
            profile.irq_overhead_ns,
            np.random.default_rng(irq_seq),
        )
        self.clock = GuestClock.create(NSEC_PER_SEC, 0, rate=spec.rate)
        self.queue = TimerQueue(slop_ticks=max(spec.slop_ns, profile.host_slop_ns))
        self.device = ClockEventDevice(self.clock, self.queue, self._raise, name="sim-timer")
        self.counts = SimCounts()
        self.window = HoldBackWindow(self._hold_back_ns())
        self.waiter: DeadlineWaiter | None = self._waiter()
        self.spin_until: int | None = None  # an absolute-deadline guest spins to this tick
        self.cpu = VcpuBusy()
        self.pending_irq: int | None = None  # when the raised timer interrupt reaches the guest
        self.pending_waited = False  # whether that interrupt already waited for a handler
        self.irq_queue: deque[int] = deque()  # costs of raised device interrupts, FIFO
        self.dispatch_at: int | None = None  # when the next of them may start
        self.min_delta_ns = max(MIN_DELTA_NS, profile.min_delta_ns)
        self.timestamps: list[int] = []
        self.interrupt_lateness_ns: list[int] = []  # absolute paths: arrival - deadline
        self.spin_ns = 0  # absolute paths: guest time spun to deadlines
        self._spin_from_ns = 0
        self.t0_ns = 0
        self.deadline_ns = 0

    def _hold_back_ns(self) -> int:
        """The precise channel's window (the spec's, else this platform's handlers');
        other paths keep the profile's."""
        spec, profile = self.spec, self.profile
        if spec.timer is not TimerPath.PRECISE:
            return profile.hold_back_ns
        if spec.hold_back_ns is not None:
            return spec.hold_back_ns
        return hold_back_for(profile.irq_overhead_ns)

    def _waiter(self) -> DeadlineWaiter | None:
        """The guest side of an absolute-deadline path, on its host channel (else None)."""
        threshold_ns = self.spec.spin_threshold_ns
        if self.spec.timer is TimerPath.PRECISE:
            channel = PreciseTimerChannel(self.clock, self.queue, self._raise)
            return PreciseWaiter(channel, self.counts, threshold_ns, self.window.window_ns)
        if self.spec.timer is TimerPath.PV:
            pv = PvDeadlineChannel(self.clock, self.queue, self._raise)
            return PvWaiter(pv, self.clock, self.counts, threshold_ns)
        return None

    # --- host side -------------------------------------------------------------------
    def _raise(self, now_ticks: int) -> None:
        """The device's interrupt request: it reaches the guest after a delivery latency."""
        if self.pending_irq is not None:
            self.counts.merged += 1  # an edge interrupt already pending absorbs this one
            return
        self.pending_irq = now_ticks + self.latencies.next()
        self.pending_waited = False

    def _host_wakeup(self, now: int) -> None:
        self.counts.wakeups += 1
        for timer in self.queue.expire(now):
            timer.callback(now)

    # --- guest side ------------------------------------------------------------------
    def _arm(self, deadline_ns: int, now: int) -> None:
        """arm_lguest() or arm_lapic(): program the device for a guest-clock deadline, as a
        delta from the guest's now (the lapic's TSC deadline lands the same)."""
        delta = max(deadline_ns - self.clock.ns_at(now), self.min_delta_ns)
        code = self.device.set_next_event(delta, now)
        if code != 0:
            raise RuntimeError(f"simulated device refused delta {delta} ns: {code}")
        self.counts.exits += 1
        if self.spec.timer is TimerPath.LGUEST:
            self.counts.hypercalls += 1

    def _next_deadline(self, event_ns: int) -> int:
        """The next event's deadline, once ``event_ns`` is recorded."""
        if self.spec.method is Method.ABSOLUTE:
            return self.t0_ns + len(self.timestamps) * self.spec.interval_ns
        return event_ns + self.spec.interval_ns

    def _timer_interrupt(self, now: int) -> None:
        """The guest takes its timer interrupt (or waits for a running handler first)."""
        if self.cpu.busy_until > now:
            if not self.pending_waited:
                self.counts.blocked += 1
                self.pending_waited = True
            self.counts.blocked_ns += self.cpu.busy_until - now
            self.pending_irq = self.cpu.busy_until
            return
        self.pending_irq = None
        self.counts.injections += 1
        now_ns = self.clock.ns_at(now)
        count = self.spec.count
        if self.waiter is not None:  # woken early: report the margin, spin to the deadline
            self.waiter.woke(self.deadline_ns - now_ns)
            self.interrupt_lateness_ns.append(now_ns - self.deadline_ns)
            self._spin_from_ns = now_ns
            self.spin_until = max(now, self.clock.ticks_at_or_after(self.deadline_ns))
            return
        if self.spec.mode is TickMode.PERIODIC:
            while len(self.timestamps) <= count and now_ns >= self.deadline_ns:
                self.timestamps.append(now_ns)
                self.deadline_ns = self._next_deadline(now_ns)
        else:
            self.timestamps.append(now_ns)
            if len(self.timestamps) <= count:
                self.deadline_ns = self._next_deadline(now_ns)
                self._arm(self.deadline_ns, now)
        if len(self.timestamps) <= count:
            self._halt()
        self._schedule_dispatch(now)

    def _deadline_wait(self, now: int) -> None:
        """precise_wait() or pv_wait(): hand the host the deadline; if an early interrupt
        will come, halt for it, else spin to the deadline directly."""
        assert self.waiter is not None
        if self.waiter.wait(self.deadline_ns, now):
            self._halt()
            return
        self._spin_from_ns = self.clock.ns_at(now)
        self.spin_until = max(now, self.clock.ticks_at_or_after(self.deadline_ns))

    def _spin_done(self, now: int) -> None:
        """The spinning guest reads its clock at the deadline, unless a handler runs then."""
        if self.cpu.busy_until > now:
            if not self.pending_waited:
                self.counts.blocked += 1
                self.pending_waited = True
            self.counts.blocked_ns += self.cpu.busy_until - now
            self.spin_until = self.cpu.busy_until
            return
        self.spin_until = None
        self.pending_waited = False
        now_ns = self.clock.ns_at(now)
        self.timestamps.append(now_ns)
        self.spin_ns += max(0, now_ns - self._spin_from_ns)
        if len(self.timestamps) <= self.spec.count:
            self.deadline_ns = self._next_deadline(now_ns)
            self._deadline_wait(now)
        self._schedule_dispatch(now)

    def _halt(self) -> None:
        if self.spec.wait is Wait.HALT:
            self.counts.halts += 1
            self.counts.exits += 1

    def _device_interrupt(self, now: int) -> None:
        """A device interrupt is raised: it queues for the CPU (handlers do not nest)."""
        self.irq_queue.append(self.irqs.pop())
        self._schedule_dispatch(now)

    def _hold(self, now: int) -> bool:
        """The precise channel's rule: hold back inside the window before the deadline the
        guest is waiting for (as it publishes it: until its event, not the device's expiry)."""
        if self.window.window_ns == 0 or len(self.timestamps) > self.spec.count:
            return False
        now_ns = self.clock.ns_at(now)
        return self.window.release_at(now_ns, self.deadline_ns) > now_ns

    def _schedule_dispatch(self, now: int) -> None:
        """When the next queued device interrupt can start: once the CPU is free."""
        if self.irq_queue and self.dispatch_at is None:
            self.dispatch_at = max(now, self.cpu.busy_until)

    def _dispatch(self, now: int) -> None:
        """Start the next queued handler, unless the precise channel holds it back; held
        interrupts are tried again after the next timer event."""
        self.dispatch_at = None
        if self._hold(now):
            self.counts.held += 1
            return
        self.cpu.run(now, self.irq_queue.popleft())
        self.counts.io_irqs += 1
        self.counts.exits += round(self.profile.irq_exits)
        self._schedule_dispatch(now)

    # --- the event loop --------------------------------------------------------------
    def execute(self, progress: Progress | None) -> list[int]:
        """Run until ``count`` events are recorded; returns the count + 1 timestamps (ns)."""
        spec, count = self.spec, self.spec.count
        self.t0_ns = self.clock.ns_at(0)
        self.timestamps.append(self.t0_ns)
        self.deadline_ns = self._next_deadline(self.t0_ns)
        if self.waiter is not None:
            self._deadline_wait(0)
        elif spec.mode is TickMode.PERIODIC:
            self.counts.hypercalls += 1
            self.counts.exits += 1
            self.device.set_periodic(NSEC_PER_SEC // spec.hz, 0)
            self._halt()
        else:
            self._arm(self.deadline_ns, 0)
            self._halt()
        reported = 0
        never = 1 << 62
        while len(self.timestamps) <= count:
            wake = self.queue.next_wakeup()
            t_wake = never if wake is None else wake
            t_irq = never if self.pending_irq is None else self.pending_irq
            t_dev = never if self.irqs.next_at is None else self.irqs.next_at
            t_spin = never if self.spin_until is None else self.spin_until
            t_start = never if self.dispatch_at is None else self.dispatch_at
            now = min(t_wake, t_irq, t_dev, t_spin, t_start)
            if now == never:
                raise RuntimeError("simulation stalled: no timer armed and nothing pending")
            # Ties: the host expiry first (it raises interrupts), then the timer interrupt
            # (the higher vector), the spinning guest's clock read, then device interrupts
            # (raised, then started).
            if now == t_wake:
                self._host_wakeup(now)
            elif now == t_irq:
                self._timer_interrupt(now)
            elif now == t_spin:
                self._spin_done(now)
            elif now == t_dev:
                self._device_interrupt(now)
            else:
                self._dispatch(now)
            if progress is not None and len(self.timestamps) - 1 - reported >= _PROGRESS_EVERY:
                reported = len(self.timestamps) - 1
                progress(reported)
        self.counts.end_ticks = self.clock.ticks_at_or_after(self.timestamps[-1])
        if spec.mode is TickMode.PERIODIC:
            self.device.set_periodic(0, self.counts.end_ticks)
            self.counts.hypercalls += 1
            self.counts.exits += 1
        self.counts.hypercalls += 1  # DONE
        self.counts.exits += 1
        self.counts.starved = len(self.irq_queue)
        if progress is not None:
            progress(count)
        return self.timestamps
