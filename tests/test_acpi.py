"""The timer zoo's ACPI tables (vmm/acpi.py): our own parser walks them from the RSDP
(checksums, lengths, pointers, the fields Linux reads), and an independent decoder,
Debian's ``iasl -d`` (acpica-tools), disassembles each without an error or a warning. The
PM1 registers the FADT names (devices/acpi_pm.py) behave as the FADT promises."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import cast

import pytest

from tickless.devices.hpet_registers import CAPABILITIES as HPET_CAPABILITIES
from tickless.devices.pm1_registers import PM1_CNT_PORT, PM1_EVT_PORT, SCI_EN, Pm1Registers
from tickless.guest import abi
from tickless.kvm.vcpu import Vcpu
from tickless.vmm import acpi
from tickless.vmm import linux_boot as lb

GPA = acpi.ACPI_GPA


def _memory(tables: acpi.AcpiTables) -> bytes:
    return bytes(tables.gpa) + tables.blob  # index by guest-physical address below 1 MiB


def _table_at(memory: bytes, gpa: int) -> tuple[bytes, bytes]:
    """(signature, whole table) at ``gpa``, its length and checksum checked."""
    signature = memory[gpa : gpa + 4]
    (length,) = struct.unpack_from("<I", memory, gpa + 4)
    assert acpi.HEADER_BYTES <= length <= acpi.ACPI_BYTES
    blob = memory[gpa : gpa + length]
    assert len(blob) == length
    assert sum(blob) & 0xFF == 0, f"{signature!r} checksum"
    return signature, blob


def _walk() -> dict[bytes, bytes]:
    """Every table reachable from the RSDP, by signature, as Linux finds them."""
    tables = acpi.build_tables()
    memory = _memory(tables)
    rsdp = memory[tables.rsdp_gpa : tables.rsdp_gpa + 36]
    assert rsdp[:8] == b"RSD PTR "
    assert sum(rsdp[:20]) & 0xFF == 0 and sum(rsdp) & 0xFF == 0
    revision, rsdt_gpa, length, xsdt_gpa = struct.unpack_from("<BIIQ", rsdp, 15)
    assert (revision, length) == (2, 36)
    found: dict[bytes, bytes] = {}
    signature, xsdt = _table_at(memory, xsdt_gpa)
    assert signature == b"XSDT"
    count = (len(xsdt) - acpi.HEADER_BYTES) // 8
    pointers = struct.unpack_from(f"<{count}Q", xsdt, acpi.HEADER_BYTES)
    _, rsdt = _table_at(memory, rsdt_gpa)
    assert struct.unpack_from(f"<{count}I", rsdt, acpi.HEADER_BYTES) == pointers
    for gpa in pointers:
        signature, blob = _table_at(memory, gpa)
        found[signature] = blob
    fadt = found[b"FACP"]
    facs_gpa, dsdt_gpa = struct.unpack_from("<II", fadt, 36)
    assert struct.unpack_from("<QQ", fadt, 132) == (facs_gpa, dsdt_gpa)  # X_ fields agree
    assert facs_gpa % 64 == 0
    assert memory[facs_gpa : facs_gpa + 4] == b"FACS"
    found[b"DSDT"] = _table_at(memory, dsdt_gpa)[1]
    return found


def test_tables_walk_from_the_rsdp_with_valid_checksums() -> None:
    found = _walk()
    assert set(found) == {b"FACP", b"APIC", b"HPET", b"DSDT"}
    assert acpi.build_tables().blob[: len(b"RSD PTR ")] == b"RSD PTR "


def test_fadt_is_a_legacy_pc_in_acpi_mode() -> None:
    fadt = _walk()[b"FACP"]
    assert len(fadt) == acpi.FADT_BYTES and fadt[8] == acpi.FADT_REVISION
    (sci,) = struct.unpack_from("<H", fadt, 46)
    (smi_cmd,) = struct.unpack_from("<I", fadt, 48)
    assert sci == acpi.SCI_IRQ and smi_cmd == 0  # no SMI: ACPI mode from the start
    pm1a_evt, pm1a_cnt = struct.unpack_from("<I4xI", fadt, 56)
    (pm_timer,) = struct.unpack_from("<I", fadt, 76)
    assert (pm1a_evt, pm1a_cnt, pm_timer) == (PM1_EVT_PORT, PM1_CNT_PORT, 0)
    (boot_arch,) = struct.unpack_from("<H", fadt, 109)
    assert boot_arch & acpi.BOOT_ARCH_LEGACY_DEVICES
    assert not boot_arch & acpi.BOOT_ARCH_8042
    assert not boot_arch & acpi.BOOT_ARCH_NO_CMOS_RTC
    (flags,) = struct.unpack_from("<I", fadt, 112)
    assert not flags & 1 << 20  # not hardware-reduced: Linux would skip the timer set-up


def test_madt_has_the_cpu_and_the_ioapic_at_gsi_0_and_no_overrides() -> None:
    madt = _walk()[b"APIC"]
    lapic_gpa, flags = struct.unpack_from("<II", madt, 36)
    assert lapic_gpa == 0xFEE0_0000 and flags & acpi.MADT_PCAT_COMPAT
    entries, offset = [], 44
    while offset < len(madt):
        kind, length = madt[offset], madt[offset + 1]
        assert length >= 2
        entries.append((kind, madt[offset : offset + length]))
        offset += length
    assert offset == len(madt)
    kinds = [kind for kind, _ in entries]
    assert kinds.count(acpi.MADT_LAPIC) == 1
    assert 2 not in kinds  # no interrupt source override: ISA IRQ n is GSI n
    ioapic = next(body for kind, body in entries if kind == acpi.MADT_IOAPIC)
    assert struct.unpack_from("<II", ioapic, 4) == (0xFEC0_0000, 0)


def test_hpet_table_names_the_block_and_its_capabilities() -> None:
    table = _walk()[b"HPET"]
    (block_id,) = struct.unpack_from("<I", table, 36)
    space, _width, _offset, _access, base = struct.unpack_from("<BBBBQ", table, 40)
    assert (space, base) == (acpi.GAS_MEMORY, abi.HPET_GPA)
    assert block_id == acpi.hpet_block_id() == HPET_CAPABILITIES & 0xFFFF_FFFF  # the device's
    assert block_id >> 16 == acpi.HPET_VENDOR_INTEL
    assert block_id & acpi.HPET_CAP_LEG_RT  # Linux's legacy clock-event device needs it
    assert (block_id >> 8 & 0x1F) + 1 >= 3


def test_zero_page_points_at_the_rsdp_and_e820_covers_the_tables() -> None:
    tables = acpi.build_tables()
    e820 = lb.e820_map(abi.LINUX_RAM_BYTES, abi.LINUX_WINDOW_GPA, acpi=True)
    page = lb.zero_page(1, e820, tables.rsdp_gpa)
    assert struct.unpack_from("<Q", page, lb.ACPI_RSDP_ADDR_OFFSET) == (tables.rsdp_gpa,)
    (start, size, _kind) = next(e for e in e820 if e[2] == lb.E820_ACPI)
    assert start <= tables.gpa and tables.gpa + len(tables.blob) <= start + size
    ram = [(s, s + n) for s, n, k in e820 if k == lb.E820_RAM]
    assert all(end <= start or s >= start + size for s, end in ram)
    assert lb.e820_map(abi.LINUX_RAM_BYTES, abi.LINUX_WINDOW_GPA) == [
        e for e in e820 if e[2] != lb.E820_ACPI
    ]  # without the zoo: the map as before


def _iasl() -> str | None:
    path = shutil.which("iasl")
    if path is None and os.environ.get("TICKLESS_REQUIRE_KVM") == "1":
        pytest.fail("TICKLESS_REQUIRE_KVM=1 but iasl is missing (apt-get install acpica-tools)")
    if path is None:
        pytest.skip("iasl is missing (apt-get install acpica-tools)")
    return path


@pytest.mark.parametrize("name", ["FACP", "APIC", "HPET", "DSDT", "FACS", "XSDT", "RSDT"])
def test_iasl_disassembles_each_table_without_errors(name: str, tmp_path: Path) -> None:
    iasl = _iasl()
    assert iasl is not None
    _gpa, blob = acpi.build_tables().tables[name]
    (tmp_path / f"{name.lower()}.dat").write_bytes(blob)
    proc = subprocess.run(
        [iasl, "-d", f"{name.lower()}.dat"], cwd=tmp_path, capture_output=True, text=True
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    for word in ("Error", "Warning", "Invalid", "mismatch"):
        assert word.lower() not in output.lower(), output
    dsl = (tmp_path / f"{name.lower()}.dsl").read_text()
    expect = {
        "APIC": ["I/O APIC", "Address : FEC00000", "Interrupt : 00000000"],
        "HPET": ["Address : 00000000FED00000", f"Hardware Block ID : {acpi.hpet_block_id():08X}"],
        "FACP": ["SCI Interrupt : 0009", "PM1A Event Block Address : 0000B000"],
        "DSDT": ['EisaId ("PNP0103")', "0xFED00000", 'EisaId ("PNP0B00")', "0x0070"],
    }.get(name, [f'"{name}"'] if name != "FACS" else ["FACS"])
    flat = " ".join(dsl.split())
    for text in expect:
        assert " ".join(text.split()) in flat, f"{text!r} not in iasl's {name}"


def test_pm1_registers_read_as_acpi_mode_and_clear_nothing() -> None:
    regs = Pm1Registers()
    vcpu = cast(Vcpu, None)  # the registers never look at the vCPU
    port = PM1_EVT_PORT
    assert regs.io_read(PM1_CNT_PORT, 2, vcpu) == SCI_EN.to_bytes(2, "little")
    regs.io_write(port + 2, (0xFFFF).to_bytes(2, "little"), vcpu)
    enable = int.from_bytes(regs.io_read(port + 2, 2, vcpu), "little")
    assert enable and enable & ~0x4721 == 0  # only the defined enable bits stick
    regs.io_write(port, (0xFFFF).to_bytes(2, "little"), vcpu)
    assert regs.io_read(port, 2, vcpu) == b"\0\0"
    regs.io_write(PM1_CNT_PORT, (0).to_bytes(2, "little"), vcpu)
    assert regs.io_read(PM1_CNT_PORT, 1, vcpu)[0] & SCI_EN
    regs.io_write(PM1_CNT_PORT, (1 << 13 | 5 << 10).to_bytes(2, "little"), vcpu)
    assert regs.sleep_requests == 1  # SLP_EN dropped, counted
    assert regs.io_read(port, 4, vcpu)[2:] == regs.io_read(port + 2, 2, vcpu)
    assert len(regs.io_read(PM1_CNT_PORT + 1, 4, vcpu)) == 4
