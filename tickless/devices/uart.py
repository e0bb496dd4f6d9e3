"""A 16550A UART at COM1 (0x3F8): the Linux guest's console (``console=ttyS0``).

Transmit only, as kvmtool's ``hw/serial.c`` and Firecracker's serial device serve a console:
what the guest writes goes to the machine's console, the transmitter is always ready, and
nothing is ever received. Loopback (MCR bit 4) works, because Linux's 8250 driver checks it
when it probes the port (``autoconfig``): written bytes come back in RBR and the modem
control bits come back in MSR. No interrupts are raised: Linux's console writes poll LSR.
"""

from __future__ import annotations

from tickless.axes import GuestKind
from tickless.devices.bus import BusDevice
from tickless.devices.console_buffer import Console
from tickless.devices.device import Device, MachineContext, register_device
from tickless.kvm.vcpu import Vcpu

COM1_PORT = 0x3F8
PORT_COUNT = 8

# register offsets
RBR_THR_DLL, IER_DLM, IIR_FCR, LCR, MCR, LSR, MSR, SCR = range(8)
LCR_DLAB = 0x80
MCR_LOOP = 0x10
LSR_DATA_READY, LSR_THR_EMPTY, LSR_IDLE = 0x01, 0x20, 0x40
IIR_NONE, IIR_FIFO_ENABLED = 0x01, 0xC0
FCR_FIFO_ENABLE = 0x01
MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 0x10, 0x20, 0x40, 0x80
LOOPBACK_FIFO = 16  # the 16550A's receive FIFO


class Uart16550(BusDevice):
    """The registers of one 16550A; bytes sent go to ``console``."""

    name = "uart 16550"

    def __init__(self, console: Console) -> None:
        self.console = console
        self.ier = self.lcr = self.mcr = self.scr = self.fcr = 0
        self.dll, self.dlm = 0x0C, 0  # 9600 baud until the guest says otherwise
        self.rx = bytearray()  # loopback only
        self.accesses = 0  # register reads and writes: each one an exit (the console's cost)

    def io_write(self, port: int, data: bytes, vcpu: Vcpu) -> None:
        self.accesses += 1
        value = data[0]
        offset = port - COM1_PORT
        dlab = bool(self.lcr & LCR_DLAB)
        if offset == RBR_THR_DLL:
            if dlab:
                self.dll = value
            elif self.mcr & MCR_LOOP:
                if len(self.rx) < LOOPBACK_FIFO:
                    self.rx.append(value)
            else:
                self.console.write(bytes(data[:1]))
        elif offset == IER_DLM:
            if dlab:
                self.dlm = value
            else:
                self.ier = value & 0x0F
        elif offset == IIR_FCR:
            self.fcr = value
        elif offset == LCR:
            self.lcr = value
        elif offset == MCR:
            self.mcr = value & 0x1F
        elif offset == SCR:
            self.scr = value
        # LSR and MSR are read-only: writes are ignored, as on the chip

    def io_read(self, port: int, size: int, vcpu: Vcpu) -> bytes:
        self.accesses += 1
        offset = port - COM1_PORT
        dlab = bool(self.lcr & LCR_DLAB)
        if offset == RBR_THR_DLL:
            value = self.dll if dlab else (self.rx.pop(0) if self.rx else 0)
        elif offset == IER_DLM:
            value = self.dlm if dlab else self.ier
        elif offset == IIR_FCR:
            value = IIR_NONE | (IIR_FIFO_ENABLED if self.fcr & FCR_FIFO_ENABLE else 0)
        elif offset == LCR:
            value = self.lcr
        elif offset == MCR:
            value = self.mcr
        elif offset == LSR:
            value = LSR_THR_EMPTY | LSR_IDLE | (LSR_DATA_READY if self.rx else 0)
        elif offset == MSR:
            value = self._modem_status()
        else:
            value = self.scr
        return bytes([value]) * size

    def _modem_status(self) -> int:
        if not self.mcr & MCR_LOOP:
            return MSR_DCD | MSR_DSR | MSR_CTS  # a cable with someone listening
        m = self.mcr  # loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD
        return (
            (MSR_DSR if m & 0x01 else 0)
            | (MSR_CTS if m & 0x02 else 0)
            | (MSR_RI if m & 0x04 else 0)
            | (MSR_DCD if m & 0x08 else 0)
        )


@register_device
class UartDevice(Device):
    """COM1 for guests whose console is a serial port (Linux)."""

    def __init__(self, uart: Uart16550) -> None:
        self.uart = uart

    @classmethod
    def create(cls, ctx: MachineContext) -> UartDevice | None:
        if ctx.config.guest is not GuestKind.LINUX:
            return None
        device = cls(Uart16550(ctx.console))
        ctx.bus.add_io(COM1_PORT, PORT_COUNT, device.uart)
        return device
