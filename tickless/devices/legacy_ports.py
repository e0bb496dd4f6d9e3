"""The PC's floating bus, for guests that probe legacy hardware (Linux).

Linux touches ports of devices this VMM does not have: the POST/delay port 0x80, COM2-4,
the CMOS RTC, the keyboard controller. On a PC nothing answers and reads see all ones;
here too (kvmtool and Firecracker ignore them the same way), and each port is counted so
the record shows what the guest looked for. The small guest keeps the strict rule: any
unknown port stops it.
"""

from __future__ import annotations

from collections import Counter

from tickless.axes import GuestKind
from tickless.devices.bus import BusDevice
from tickless.devices.device import Device, MachineContext, register_device
from tickless.kvm.vcpu import Vcpu


class FloatingBus(BusDevice):
    name = "floating bus"

    def __init__(self) -> None:
        self.accesses: Counter[int] = Counter()

    def io_write(self, port: int, data: bytes, vcpu: Vcpu) -> None:
        self.accesses[port] += 1

    def io_read(self, port: int, size: int, vcpu: Vcpu) -> bytes:
        self.accesses[port] += 1
        return b"\xff" * size


@register_device
class LegacyPortsDevice(Device):
    def __init__(self, bus: FloatingBus) -> None:
        self.floating = bus

    @classmethod
    def create(cls, ctx: MachineContext) -> LegacyPortsDevice | None:
        if ctx.config.guest is not GuestKind.LINUX:
            return None
        device = cls(FloatingBus())
        ctx.bus.set_unclaimed_io(device.floating)
        return device

    def summary(self, limit: int = 8) -> str:
        """The ports the guest probed most, for the record's notes."""
        top = ", ".join(f"{port:#x} x{n}" for port, n in self.floating.accesses.most_common(limit))
        return f"unclaimed I/O ports (read as all ones): {top or 'none'}"
