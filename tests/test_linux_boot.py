"""The Linux boot path's pieces, checked without booting: the ELF loader refuses what is
not a vmlinux, the zero page and e820 map say what the boot protocol wants, the MP table
checksums and routes, and the 16550 passes the probe Linux's 8250 driver runs."""

from __future__ import annotations

import itertools
import struct
from fractions import Fraction
from typing import cast

import pytest

from tickless.axes import TimerPath
from tickless.devices.console_buffer import Console
from tickless.devices.uart import COM1_PORT, Uart16550
from tickless.errors import InputError
from tickless.guest import abi
from tickless.kvm.vcpu import Vcpu
from tickless.vmm import linux_boot as lb
from tickless.vmm.mptable import MPTABLE_GPA, mp_table

NO_VCPU = cast(Vcpu, None)


def _elf(entry: int, segments: list[tuple[int, int, bytes, int]], machine: int = 62) -> bytes:
    """A minimal ELF64 executable: (vaddr, paddr, data, memsz) per PT_LOAD."""
    phoff, phentsize = 64, 56
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[4], header[5], header[6] = 2, 1, 1
    struct.pack_into(
        "<HHIQQQIHHHHHH",
        header,
        16,
        2,
        machine,
        1,
        entry,
        phoff,
        0,
        0,
        64,
        phentsize,
        len(segments),
        0,
        0,
        0,
    )
    data_off = phoff + phentsize * len(segments)
    phdrs, blobs = b"", b""
    for vaddr, paddr, data, memsz in segments:
        phdrs += struct.pack(
            "<IIQQQQQQ", 1, 5, data_off + len(blobs), vaddr, paddr, len(data), memsz, 0x1000
        )
        blobs += data
    return bytes(header) + phdrs + blobs


def test_a_physical_entry_point_is_taken_as_it_is() -> None:
    """vmlinux's e_entry is startup_64's physical address, not its link address."""
    image = _elf(0x100_0000, [(0xFFFF_FFFF_8100_0000, 0x100_0000, b"\x90" * 64, 128)])
    assert lb.elf_segments(image)[0] == 0x100_0000


