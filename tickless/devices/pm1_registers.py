"""The ACPI fixed-hardware PM1 registers the FADT names, for the timer zoo's ACPI tables
(their ports, which ``vmm/acpi.py`` writes into the FADT, and their logic; the device that
claims them is ``acpi_pm.py``).

A non-hardware-reduced ACPI machine (the kind on which Linux runs its HPET and PIT drivers)
must have a PM1a event block (status, enable) and a PM1a control block (ACPI 6.5, 4.8.3):
ACPICA reads and writes them while it sets ACPI up. This machine raises no fixed event
(no power or sleep button, no PM timer, no RTC wake), so status always reads 0 and writing
1s clears nothing; enable keeps what the guest wrote to its defined bits; SCI_EN reads 1
(the machine is in ACPI mode from the start: the FADT has no SMI command port); SLP_EN is
dropped, as on a platform whose DSDT names no sleep state (ours names none). Any access
width the guest uses is served byte by byte, as the registers' little-endian bytes.
"""

from __future__ import annotations

from tickless.devices.bus import BusDevice
from tickless.kvm.vcpu import Vcpu

PM1_EVT_PORT = 0xB000  # as PIIX4 in QEMU; PM1a_EVT_BLK: status (2 bytes), enable (2 bytes)
PM1_EVT_BYTES = 4
PM1_CNT_PORT = 0xB004  # PM1a_CNT_BLK: control (2 bytes)
PM1_CNT_BYTES = 2
PM1_PORTS = PM1_EVT_BYTES + PM1_CNT_BYTES

# PM1_EN: TMR_EN, GBL_EN, PWRBTN_EN, SLPBTN_EN, RTC_EN, PCIEXP_WAKE_DIS
PM1_EN_BITS = 1 << 0 | 1 << 5 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 14
SCI_EN = 1 << 0
PM1_CNT_STORED = 1 << 1 | 7 << 10  # BM_RLD, SLP_TYPx (GBL_RLS and SLP_EN are write-only)


class Pm1Registers(BusDevice):
    """Ports PM1_EVT_PORT..+5: status, enable, control (16 bits each)."""

    name = "ACPI PM1"

    def __init__(self) -> None:
        self.enable = 0
        self.control = SCI_EN
        self.sleep_requests = 0  # SLP_EN writes, dropped (no sleep states)

    def _register_bytes(self) -> bytes:
        return b"".join(v.to_bytes(2, "little") for v in (0, self.enable, self.control))

    def io_read(self, port: int, size: int, vcpu: Vcpu) -> bytes:
        offset = port - PM1_EVT_PORT
        regs = self._register_bytes() + b"\xff" * 4  # past the last register: floating
        return regs[offset : offset + size]

    def io_write(self, port: int, data: bytes, vcpu: Vcpu) -> None:
        regs = bytearray(self._register_bytes())
        offset = port - PM1_EVT_PORT
        for i, byte in enumerate(data):
            if offset + i < len(regs):
                regs[offset + i] = byte
        self.enable = int.from_bytes(regs[2:4], "little") & PM1_EN_BITS
        control = int.from_bytes(regs[4:6], "little")
        touched_control = offset + len(data) > 4
        if touched_control and control & 1 << 13:
            self.sleep_requests += 1
        self.control = SCI_EN | (control & PM1_CNT_STORED)
