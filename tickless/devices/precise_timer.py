"""The dedicated precise timer channel's device: SET_PRECISE, its own vector, its own
host timer thread.

The guest asks for an absolute deadline on its PV clock; ``PreciseTimerChannel``
(``timers/precise.py``) wakes early by an adaptive advance and this device raises
``PRECISE_VECTOR`` (the highest priority class); the guest spins to the deadline in ring 3.
With every call the guest also reports how early its last interrupt-driven wake-up was
(``shared.precise_margin_ns``), which tunes the advance.
"""

from __future__ import annotations

from tickless.devices.device import Device, MachineContext, register_device
from tickless.devices.hypercall import as_signed
from tickless.guest.abi import PRECISE_VECTOR, Hypercall
from tickless.host.tsc import rdtsc
from tickless.timers.precise import PreciseTimerChannel


@register_device
class PreciseTimerDevice(Device):
    def __init__(self, ctx: MachineContext) -> None:
        self.ctx = ctx
        self.channel = PreciseTimerChannel(
            ctx.clock, ctx.precise_timers, self.raise_precise_interrupt, name=f"{ctx.name}-pt"
        )
        self._last_irq_events = 0

    @classmethod
    def create(cls, ctx: MachineContext) -> PreciseTimerDevice:
        device = cls(ctx)
        ctx.hypercalls.register(Hypercall.SET_PRECISE, device.hc_set_precise)
        return device

    def hc_set_precise(self, deadline: int, _unused: int) -> int:
        """SET_PRECISE(deadline_ns): 0 cancels; a past deadline -ETIME, too far -EINVAL."""
        shared = self.ctx.shared
        events = int(shared.precise_irq_events)
        margin = None
        if events != self._last_irq_events:  # the guest woke from an early interrupt
            self._last_irq_events = events
            margin = as_signed(int(shared.precise_margin_ns))  # clamped by the advance
        return self.channel.set_deadline(as_signed(deadline), rdtsc(), margin)

    def raise_precise_interrupt(self, now_ticks: int) -> None:
        self.ctx.inject(PRECISE_VECTOR)

    def stop(self, now_ticks: int) -> None:
        self.channel.cancel()
