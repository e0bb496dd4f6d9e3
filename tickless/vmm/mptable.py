"""An Intel MultiProcessor Specification 1.4 table: how a guest without ACPI finds its
CPU, its IOAPIC and which pin each ISA interrupt arrives on.

As Firecracker's ``mptable``: one processor, an ISA bus, the in-kernel IOAPIC, ISA IRQs
0-15 routed to IOAPIC pins of the same number (conforming polarity and trigger: edge, high),
and the LAPIC's LINT0/LINT1 as ExtINT/NMI. Without a table Linux scans the BIOS area for one
(~3 s of emulated ring 0 here).
"""

from __future__ import annotations

import struct

MPTABLE_GPA = 0x9FC00  # the last KiB of base memory, where the EBDA would be
MPTABLE_BYTES = 0x400
LAPIC_GPA = 0xFEE0_0000
IOAPIC_GPA = 0xFEC0_0000
APIC_VERSION = 0x14
IOAPIC_VERSION = 0x11
ISA_IRQS = 16

CPU_ENABLED, CPU_BOOTPROCESSOR = 1, 2
CPU_STEPPING = 0x600
CPU_FEATURE_FPU, CPU_FEATURE_APIC = 1 << 0, 1 << 9
MP_PROCESSOR, MP_BUS, MP_IOAPIC, MP_INTSRC, MP_LINTSRC = range(5)
MP_INT, MP_NMI, MP_EXTINT = 0, 1, 3
MPC_APIC_USABLE = 1


def _checksum(blob: bytes) -> int:
    """The byte that makes ``blob`` sum to zero (mod 256)."""
    return -sum(blob) & 0xFF


def _with_checksum(blob: bytearray, offset: int) -> bytes:
    blob[offset] = _checksum(bytes(blob))
    return bytes(blob)


def mp_table(gpa: int = MPTABLE_GPA, cpus: int = 1) -> bytes:
    """The floating pointer at ``gpa`` followed by the configuration table."""
    ioapic_id = cpus
    entries = b"".join(
        struct.pack(
            "<BBBBII8x",
            MP_PROCESSOR,
            cpu,
            APIC_VERSION,
            CPU_ENABLED | (CPU_BOOTPROCESSOR if cpu == 0 else 0),
            CPU_STEPPING,
            CPU_FEATURE_FPU | CPU_FEATURE_APIC,
        )
        for cpu in range(cpus)
    )
    entries += struct.pack("<BB6s", MP_BUS, 0, b"ISA   ")
    entries += struct.pack(
        "<BBBBI", MP_IOAPIC, ioapic_id, IOAPIC_VERSION, MPC_APIC_USABLE, IOAPIC_GPA
    )
    entries += b"".join(
        struct.pack("<BBHBBBB", MP_INTSRC, MP_INT, 0, 0, irq, ioapic_id, irq)
        for irq in range(ISA_IRQS)
    )
    entries += struct.pack("<BBHBBBB", MP_LINTSRC, MP_EXTINT, 0, 0, 0, 0, 0)
    entries += struct.pack("<BBHBBBB", MP_LINTSRC, MP_NMI, 0, 0, 0, 0xFF, 1)
    count = cpus + 1 + 1 + ISA_IRQS + 2
    header = bytearray(
        struct.pack(
            "<4sHBB8s12sIHHII",
            b"PCMP",
            44 + len(entries),
            4,  # spec revision 1.4
            0,  # checksum, below
            b"TICKLESS",
            b"MICROVM     ",
            0,
            0,
            count,
            LAPIC_GPA,
            0,
        )
    )
    table = bytearray(header + entries)
    table = bytearray(_with_checksum(table, 7))
    floating = bytearray(struct.pack("<4sIBBB5x", b"_MP_", gpa + 16, 1, 4, 0))
    pointer = _with_checksum(floating, 10)
    blob = pointer + bytes(table)
    if len(blob) > MPTABLE_BYTES:
        raise ValueError(f"MP table of {len(blob)} bytes does not fit in {MPTABLE_BYTES}")
    return blob
