"""The guest's console: bytes on the debug port, LOG buffers, and the PANIC report.

Everything the guest says about itself arrives here, so a stopped guest's last words are
in one place (the outcome's console text).
"""

from __future__ import annotations

from tickless.devices.bus import BusDevice
from tickless.devices.device import Device, MachineContext, register_device
from tickless.devices.faults import GuestFault
from tickless.guest.abi import CONSOLE_PORT, Hypercall
from tickless.guest.panic import describe_panic
from tickless.kvm.vcpu import Vcpu

MAX_LOG_BYTES = 4096


@register_device
class ConsoleDevice(Device, BusDevice):
    """Port ``CONSOLE_PORT`` (one byte per ``out``, Bochs style) and the LOG and PANIC
    hypercalls."""

    name = "console"

    def __init__(self, ctx: MachineContext) -> None:
        self.ctx = ctx
        self.console = ctx.console

    @classmethod
    def create(cls, ctx: MachineContext) -> ConsoleDevice:
        device = cls(ctx)
        ctx.bus.add_io(CONSOLE_PORT, 1, device)
        ctx.hypercalls.register(Hypercall.LOG, device.hc_log)
        ctx.hypercalls.register(Hypercall.PANIC, device.hc_panic)
        return device

    def io_write(self, port: int, data: bytes, vcpu: Vcpu) -> None:
        self.console.write(data)

    def hc_log(self, gpa: int, length: int) -> int:
        """LOG(gpa, len): print a buffer of guest memory (bounds-checked)."""
        if length > MAX_LOG_BYTES:
            raise GuestFault(f"LOG of {length} bytes: at most {MAX_LOG_BYTES} per call")
        self.console.write(self.ctx.memory.read(gpa, length, "LOG"))
        return 0

    def hc_panic(self, code: int, detail: int) -> int:
        """PANIC(code, detail): the guest kernel hit a fatal exception; stop it."""
        raise GuestFault(f"guest kernel panic: {describe_panic(code, detail)}")
