"""Entering a guest directly in 64-bit long mode, set up by the host.

Real-mode code is emulated (extremely slowly) on these machines, so the host builds the
page tables, GDT and TSS itself and starts the vCPU with paging and long mode already on.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tickless.kvm import abi

CR0_PE, CR0_MP, CR0_NE, CR0_WP, CR0_PG = 1 << 0, 1 << 1, 1 << 5, 1 << 16, 1 << 31
CR4_PAE, CR4_OSFXSR, CR4_OSXMMEXCPT = 1 << 5, 1 << 9, 1 << 10
EFER_LME, EFER_LMA = 1 << 8, 1 << 10

PTE_PRESENT, PTE_WRITE, PTE_USER, PTE_HUGE = 1 << 0, 1 << 1, 1 << 2, 1 << 7
PTE_PWT, PTE_PCD = 1 << 3, 1 << 4
HUGE_PAGE = 2 << 20
GIB = 1 << 30

GDT_KERNEL_CODE = 0x00AF9A000000FFFF
GDT_KERNEL_DATA = 0x00CF92000000FFFF
GDT_USER_DATA = 0x00CFF2000000FFFF
GDT_USER_CODE = 0x00AFFA000000FFFF


@dataclass(frozen=True)
class LongModeLayout:
    """Where the host puts the structures long mode needs, in guest-physical memory."""

    pml4: int
    pdpt: int
    pd: int
    gdt: int
    tss: int
    kernel_stack_top: int
    user_ports: tuple[int, ...]  # I/O ports ring 3 may use (TSS I/O permission bitmap)
    selectors: tuple[int, int, int, int, int]  # kernel cs, kernel ds, user ds, user cs, tss
    # One more 2 MiB page, uncached, above the first GiB: (its page directory, its address).
    # The small guest's platform MMIO (IOAPIC and HPET share the page at 0xFEC00000).
    mmio_page: tuple[int, int] | None = None


def page_tables(layout: LongModeLayout) -> dict[int, bytes]:
    """Identity map of the first 1 GiB in 2 MiB pages, user-accessible (ring 3 runs there).

    Only the guest's memory slots are backed; an access elsewhere in this map reaches the
    host as an MMIO exit, which is how a wild write is caught. ``layout.mmio_page`` adds one
    uncached 2 MiB page in a higher GiB (a device's registers, read from ring 3 too).
    """
    flags = PTE_PRESENT | PTE_WRITE | PTE_USER
    pml4 = struct.pack("<Q", layout.pdpt | flags)
    pdpt_entries = [layout.pd | flags]
    pd = b"".join(struct.pack("<Q", i * HUGE_PAGE | flags | PTE_HUGE) for i in range(512))
    tables = {layout.pml4: pml4, layout.pd: pd}
    if layout.mmio_page is not None:
        pd_high, gpa = layout.mmio_page
        gib, index = divmod(gpa, GIB)
        if gpa % HUGE_PAGE or not 0 < gib < 4:
            raise ValueError(f"an MMIO page at {gpa:#x} is not a 2 MiB page in GiB 1-3")
        pdpt_entries += [0] * (gib - 1) + [pd_high | flags]
        entry = gpa | flags | PTE_HUGE | PTE_PCD | PTE_PWT
        tables[pd_high] = struct.pack("<Q", entry).rjust((index // HUGE_PAGE + 1) * 8, b"\0")
    tables[layout.pdpt] = b"".join(struct.pack("<Q", e) for e in pdpt_entries)
    return tables


TSS_BASE_BYTES = 104


def tss_limit(layout: LongModeLayout) -> int:
    """TSS size - 1: the 104-byte TSS, the I/O bitmap up to the highest port, a 0xFF end."""
    bitmap_bytes = (max(layout.user_ports, default=0) + 3) // 8 + 1
    return TSS_BASE_BYTES + bitmap_bytes + 1 - 1


def gdt_and_tss(layout: LongModeLayout) -> dict[int, bytes]:
    """GDT with kernel/user code and data, and a 64-bit TSS whose RSP0 is the kernel stack
    and whose I/O bitmap lets ring 3 reach only ``user_ports`` (all others #GP)."""
    base, limit = layout.tss, tss_limit(layout)
    tss_low = (
        (limit & 0xFFFF)
        | ((base & 0xFFFFFF) << 16)
        | (0x89 << 40)  # present, type 9: available 64-bit TSS
        | (((limit >> 16) & 0xF) << 48)
        | (((base >> 24) & 0xFF) << 56)
    )
    tss_high = base >> 32
    gdt = struct.pack(
        "<7Q",
        0,
        GDT_KERNEL_CODE,
        GDT_KERNEL_DATA,
        GDT_USER_DATA,
        GDT_USER_CODE,
        tss_low,
        tss_high,
    )
    tss = bytearray(b"\xff" * (limit + 1))
    tss[:TSS_BASE_BYTES] = bytes(TSS_BASE_BYTES)
    struct.pack_into("<Q", tss, 4, layout.kernel_stack_top)  # RSP0
    struct.pack_into("<H", tss, 102, TSS_BASE_BYTES)  # I/O bitmap right after the TSS
    for first in layout.user_ports:
        for port in range(first, first + 4):  # up to 32-bit accesses
            tss[TSS_BASE_BYTES + port // 8] &= ~(1 << (port % 8)) & 0xFF
    return {layout.gdt: gdt, layout.tss: bytes(tss)}


def _segment(selector: int, code: bool) -> abi.Segment:
    return abi.Segment(
        base=0,
        limit=0xFFFFFFFF,
        selector=selector,
        type=11 if code else 3,
        present=1,
        dpl=0,
        db=0 if code else 1,
        s=1,
        l=1 if code else 0,
        g=1,
    )


def long_mode_sregs(sregs: abi.Sregs, layout: LongModeLayout) -> abi.Sregs:
    """Fill special registers for 64-bit ring 0 with paging on (apic_base is kept)."""
    kernel_cs, kernel_ds, _user_ds, _user_cs, tss_sel = layout.selectors
    sregs.cs = _segment(kernel_cs, code=True)
    for name in ("ds", "es", "fs", "gs", "ss"):
        setattr(sregs, name, _segment(kernel_ds, code=False))
    sregs.tr = abi.Segment(
        base=layout.tss, limit=tss_limit(layout), selector=tss_sel, type=11, present=1
    )
    sregs.gdt.base, sregs.gdt.limit = layout.gdt, 7 * 8 - 1
    sregs.idt.base, sregs.idt.limit = 0, 0
    sregs.cr0 = CR0_PE | CR0_MP | CR0_NE | CR0_WP | CR0_PG
    sregs.cr3 = layout.pml4
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT
    sregs.efer = EFER_LME | EFER_LMA
    return sregs
