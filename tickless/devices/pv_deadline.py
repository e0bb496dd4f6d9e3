"""The PV deadline device (``--timer pv``): absolute deadlines, exitless re-arming, an
adaptive advance, and a ring-3 spin for the residual.

The guest publishes its next deadline, absolute on its PV clock, in its shared page
(``pv_deadline_ns``). The host's deadline loop (``host/deadline_loop.py``, a C thread
shared by every guest) promises in ``pv_host_armed_ns`` the earliest deadline it will see
in time; the guest exits — a 32-bit ``out`` to ``PV_KICK_PORT``, an ioeventfd that wakes
the loop in the kernel without reaching Python — only when its new deadline is earlier
than that promise (the idea of the 2017 "kvm pvtimer" RFC). The loop wakes early by an
adaptive advance, injects ``TIMER_VECTOR``, and the guest spins on its PV clock, in ring 3,
to the exact deadline; the margin it reports tunes the advance. No event is early.

A Linux guest (its driver: ``guest/linux/drivers/tickless/clockevent.c``) publishes and
kicks by the same rule but cannot spin (its handler runs in ring 0, and an early interrupt
is only re-armed by the hrtimer core): its channel is "deliver exact", so the loop wakes
early by the advance and waits out the rest in C before it injects, through the IOAPIC
pin Linux routes ``TIMER_VECTOR`` to (``ctx.irq_routes``).

Python only sets the device up and tears it down: no per-event work runs under the GIL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

import numpy as np
import numpy.typing as npt

from tickless.axes import GuestKind, TimerPath
from tickless.devices.bus import BusDevice
from tickless.devices.device import Device, MachineContext, register_device
from tickless.guest.abi import PV_BLOCK_PORT, PV_KICK_PORT, TIMER_VECTOR
from tickless.host.deadline_loop import ChannelKind, ChannelStats, DeadlineLoop, OwnedChannel
from tickless.kvm.vcpu import Vcpu
from tickless.timers.pv_deadline import pv_advance

KICK_WIDTH_BYTES = 4  # the ioeventfd matches 32-bit writes; others exit to Python


@register_device
class PvDeadlineDevice(Device, BusDevice):
    """One guest's PAGE channel on the host's deadline loop, and its kick port."""

    name = "pv-deadline"

    def __init__(self, ctx: MachineContext, loop: DeadlineLoop) -> None:
        self.ctx = ctx
        self.loop = loop
        self.slow_kicks = 0  # kicks of another width, which came through Python
        self.blocks = 0  # PV idle: BLOCKs (PV_BLOCK_PORT writes) taken
        self._stopping = False
        self._kick_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # PV idle (--pv-idle block): the vCPU thread waits on it in the loop's dl_block
        self._block_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._channel: OwnedChannel | None = None
        try:
            ctx.vm.ioeventfd(PV_KICK_PORT, KICK_WIDTH_BYTES, self._kick_fd)
            channel = loop.add(
                ChannelKind.PAGE,
                ctx.vm.fd,
                TIMER_VECTOR,
                ctx.clock,
                pv_advance().for_rate(ctx.config.rate),
                page_address=ctypes.addressof(ctx.shared),
                kick_fd=self._kick_fd,
                gsi=ctx.irq_routes.get(TIMER_VECTOR),
                log_capacity=ctx.config.count + 2 if ctx.config.explain else 0,
                exact=ctx.config.guest is GuestKind.LINUX,
                block_fd=self._block_fd,
            )
            self._channel = OwnedChannel(loop, channel)
            ctx.timeline.subscribe(self._channel)
        except BaseException:
            self.close()
            raise

    @classmethod
    def create(cls, ctx: MachineContext) -> PvDeadlineDevice | None:
        """Every small guest has one (an unused channel costs the loop nothing); a Linux
        guest when its driver runs on it (``--timer pv``)."""
        loop = ctx.deadline_loop
        wanted = ctx.config.guest is GuestKind.SMALL or ctx.config.timer is TimerPath.PV
        if not wanted or loop is None:
            if ctx.config.timer is TimerPath.PV:
                raise ValueError("--timer pv needs a host with a deadline loop")
            return None
        device = cls(ctx, loop)
        ctx.bus.add_io(PV_KICK_PORT, KICK_WIDTH_BYTES, device)
        return device

    def io_write(self, port: int, data: bytes, vcpu: Vcpu) -> None:
        """A kick of another width than the ioeventfd's: wake the loop the slow way. A
        byte to ``PV_BLOCK_PORT`` (PV idle, lguest's LHCALL_HALT): this vCPU thread waits in
        the loop, without the GIL, until the page's deadline is due; the loop then ends
        the wait instead of injecting, and the guest resumes after its ``out`` with no
        interrupt entry (it sees ``pv_block_wakes`` move). A deadline already delivered,
        none, or a stop ends the wait at once: the guest then waits for an interrupt."""
        if port == PV_BLOCK_PORT and len(data) == 1:
            channel = self._channel.channel if self._channel is not None else None
            if channel is not None and not self._stopping:
                self.blocks += 1
                self.loop.block(channel, int(self.ctx.shared.pv_deadline_ns))
            return
        self.slow_kicks += 1
        os.eventfd_write(self._kick_fd, 1)

    def stopping(self) -> None:
        """The guest is being stopped: a BLOCK in progress ends now, and no new one waits."""
        self._stopping = True
        if self._channel is not None and self._channel.channel is not None:
            self.loop.unblock(self._channel.channel)

    def stats(self) -> ChannelStats | None:
        return self._channel.stats() if self._channel is not None else None

    def event_log(self) -> npt.NDArray[np.uint64] | None:
        """The loop's per-expiry log (``host.deadline_loop.EVENT_FIELDS``), if kept."""
        return self._channel.event_log() if self._channel is not None else None

    def stop(self, now_ticks: int) -> None:
        """The guest stopped: keep what the loop knew, then take the channel out of it."""
        if self._channel is not None:
            self._channel.release()

    def close(self) -> None:
        """Before guest memory goes: the loop must not touch it again."""
        self.stop(0)
        if self._channel is not None:
            self.ctx.timeline.unsubscribe(self._channel)
        if self._kick_fd >= 0:
            # The VM may already be gone: the kernel dropped the ioeventfd with it.
            with contextlib.suppress(Exception):
                self.ctx.vm.ioeventfd(PV_KICK_PORT, KICK_WIDTH_BYTES, self._kick_fd, deassign=True)
            os.close(self._kick_fd)
            self._kick_fd = -1
        if self._block_fd >= 0:
            os.close(self._block_fd)
            self._block_fd = -1
