"""ACPI tables for a guest with the timer zoo: how Linux finds a PC's HPET, IOAPIC and RTC.

Linux looks for an HPET only in ACPI's HPET table, so where the zoo is asked for the VMM
writes a minimal set, as Firecracker's and cloud-hypervisor's table builders do, but for a
PC with legacy devices rather than a hardware-reduced machine (Linux's hardware-reduced
path skips the timer setup that finds the HPET and the PIT):

- RSDP (revision 2) -> XSDT (and an RSDT for 32-bit readers) -> FADT, MADT, HPET;
- FADT: revision 6, the DSDT and FACS, SCI on ISA IRQ 9 (a pin no device raises), no SMI
  command port (the machine is in ACPI mode from the start), the PM1a event and control
  blocks a non-reduced machine must have (``devices/acpi_pm.py``), no PM timer (nothing
  emulates one), IAPC_BOOT_ARCH: legacy devices, no 8042, no VGA, a CMOS RTC (the "no CMOS
  RTC" flag clear);
- MADT: one local APIC per CPU, the in-kernel IOAPIC at 0xFEC00000 with GSI base 0, LINT1
  as NMI, and no interrupt source overrides: ISA IRQ n is GSI n, as the MP table says
  (``mptable.py``), so IRQ 0 (PIT, HPET legacy timer 0) is IOAPIC pin 0;
- HPET: the block at ``abi.HPET_GPA`` and its event timer block id (the low half of the
  device's capabilities register);
- DSDT: ``\\_SB`` with the HPET (PNP0103) and the RTC (PNP0B00) and their resources.

The tables go below 1 MiB at ``ACPI_GPA`` (an e820 ACPI region) and Linux gets the RSDP's
address in ``boot_params.acpi_rsdp_addr`` (boot protocol 2.14), so it never scans for it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tickless.devices.pm1_registers import PM1_CNT_BYTES, PM1_CNT_PORT, PM1_EVT_BYTES, PM1_EVT_PORT
from tickless.guest import abi
from tickless.vmm.mptable import IOAPIC_GPA, LAPIC_GPA

ACPI_GPA = 0xE0000
ACPI_BYTES = 0x1000
OEM_ID = b"TKLESS"
OEM_TABLE_ID = b"TICKLESS"
CREATOR_ID = b"TKLS"
HEADER_BYTES = 36

SCI_IRQ = 9  # as on a PC's PIIX4; level, active low (the ACPI default for the SCI)
CMOS_CENTURY_INDEX = 0  # no century register: Linux takes years below 70 as 20xx
FADT_REVISION, FADT_MINOR, FADT_BYTES = 6, 5, 276
FADT_WBINVD, FADT_PWR_BUTTON, FADT_SLP_BUTTON = 1 << 0, 1 << 4, 1 << 5  # no fixed buttons
BOOT_ARCH_LEGACY_DEVICES, BOOT_ARCH_8042, BOOT_ARCH_NO_VGA = 1 << 0, 1 << 1, 1 << 2
BOOT_ARCH_NO_CMOS_RTC = 1 << 5
FACS_BYTES, FACS_VERSION = 64, 2
C2_NONE_US, C3_NONE_US = 101, 1001  # latencies that say: no C2, no C3
MADT_PCAT_COMPAT = 1  # a dual 8259 is present (KVM's in-kernel PIC)
MADT_LAPIC, MADT_IOAPIC, MADT_LAPIC_NMI = 0, 1, 4
LAPIC_ENABLED = 1
ALL_PROCESSORS = 0xFF
HPET_MIN_TICK = 0x80  # as QEMU: the smallest periodic tick without lost interrupts
GAS_MEMORY, GAS_IO = 0, 1

# A PC HPET's capabilities (low 32 bits): a vendor id, revision, timers (NUM_TIM_CAP + 1),
# a 64-bit counter, legacy replacement routing (what devices/hpet.py reports: 0x8086A201).
HPET_VENDOR_INTEL = 0x8086
HPET_CAP_COUNT_SIZE, HPET_CAP_LEG_RT = 1 << 13, 1 << 15


def hpet_block_id(timers: int = 3, vendor: int = HPET_VENDOR_INTEL, revision: int = 1) -> int:
    """The HPET table's event timer block id: the capabilities register's low 32 bits."""
    return vendor << 16 | HPET_CAP_LEG_RT | HPET_CAP_COUNT_SIZE | (timers - 1) << 8 | revision


def checksum(blob: bytes) -> int:
    """The byte that makes ``blob`` sum to zero (mod 256)."""
    return -sum(blob) & 0xFF


def table(signature: bytes, revision: int, body: bytes) -> bytes:
    """A system description table: the common 36-byte header, then ``body``, summing to 0."""
    length = HEADER_BYTES + len(body)
    header = struct.pack(
        "<4sIBB6s8sI4sI",
        signature,
        length,
        revision,
        0,
        OEM_ID,
        OEM_TABLE_ID,
        1,  # OEM revision
        CREATOR_ID,
        1,  # creator revision
    )
    blob = bytearray(header + body)
    blob[9] = checksum(bytes(blob))
    return bytes(blob)


def gas(space: int, bit_width: int, address: int, access: int = 0) -> bytes:
    """A Generic Address Structure (12 bytes)."""
    return struct.pack("<BBBBQ", space, bit_width, 0, access, address)


def rsdp(xsdt_gpa: int, rsdt_gpa: int) -> bytes:
    """The revision-2 root pointer: the first 20 bytes and all 36 each sum to 0."""
    blob = bytearray(
        struct.pack("<8sB6sBIIQB3x", b"RSD PTR ", 0, OEM_ID, 2, rsdt_gpa, 36, xsdt_gpa, 0)
    )
    blob[8] = checksum(bytes(blob[:20]))
    blob[32] = checksum(bytes(blob))
    return bytes(blob)


def fadt(dsdt_gpa: int, facs_gpa: int) -> bytes:
    """FADT revision 6: a legacy PC in ACPI mode from the start, with no PM hardware."""
    body = bytearray(FADT_BYTES - HEADER_BYTES)

    def put(offset: int, fmt: str, *values: int | bytes) -> None:
        struct.pack_into(fmt, body, offset - HEADER_BYTES, *values)

    put(36, "<I", facs_gpa)
    put(40, "<I", dsdt_gpa)
    put(46, "<H", SCI_IRQ)  # SMI_CMD (48), ACPI_ENABLE/DISABLE: 0
    put(56, "<I", PM1_EVT_PORT)
    put(64, "<I", PM1_CNT_PORT)
    put(88, "<BB", PM1_EVT_BYTES, PM1_CNT_BYTES)
    put(96, "<HH", C2_NONE_US, C3_NONE_US)
    put(108, "<B", CMOS_CENTURY_INDEX)
    put(109, "<H", BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_NO_VGA)
    put(112, "<I", FADT_WBINVD | FADT_PWR_BUTTON | FADT_SLP_BUTTON)
    put(131, "<B", FADT_MINOR)
    put(132, "<Q", facs_gpa)  # X_FIRMWARE_CTRL
    put(140, "<Q", dsdt_gpa)  # X_DSDT
    put(148, "<12s", gas(GAS_IO, 8 * PM1_EVT_BYTES, PM1_EVT_PORT))  # X_PM1a_EVT_BLK
    put(172, "<12s", gas(GAS_IO, 8 * PM1_CNT_BYTES, PM1_CNT_PORT))  # X_PM1a_CNT_BLK
    return table(b"FACP", FADT_REVISION, bytes(body))


def facs() -> bytes:
    """The firmware control structure (no waking vector, no global lock owner)."""
    return struct.pack("<4sIIIIIQB3xI24x", b"FACS", FACS_BYTES, 0, 0, 0, 0, 0, FACS_VERSION, 0)


def madt(cpus: int = 1, ioapic_id: int | None = None) -> bytes:
    """The local APICs, the IOAPIC (GSI base 0) and LINT1 as NMI; no overrides."""
    body = struct.pack("<II", LAPIC_GPA, MADT_PCAT_COMPAT)
    for cpu in range(cpus):
        body += struct.pack("<BBBBI", MADT_LAPIC, 8, cpu, cpu, LAPIC_ENABLED)
    ioapic = cpus if ioapic_id is None else ioapic_id  # the MP table's numbering
    body += struct.pack("<BBBBII", MADT_IOAPIC, 12, ioapic, 0, IOAPIC_GPA, 0)
    body += struct.pack("<BBBHB", MADT_LAPIC_NMI, 6, ALL_PROCESSORS, 0, 1)
    return table(b"APIC", 5, body)


def hpet(block_id: int) -> bytes:
    """The HPET description table: block id, base address, number 0, minimum tick."""
    body = struct.pack("<I", block_id) + gas(GAS_MEMORY, 64, abi.HPET_GPA)
    body += struct.pack("<BHB", 0, HPET_MIN_TICK, 0)
    return table(b"HPET", 1, body)


# --- a few AML encodings, enough for the DSDT's two devices (ACPI 6.5, chapter 20) ------


def _pkg_length(content_bytes: int) -> bytes:
    """PkgLength for ``content_bytes`` after it (the encoding counts itself)."""
    if content_bytes + 1 < 0x40:
        return bytes([content_bytes + 1])
    total = content_bytes + 2
    if total >= 1 << 12:
        raise ValueError("AML package too long for a two-byte PkgLength")
    return bytes([0x40 | (total & 0x0F), total >> 4])


def _name_seg(name: str) -> bytes:
    seg = name.encode("ascii").ljust(4, b"_")
    if len(seg) != 4:
        raise ValueError(f"AML name segment {name!r} is longer than 4 characters")
    return seg


def aml_eisa_id(text: str) -> bytes:
    """EisaId("PNP0103"): three letters packed in 5 bits each, then four hex digits,
    stored big-endian as a DWordConst."""
    letters = [ord(ch) - 0x40 for ch in text[:3]]
    packed = letters[0] << 10 | letters[1] << 5 | letters[2]
    return b"\x0c" + struct.pack(">HH", packed, int(text[3:], 16))


def aml_name(name: str, value: bytes) -> bytes:
    return b"\x08" + _name_seg(name) + value


def aml_buffer(data: bytes) -> bytes:
    size = b"\x0a" + bytes([len(data)])  # BytePrefix
    return b"\x11" + _pkg_length(len(size) + len(data)) + size + data


def aml_resources(*descriptors: bytes) -> bytes:
    """A ResourceTemplate: the descriptors and an end tag (checksum 0: not computed)."""
    return aml_buffer(b"".join(descriptors) + b"\x79\x00")


def memory32_fixed(base: int, length: int) -> bytes:
    return struct.pack("<BHBII", 0x86, 9, 1, base, length)  # read-write


def io_port(port: int, count: int) -> bytes:
    return struct.pack("<BBHHBB", 0x47, 1, port, port, 1, count)  # 16-bit decode


def irq_no_flags(irq: int) -> bytes:
    return struct.pack("<BH", 0x22, 1 << irq)  # edge, active high


def aml_device(name: str, *terms: bytes) -> bytes:
    content = _name_seg(name) + b"".join(terms)
    return b"\x5b\x82" + _pkg_length(len(content)) + content


def aml_scope(path: bytes, *terms: bytes) -> bytes:
    content = path + b"".join(terms)
    return b"\x10" + _pkg_length(len(content)) + content


def dsdt() -> bytes:
    """\\_SB.HPET (PNP0103, its MMIO block) and \\_SB.RTC (PNP0B00, ports 0x70-0x71, IRQ 8)."""
    hpet_dev = aml_device(
        "HPET",
        aml_name("_HID", aml_eisa_id("PNP0103")),
        aml_name("_UID", b"\x00"),
        aml_name("_CRS", aml_resources(memory32_fixed(abi.HPET_GPA, abi.HPET_MMIO_BYTES))),
    )
    rtc_dev = aml_device(
        "RTC",
        aml_name("_HID", aml_eisa_id("PNP0B00")),
        aml_name(
            "_CRS", aml_resources(io_port(abi.RTC_PORT, abi.RTC_PORTS), irq_no_flags(abi.RTC_GSI))
        ),
    )
    return table(b"DSDT", 2, aml_scope(b"\\_SB_", hpet_dev, rtc_dev))


@dataclass(frozen=True)
class AcpiTables:
    """The tables and where each lies in guest memory (``blob`` is written at ``gpa``)."""

    gpa: int
    blob: bytes
    rsdp_gpa: int
    tables: dict[str, tuple[int, bytes]]  # signature -> (gpa, bytes)


def build_tables(gpa: int = ACPI_GPA, cpus: int = 1, hpet_id: int | None = None) -> AcpiTables:
    """Every table laid out from ``gpa``: RSDP first, each table 16-byte aligned (the FACS
    64-byte aligned, as the spec asks). The HPET's block id is ``hpet_block_id()``, what
    devices/hpet.py reports (a test holds the two together), unless ``hpet_id`` says
    otherwise."""
    block_id = hpet_block_id() if hpet_id is None else hpet_id
    order = ("RSDP", "FACS", "DSDT", "FACP", "APIC", "HPET", "RSDT", "XSDT")
    built = {"APIC": madt(cpus), "HPET": hpet(block_id), "DSDT": dsdt(), "FACS": facs()}
    sizes = {name: len(blob) for name, blob in built.items()}
    sizes |= {
        "RSDP": 36,
        "FACP": FADT_BYTES,
        "RSDT": HEADER_BYTES + 4 * 3,
        "XSDT": HEADER_BYTES + 8 * 3,
    }
    where: dict[str, int] = {}
    offset = 0
    for name in order:
        align = 64 if name == "FACS" else 16
        offset = -(-offset // align) * align
        where[name] = gpa + offset
        offset += sizes[name]
    built["FACP"] = fadt(where["DSDT"], where["FACS"])
    pointed = [where[name] for name in ("FACP", "APIC", "HPET")]
    built["RSDT"] = table(b"RSDT", 1, struct.pack(f"<{len(pointed)}I", *pointed))
    built["XSDT"] = table(b"XSDT", 1, struct.pack(f"<{len(pointed)}Q", *pointed))
    built["RSDP"] = rsdp(where["XSDT"], where["RSDT"])
    if offset > ACPI_BYTES:
        raise ValueError(f"ACPI tables of {offset} bytes do not fit in {ACPI_BYTES}")
    blob = bytearray(offset)
    for name in order:
        start = where[name] - gpa
        blob[start : start + len(built[name])] = built[name]
    return AcpiTables(
        gpa, bytes(blob), where["RSDP"], {name: (where[name], built[name]) for name in order}
    )
