"""The dedicated precise timer channel's device: SET_PRECISE and its own vector, served
by the host's deadline loop (``host/deadline_loop.py``) like the PV deadline device.

The guest asks for an absolute deadline on its PV clock; the loop wakes early by an
adaptive advance and raises ``PRECISE_VECTOR`` (the highest priority class); the guest
spins to the deadline in ring 3. With every call the guest also reports how early its last
interrupt-driven wake-up was (``shared.precise_margin_ns``), which tunes the advance. The
deadline arrives by hypercall, validated here; from then on the loop has it (a ``CALL``
channel), so the channel shares every piece of host machinery with ``--timer pv``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tickless.devices.device import Device, MachineContext, register_device
from tickless.devices.hypercall import as_signed
from tickless.guest.abi import PRECISE_VECTOR, Hypercall
from tickless.host.deadline_loop import ChannelKind, ChannelStats, DeadlineLoop, OwnedChannel
from tickless.host.tsc import rdtsc
from tickless.timers import policy
from tickless.timers.precise import AdaptiveAdvance


@dataclass
class PreciseCalls:
    armed: int = 0
    rejected: int = 0


@register_device
class PreciseTimerDevice(Device):
    def __init__(self, ctx: MachineContext, loop: DeadlineLoop) -> None:
        self.ctx = ctx
        self.loop = loop
        self.calls = PreciseCalls()
        self._last_irq_events = 0
        self._channel = OwnedChannel(
            loop,
            loop.add(
                ChannelKind.CALL,
                ctx.vm.fd,
                PRECISE_VECTOR,
                ctx.clock,
                AdaptiveAdvance().for_rate(ctx.config.rate),
                log_capacity=ctx.config.count + 16 if ctx.config.explain else 0,
            ),
        )
        ctx.timeline.subscribe(self._channel)

    @classmethod
    def create(cls, ctx: MachineContext) -> PreciseTimerDevice | None:
        if ctx.deadline_loop is None:
            return None
        device = cls(ctx, ctx.deadline_loop)
        ctx.hypercalls.register(Hypercall.SET_PRECISE, device.hc_set_precise)
        return device

    def hc_set_precise(self, deadline: int, _unused: int) -> int:
        """SET_PRECISE(deadline_ns): 0 cancels; a past deadline -ETIME, too far -EINVAL."""
        channel = self._channel.channel
        if channel is None:  # stopped
            return 0
        deadline = as_signed(deadline)
        if deadline == 0:
            self.loop.set_deadline(channel, 0, None)
            return 0
        code = policy.check_deadline(deadline, self.ctx.clock.ns_at(rdtsc()))
        if code:
            self.calls.rejected += 1
            return code
        shared = self.ctx.shared
        events = int(shared.precise_irq_events)
        margin = None
        if events != self._last_irq_events:  # the guest woke from an early interrupt
            self._last_irq_events = events
            margin = as_signed(int(shared.precise_margin_ns))  # clamped by the advance
        self.calls.armed += 1
        self.loop.set_deadline(channel, deadline, margin)
        return 0

    def stats(self) -> ChannelStats | None:
        return self._channel.stats()

    def event_log(self) -> npt.NDArray[np.uint64] | None:
        """``--explain``: the loop's expiries (``EVENT_FIELDS``), else None."""
        return self._channel.event_log()

    def stop(self, now_ticks: int) -> None:
        self._channel.release()

    def close(self) -> None:
        self.stop(0)
        self.ctx.timeline.unsubscribe(self._channel)
