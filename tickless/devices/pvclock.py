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
    """The page in guest memory; ``publish`` writes a clock into it."""

    def __init__(self, page: memoryview) -> None:
        self.info = PvclockVcpuTimeInfo.from_buffer(page)

    def publish(self, clock: GuestClock) -> None:
        info = self.info
        info.version += 1  # odd: update in progress
        info.tsc_timestamp = clock.tsc_timestamp
        info.system_time = clock.system_time_ns
        info.tsc_to_system_mul = clock.scale.mul
        info.tsc_shift = clock.scale.shift
        info.flags = PVCLOCK_TSC_STABLE_BIT
        info.version += 1


@register_device
class PvclockDevice(Device):
    """Publishes the guest's clock (dilation included) at the layout's PV clock
    page before boot."""

    def __init__(self, page: PvclockPage) -> None:
        self.page = page

    @classmethod
    def create(cls, ctx: MachineContext) -> PvclockDevice:
        size = ctypes.sizeof(PvclockVcpuTimeInfo)
        view = ctx.memory.view(ctx.layout.pvclock_gpa, size, "pvclock")
        device = cls(PvclockPage(view))
        device.page.publish(ctx.clock)
        return device