def test_elf_segments_and_physical_entry() -> None:
    image = _elf(0xFFFF_FFFF_8100_0040, [(0xFFFF_FFFF_8100_0000, 0x100_0000, b"\x90" * 64, 128)])
    entry, segments = lb.elf_segments(image)
    assert entry == 0x100_0040
    assert segments == [(0x100_0000, 64 + 56, 64, 128)]  # data right after the header


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"MZ" + bytes(100), "not a 64-bit little-endian ELF"),
        (_elf(0x1000, [(0x1000, 0x1000, b"x", 1)], machine=40), "not x86-64"),
        (_elf(0x9000, [(0x1000, 0x1000, b"x", 1)]), "no loadable segment holding its entry"),
        (_elf(0x1000, [(0x1000, 0x1000, b"x", 1)])[:100], "past the file.s end"),
    ],
)
def test_elf_that_is_not_a_vmlinux_is_refused(image: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        lb.elf_segments(image)


def test_zero_page_has_the_setup_header_and_e820() -> None:
    e820 = lb.e820_map(abi.LINUX_RAM_BYTES, abi.LINUX_WINDOW_GPA)
    page = lb.zero_page(42, e820)
    assert struct.unpack_from("<H", page, 0x1FE)[0] == 0xAA55
    assert page[0x202:0x206] == b"HdrS"
    assert struct.unpack_from("<I", page, 0x228)[0] == lb.CMDLINE_GPA
    assert struct.unpack_from("<I", page, 0x238)[0] == 42
    assert page[lb.E820_ENTRIES_OFFSET] == len(e820) == 4
    entries = [struct.unpack_from("<QQI", page, lb.E820_TABLE_OFFSET + 20 * i) for i in range(4)]
    assert entries == e820
    window = entries[-1]
    assert window == (abi.LINUX_WINDOW_GPA, abi.LINUX_WINDOW_BYTES, lb.E820_RESERVED)
    assert entries[1][0] == MPTABLE_GPA and entries[1][2] == lb.E820_RESERVED
    # no two ranges overlap, and RAM ends where the window begins
    spans = sorted((start, start + size) for start, size, _ in entries)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_mp_table_checksums_and_routes_isa_irqs() -> None:
    blob = mp_table()
    assert blob[:4] == b"_MP_" and sum(blob[:16]) % 256 == 0
    (physptr,) = struct.unpack_from("<I", blob, 4)
    table = blob[physptr - MPTABLE_GPA :]
    length, _spec, _sum = struct.unpack_from("<HBB", table, 4)
    assert table[:4] == b"PCMP" and sum(table[:length]) % 256 == 0
    (count,) = struct.unpack_from("<H", table, 34)
    offset, intsrc = 44, {}
    for _ in range(count):
        kind = table[offset]
        if kind == 3:
            _t, _irqtype, _flag, _bus, busirq, _apic, pin = struct.unpack_from(
                "<BBHBBBB", table, offset
            )
            intsrc[busirq] = pin
        offset += 20 if kind == 0 else 8
    assert offset == length
    assert intsrc[abi.LINUX_TIMER_IRQ] == abi.LINUX_TIMER_IRQ  # the PV timer's pin
    assert sorted(intsrc) == list(range(16))


def _out(uart: Uart16550, reg: int, value: int) -> None:
    uart.io_write(COM1_PORT + reg, bytes([value]), NO_VCPU)


def _in(uart: Uart16550, reg: int) -> int:
    return uart.io_read(COM1_PORT + reg, 1, NO_VCPU)[0]


def test_uart_passes_the_8250_probe_and_prints() -> None:
    console = Console()
    uart = Uart16550(console)
    _out(uart, 7, 0xA5)  # scratch register
    assert _in(uart, 7) == 0xA5
    _out(uart, 4, 0x10 | 0x0A)  # loopback, OUT2, RTS: MSR must read DCD|CTS
    assert _in(uart, 6) & 0xF0 == 0x90
    _out(uart, 0, ord("Z"))  # in loopback, a byte sent comes back, not out
    assert _in(uart, 5) & 0x01 and _in(uart, 0) == ord("Z")
    _out(uart, 4, 0x0B)
    _out(uart, 3, 0x80)  # DLAB: divisor latch
    _out(uart, 0, 0x01)
    _out(uart, 3, 0x03)
    assert _in(uart, 5) & 0x60 == 0x60  # transmitter always ready
    for ch in b"hi\n":
        _out(uart, 0, ch)
    assert console.text() == "hi\n"


def test_the_zoo_command_line_names_the_drivers_and_the_dilated_tsc() -> None:
    """hpet: the HPET is the clocksource; pit: no HPET and no TSC-deadline timer (Linux sets
    the PIT up only where the LAPIC timer needs it); both: no kvm-clock (it would give the
    boot wall clock), no LAPIC timer, and the TSC's rate in guest time given, not measured."""
    hpet = lb.zoo_cmdline(TimerPath.HPET, 2_600_000_000, Fraction(1)).split()
    assert {"no-kvmclock", "nolapic_timer", "clocksource=hpet", "pci=off"} <= set(hpet)
    assert "tsc_early_khz=2600000" in hpet and "hpet=disable" not in hpet
    pit = lb.zoo_cmdline(TimerPath.PIT, 2_600_000_000, Fraction(4)).split()
    assert {"hpet=disable", "lapic=notscdeadline", "nolapic_timer", "no-kvmclock"} <= set(pit)
    assert "tsc_early_khz=650000" in pit  # guest time runs 4x: the TSC counts 1/4 per ns
    assert "tsc_early_khz=5200000" in lb.zoo_cmdline(TimerPath.PIT, 2_600_000_000, Fraction(1, 2))
    assert "acpi=off" in lb.NO_ACPI_CMDLINE.split()  # without the zoo: no tables, no scan
