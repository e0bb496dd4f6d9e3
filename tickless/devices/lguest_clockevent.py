"""The lguest clock-event device (``--timer lguest``), as lguest's: the guest asks for an
interrupt ``delta`` ns from now, the host arms a high-resolution timer, and its expiry
raises ``TIMER_VECTOR``. Every re-arm is an exit and the delta is converted at the host's
"now", after the guest's: the baseline the PV deadline device (``pv_deadline.py``) beats.
The Linux guest's driver and the idle workload use it.

It also answers ``BLOCK`` (Xen's ``SCHEDOP_block`` with a one-shot): "this vCPU is idle
until its clock reads ``deadline``" (``0``: until the event programmed here). The one-shot
is this device's, and the vCPU's member of its ``Timeline`` is marked idle, so a group on
``--warp-idle`` whose every vCPU blocks jumps its clock to the earliest deadline and raises
the due one-shots at once (``ClockEventDevice.fire_if_due``, no host timer involved).

The whole host side of one timer event reads here, top to bottom:

1. the guest's ``out`` to the hypercall port arrives as ``hc_set_clockevent`` (the run loop
   in ``vmm/machine.py`` hands the exit to the bus, the bus to the hypercall port);
2. ``ClockEventDevice.set_next_event`` (``timers/clockevents.py``, shared with the
   simulator) turns the delta into a deadline on the guest's clock and arms a host timer
   on the host timer thread (``host/timer_thread.py``);
3. when the timer thread's timerfd fires, it runs ``raise_timer_interrupt`` below, which
   injects the interrupt (``KVM_SIGNAL_MSI``).
"""

from __future__ import annotations

from collections.abc import Callable

from tickless.axes import GuestKind
from tickless.devices.device import Device, MachineContext, register_device
from tickless.devices.hypercall import as_signed
from tickless.guest.abi import EINVAL, ETIME, TIMER_VECTOR, Hypercall
from tickless.host.tsc import rdtsc
from tickless.timers.clockevents import ClockEventDevice
from tickless.timers.timeline import NO_TIMER_NS


@register_device
class LguestClockEventDevice(Device):
    """SET_CLOCKEVENT (one-shot) and SET_PERIODIC (a HZ tick) on the guest's PV clock."""

    def __init__(self, ctx: MachineContext) -> None:
        self.ctx = ctx
        self.clockevent = ClockEventDevice(
            ctx.clock, ctx.timers, self.raise_timer_interrupt, name=f"{ctx.name}-lguest"
        )

    @classmethod
    def create(cls, ctx: MachineContext) -> LguestClockEventDevice:
        device = cls(ctx)
        ctx.hypercalls.register(Hypercall.SET_CLOCKEVENT, device.hc_set_clockevent)
        ctx.hypercalls.register(Hypercall.SET_PERIODIC, device.hc_set_periodic)
        ctx.hypercalls.register(Hypercall.BLOCK, device.hc_block)
        ctx.timeline.subscribe(device.clockevent)
        ctx.member.deliver = device.deliver_now
        return device

    # --- the vCPU thread: the guest programs its timer ------------------------------------

    def hc_set_clockevent(self, delta: int, _unused: int) -> int:
        """SET_CLOCKEVENT(delta_ns): 0 cancels; too small -ETIME, too large -EINVAL."""
        return self.clockevent.set_next_event(as_signed(delta), rdtsc())

    def hc_set_periodic(self, period: int, _unused: int) -> int:
        """SET_PERIODIC(period_ns): a tick every period; 0 stops it."""
        return self.clockevent.set_periodic(as_signed(period), rdtsc())

    def hc_block(self, deadline: int, _unused: int) -> int:
        """BLOCK(deadline_ns): idle until then (0: until the programmed event; with none, in
        lockstep, until a message: ``Timeline.idles_without_timer``, else -EINVAL). The
        timer is armed before the vCPU counts as idle: a warp it causes re-arms a timer
        that exists."""
        deadline = as_signed(deadline)
        if deadline == 0:
            pending, clock = self.clockevent.next_event_ns, self.ctx.clock
            if pending is None and self.ctx.timeline.idles_without_timer():
                self.ctx.timeline.block(self.ctx.member, NO_TIMER_NS)
                return 0
            if pending is None:
                return -EINVAL
            now = rdtsc()
            if clock.ns_at(max(now, clock.tsc_timestamp)) >= pending:
                # Already due: do not sleep. Raised now (once: the host timer is cancelled
                # first), for a held clock arms no host timer, so none may be on its way.
                self.clockevent.fire_if_due(now)
                return -ETIME
            deadline = pending
        else:
            code = self.clockevent.set_deadline(deadline, rdtsc())
            if code:
                return code
        self.ctx.timeline.block(self.ctx.member, deadline)
        return 0

    def deliver_now(self, now_ticks: int) -> Callable[[], bool] | None:
        """A warp reached this vCPU's deadline: raise it now; returns whether the guest has
        run on since (the small guest counts ``block_wakes`` once it has read its clock,
        a Linux guest's handler counts ``irq_count``)."""
        shared = self.ctx.shared
        small = self.ctx.config.guest is GuestKind.SMALL
        field = "block_wakes" if small else "irq_count"
        seen = int(getattr(shared, field))
        if not self.clockevent.fire_if_due(now_ticks):
            return None
        return lambda: int(getattr(shared, field)) != seen

    # --- the host timer thread: the event is due ------------------------------------------

    def raise_timer_interrupt(self, now_ticks: int) -> None:
        self.ctx.member.wake()  # it runs now: the group may not warp until it blocks again
        self.ctx.shared.host_fired += 1  # the guest counts what it took: merges show
        self.ctx.inject(TIMER_VECTOR)

    def stop(self, now_ticks: int) -> None:
        self.clockevent.shutdown()

    def close(self) -> None:
        self.ctx.timeline.unsubscribe(self.clockevent)
