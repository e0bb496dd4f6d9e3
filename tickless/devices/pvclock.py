"""The paravirtual clock page (kvmclock's pvclock ABI), filled in by the host.

Updates follow the pvclock protocol: make ``version`` odd, write, make it even again;
the guest retries a read that saw an odd or changed version.
"""

from __future__ import annotations

import ctypes

from tickless.devices.device import Device, MachineContext, register_device
from tickless.guest.abi import PVCLOCK_TSC_STABLE_BIT, PvclockVcpuTimeInfo
from tickless.timers.clock import GuestClock


class PvclockPage:
    """The page in guest memory; ``publish`` writes a clock into it. A re-anchoring
    (``Timeline``) calls ``begin`` before it reads "now" for the new anchor: a guest that
    read the old page after that instant sees an odd or changed version and retries, so
    no reading of the old clock is later than the new clock's start (never backwards)."""

    def __init__(self, page: memoryview) -> None:
        self.info = PvclockVcpuTimeInfo.from_buffer(page)

    def begin(self) -> None:
        """Mark the page "being updated" (an odd version), once."""
        if self.info.version % 2 == 0:
            self.info.version += 1

    def publish(self, clock: GuestClock) -> None:
        info = self.info
        self.begin()
        info.tsc_timestamp = clock.tsc_timestamp
        info.system_time = clock.system_time_ns
        info.tsc_to_system_mul = clock.scale.mul
        info.tsc_shift = clock.scale.shift
        info.flags = PVCLOCK_TSC_STABLE_BIT
        info.version += 1


@register_device
class PvclockDevice(Device):
    """Publishes the guest's clock (dilation included) at the layout's PV clock page before
    boot, and again whenever its timeline re-anchors it (a new rate, a warp, a freeze)."""

    def __init__(self, ctx: MachineContext, page: PvclockPage) -> None:
        self.ctx = ctx
        self.page = page

    @classmethod
    def create(cls, ctx: MachineContext) -> PvclockDevice:
        size = ctypes.sizeof(PvclockVcpuTimeInfo)
        view = ctx.memory.view(ctx.layout.pvclock_gpa, size, "pvclock")
        device = cls(ctx, PvclockPage(view))
        device.page.publish(ctx.clock)
        ctx.timeline.subscribe(device)
        return device

    def begin_clock_change(self) -> None:
        self.page.begin()

    def clock_changed(self, clock: GuestClock, now_ticks: int) -> None:
        self.page.publish(clock)

    def close(self) -> None:
        """Before guest memory goes: the group's next re-anchoring must not write it."""
        self.ctx.timeline.unsubscribe(self)
