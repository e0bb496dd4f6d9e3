"""The hand-written ctypes layouts and ioctl numbers against the kernel's own headers, the
generated guest header against a C compiler, and the long-mode tables the host builds
against the x86 descriptor formats."""

from __future__ import annotations

import ctypes as C
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickless.guest import abi as guest_abi
from tickless.guest import abi_header
from tickless.kvm import abi
from tickless.kvm.exits import ExitReason
from tickless.kvm.longmode import (
    CR0_PE,
    CR0_PG,
    CR4_PAE,
    EFER_LMA,
    EFER_LME,
    HUGE_PAGE,
    PTE_HUGE,
    PTE_PRESENT,
    PTE_USER,
    PTE_WRITE,
    TSS_BASE_BYTES,
    LongModeLayout,
    gdt_and_tss,
    long_mode_sregs,
    page_tables,
    tss_limit,
)

KVM_H = Path("/usr/include/linux/kvm.h")
GCC = shutil.which("gcc")

needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc is not installed")
needs_kvm_h = pytest.mark.skipif(
    not KVM_H.exists(), reason=f"{KVM_H} missing (install linux-libc-dev)"
)

# The layout tickless/vmm/machine.py boots with.
LAYOUT = LongModeLayout(
    pml4=guest_abi.PML4_GPA,
    pdpt=guest_abi.PDPT_GPA,
    pd=guest_abi.PD_GPA,
    gdt=guest_abi.GDT_GPA,
    tss=guest_abi.TSS_GPA,
    kernel_stack_top=guest_abi.KERNEL_STACK_TOP,
    user_ports=(guest_abi.CONSOLE_PORT, guest_abi.HYPERCALL_PORT),
    selectors=(
        guest_abi.KERNEL_CS,
        guest_abi.KERNEL_DS,
        guest_abi.USER_DS,
        guest_abi.USER_CS,
        guest_abi.TSS_SEL,
    ),
)

# --- what to compare: (group, C expression, Python value) -------------------------------------

Check = tuple[str, str, int]


def _fields(struct_type: type[C.Structure]) -> list[str]:
    return [name for name, *_ in struct_type._fields_]


def _struct_checks(c_name: str, py: type[C.Structure], whole: bool = True) -> list[Check]:
    checks: list[Check] = []
    if whole:
        checks.append(("size", f"sizeof(struct {c_name})", C.sizeof(py)))
    for name in _fields(py):
        offset = getattr(py, name).offset
        checks.append(("offset", f"offsetof(struct {c_name}, {name})", offset))
    return checks


def _run_member_checks(member: str, py: type[C.Structure]) -> list[Check]:
    """Offsets inside one member of kvm_run's exit union, relative to the union."""
    return [
        (
            "run",
            f"offsetof(struct kvm_run, {member}.{name}) - offsetof(struct kvm_run, {member})",
            getattr(py, name).offset,
        )
        for name in _fields(py)
    ]


def build_checks() -> list[Check]:
    checks: list[Check] = []
    checks += _struct_checks("kvm_regs", abi.Regs)
    checks += _struct_checks("kvm_segment", abi.Segment)
    checks += _struct_checks("kvm_dtable", abi.DTable)
    checks += _struct_checks("kvm_sregs", abi.Sregs)
    checks += _struct_checks("kvm_msi", abi.Msi)
    checks += _struct_checks("kvm_enable_cap", abi.EnableCap)
    checks += _struct_checks("kvm_userspace_memory_region", abi.UserspaceMemoryRegion)
    checks += _struct_checks("kvm_clock_data", abi.ClockData)
    checks += _struct_checks("kvm_cpuid_entry2", abi.CpuidEntry2)
    checks += _struct_checks("kvm_msr_entry", abi.MsrEntry)
    checks += _struct_checks("kvm_irq_level", abi.IrqLevel)
    checks += _struct_checks("kvm_pit_config", abi.PitConfig)
    checks += _struct_checks("kvm_vcpu_events", abi.VcpuEvents)
    checks += _struct_checks("kvm_translation", abi.Translation)
    # Variable-length tables: the ioctl size is the header's; entries follow it.
    checks += _struct_checks("kvm_cpuid2", abi.Cpuid2Header)
    checks += _struct_checks("kvm_msrs", abi.MsrsHeader)
    checks.append(("offset", "offsetof(struct kvm_cpuid2, entries)", abi.Cpuid2.entries.offset))
    checks.append(("offset", "offsetof(struct kvm_msrs, entries)", abi.Msrs.entries.offset))

    # kvm_run: Python stops after the sync regs it uses, so offsets only, no total size.
    run = abi.Run
    for name in _fields(run):
        if name == "exit":
            checks.append(("run", "offsetof(struct kvm_run, io)", run.exit.offset))
        else:
            checks.append(("run", f"offsetof(struct kvm_run, {name})", getattr(run, name).offset))
    s = run.s.offset
    checks.append(("run", "offsetof(struct kvm_run, s.regs.regs)", s + abi.SyncRegs.regs.offset))
    checks.append(("run", "offsetof(struct kvm_run, s.regs.sregs)", s + abi.SyncRegs.sregs.offset))
    checks += _run_member_checks("io", abi.RunIo)
    checks += _run_member_checks("mmio", abi.RunMmio)
    checks += _run_member_checks("fail_entry", abi.RunFailEntry)
    checks += _run_member_checks("internal", abi.RunInternal)
    checks += _run_member_checks("system_event", abi.RunSystemEvent)
    for member in ("mmio", "fail_entry", "internal", "system_event"):
        checks.append(("run", f"offsetof(struct kvm_run, {member})", run.exit.offset))

    ioctls = {
        "KVM_GET_API_VERSION": abi.GET_API_VERSION,
        "KVM_CREATE_VM": abi.CREATE_VM,
        "KVM_CHECK_EXTENSION": abi.CHECK_EXTENSION,
        "KVM_GET_VCPU_MMAP_SIZE": abi.GET_VCPU_MMAP_SIZE,
        "KVM_GET_SUPPORTED_CPUID": abi.GET_SUPPORTED_CPUID,
        "KVM_CREATE_VCPU": abi.CREATE_VCPU,
        "KVM_SET_USER_MEMORY_REGION": abi.SET_USER_MEMORY_REGION,
        "KVM_SET_TSS_ADDR": abi.SET_TSS_ADDR,
        "KVM_SET_IDENTITY_MAP_ADDR": abi.SET_IDENTITY_MAP_ADDR,
        "KVM_CREATE_IRQCHIP": abi.CREATE_IRQCHIP,
        "KVM_IRQ_LINE": abi.IRQ_LINE,
        "KVM_CREATE_PIT2": abi.CREATE_PIT2,
        "KVM_TRANSLATE": abi.TRANSLATE,
        "KVM_GET_VCPU_EVENTS": abi.GET_VCPU_EVENTS,
        "KVM_SET_VCPU_EVENTS": abi.SET_VCPU_EVENTS,
        "KVM_GET_CLOCK": abi.GET_CLOCK,
        "KVM_RUN": abi.RUN,
        "KVM_GET_REGS": abi.GET_REGS,
        "KVM_SET_REGS": abi.SET_REGS,
        "KVM_GET_SREGS": abi.GET_SREGS,
        "KVM_SET_SREGS": abi.SET_SREGS,
        "KVM_SET_MSRS": abi.SET_MSRS,
        "KVM_SET_CPUID2": abi.SET_CPUID2,
        "KVM_GET_TSC_KHZ": abi.GET_TSC_KHZ,
        "KVM_ENABLE_CAP": abi.ENABLE_CAP,
        "KVM_SIGNAL_MSI": abi.SIGNAL_MSI,
    }
    checks += [("ioctl", name, value) for name, value in ioctls.items()]

    constants = {
        "KVMIO": abi.KVMIO,
        "KVM_CAP_IRQCHIP": abi.CAP_IRQCHIP,
        "KVM_CAP_SET_TSS_ADDR": abi.CAP_SET_TSS_ADDR,
        "KVM_CAP_USER_MEMORY": abi.CAP_USER_MEMORY,
        "KVM_CAP_TSC_DEADLINE_TIMER": abi.CAP_TSC_DEADLINE_TIMER,
        "KVM_CAP_SYNC_REGS": abi.CAP_SYNC_REGS,
        "KVM_CAP_SIGNAL_MSI": abi.CAP_SIGNAL_MSI,
        "KVM_CAP_X2APIC_API": abi.CAP_X2APIC_API,
        "KVM_CAP_IMMEDIATE_EXIT": abi.CAP_IMMEDIATE_EXIT,
        "KVM_CAP_HALT_POLL": abi.CAP_HALT_POLL,
        "KVM_CAP_GET_TSC_KHZ": abi.CAP_GET_TSC_KHZ,
        "KVM_SYNC_X86_REGS": abi.SYNC_X86_REGS,
        "KVM_X2APIC_API_USE_32BIT_IDS": abi.X2APIC_API_USE_32BIT_IDS,
        "KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK": abi.X2APIC_API_DISABLE_BROADCAST_QUIRK,
    }
    constants |= {f"KVM_EXIT_{reason.name}": int(reason) for reason in ExitReason}
    checks += [("constant", name, value) for name, value in constants.items()]
    return checks


CHECKS = build_checks()
GROUPS = sorted({group for group, _, _ in CHECKS})


def _c_program(checks: list[Check]) -> str:
    lines = [
        "#include <stddef.h>",
        "#include <stdio.h>",
        "#include <linux/kvm.h>",
        "int main(void) {",
    ]
    for i, (group, expr, _) in enumerate(checks):
        line = f'    printf("{i} %llu\\n", (unsigned long long)({expr}));'
        if group == "constant":  # newer exit reasons may be missing from an older header
            line = f"#ifdef {expr}\n{line}\n#endif"
        lines.append(line)
    lines += ["    return 0;", "}", ""]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def kernel_values(tmp_path_factory: pytest.TempPathFactory) -> dict[int, int]:
    """Each check's value as the C compiler sees it in <linux/kvm.h>, by check index."""
    if not KVM_H.exists():
        pytest.skip(f"{KVM_H} missing (install linux-libc-dev)")
    if GCC is None:
        pytest.skip("gcc is not installed")
    tmp = tmp_path_factory.mktemp("kvm_abi")
    src, exe = tmp / "layout.c", tmp / "layout"
    src.write_text(_c_program(CHECKS))
    subprocess.run([GCC, "-std=gnu11", "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {int(i): int(v) for i, v in (line.split() for line in out.splitlines())}


@pytest.mark.parametrize("group", GROUPS)
def test_matches_kernel_header(kernel_values: dict[int, int], group: str) -> None:
    """Every size, offset, ioctl number and constant equals the kernel's: a wrong one makes
    an ioctl fail with EINVAL/ENOTTY at best, or read the wrong bytes at worst."""
    mismatches = []
    compared = 0
    for i, (g, expr, py_value) in enumerate(CHECKS):
        if g != group or i not in kernel_values:
            continue
        compared += 1
        if kernel_values[i] != py_value:
            mismatches.append(f"{expr}: kernel {kernel_values[i]:#x}, python {py_value:#x}")
    assert compared > 0
    assert mismatches == []


def test_required_ioctls_and_exits_present(kernel_values: dict[int, int]) -> None:
    """The exit reasons the VMM acts on are in the header (not skipped by #ifdef)."""
    required = {f"KVM_EXIT_{n}" for n in ("IO", "MMIO", "SHUTDOWN", "FAIL_ENTRY", "HLT")}
    required |= {"KVM_EXIT_INTERNAL_ERROR", "KVM_EXIT_SYSTEM_EVENT", "KVM_CAP_SYNC_REGS"}
    present = {CHECKS[i][1] for i in kernel_values}
    assert required <= present


def test_ioctl_encoding() -> None:
    """_IO/_IOR/_IOW/_IOWR encode direction, size, type 0xAE and number as asm-generic does."""
    assert abi.RUN == 0xAE80
    assert abi.GET_REGS == (2 << 30) | (144 << 16) | (0xAE << 8) | 0x81
    assert abi.SET_SREGS == (1 << 30) | (312 << 16) | (0xAE << 8) | 0x84
    assert abi.GET_SUPPORTED_CPUID == (3 << 30) | (8 << 16) | (0xAE << 8) | 0x05


# --- the generated guest header ------------------------------------------------------------


def _compile(tmp_path: Path, header: str, *args: str, source: str, suffix: str) -> None:
    assert GCC is not None
    (tmp_path / "tickless_abi.h").write_text(header)
    src = tmp_path / f"use{suffix}"
    src.write_text(source)
    subprocess.run([GCC, *args, str(src)], check=True, capture_output=True, cwd=tmp_path)


@needs_gcc
def test_c_header_compiles(tmp_path: Path) -> None:
    """render_c_header() is valid freestanding C, and its _Static_asserts (every field
    offset and struct size) hold for the compiler the guest is built with."""
    source = '#include "tickless_abi.h"\nint x = HYPERCALL_SET_CLOCKEVENT;\n'
    _compile(
        tmp_path,
        abi_header.render_c_header(),
        "-fsyntax-only",
        "-ffreestanding",
        "-std=gnu11",
        "-Wall",
        "-Werror",
        source=source,
        suffix=".c",
    )


@needs_gcc
def test_c_header_static_asserts_bite(tmp_path: Path) -> None:
    """The check above is not vacuous: a header with one wrong offset does not compile."""
    header = abi_header.render_c_header()
    good = "__builtin_offsetof(struct tickless_shared, wakeups) == 40, "
    assert good in header
    bad = header.replace(good, good.replace("== 40", "== 48"))
    with pytest.raises(subprocess.CalledProcessError):
        _compile(
            tmp_path,
            bad,
            "-fsyntax-only",
            "-ffreestanding",
            source='#include "tickless_abi.h"\n',
            suffix=".c",
        )


@needs_gcc
def test_c_header_usable_from_assembly(tmp_path: Path) -> None:
    """The guest's entry.S includes the header too: with __ASSEMBLER__ only #defines remain."""
    source = (
        '#include "tickless_abi.h"\n'
        "mov $HYPERCALL_PORT, %dx\n"
        "mov $SHARED_IRQ_COUNT, %rax\n"
        "movabs $BOOT_MAGIC, %rax\n"
    )
    _compile(
        tmp_path,
        abi_header.render_c_header(),
        "-c",
        "-o",
        str(tmp_path / "use.o"),
        source=source,
        suffix=".S",
    )


def test_pvclock_struct_layout() -> None:
    """struct pvclock_vcpu_time_info is 32 bytes with the kernel's field offsets."""
    info = guest_abi.PvclockVcpuTimeInfo
    assert C.sizeof(info) == 32
    offsets = {name: getattr(info, name).offset for name in _fields(info)}
    assert offsets == {
        "version": 0,
        "pad0": 4,
        "tsc_timestamp": 8,
        "system_time": 16,
        "tsc_to_system_mul": 24,
        "tsc_shift": 28,
        "flags": 29,
        "pad": 30,
    }


# --- long mode: GDT, TSS, I/O bitmap, page tables ------------------------------------------


def _descriptor(gdt: bytes, selector: int) -> tuple[int, int, int, int]:
    """(base, limit, access byte, flags nibble) of a 16-byte system descriptor."""
    low, high = struct.unpack_from("<QQ", gdt, selector & ~7)
    limit = (low & 0xFFFF) | (((low >> 48) & 0xF) << 16)
    base = ((low >> 16) & 0xFFFFFF) | (((low >> 56) & 0xFF) << 24) | ((high & 0xFFFFFFFF) << 32)
    assert high >> 32 == 0, "reserved upper half of a 16-byte descriptor must be zero"
    return base, limit, (low >> 40) & 0xFF, (low >> 52) & 0xF


def _allowed_ports(tss: bytes) -> set[int]:
    """Ports whose I/O-bitmap bit is clear, counting bytes past the limit as set."""
    (io_base,) = struct.unpack_from("<H", tss, 102)
    bits = np.unpackbits(np.frombuffer(tss[io_base:], dtype=np.uint8), bitorder="little")
    return {int(p) for p in np.flatnonzero(bits == 0)}


def _layout(tss: int, ports: tuple[int, ...]) -> LongModeLayout:
    return LongModeLayout(
        pml4=LAYOUT.pml4,
        pdpt=LAYOUT.pdpt,
        pd=LAYOUT.pd,
        gdt=LAYOUT.gdt,
        tss=tss,
        kernel_stack_top=LAYOUT.kernel_stack_top,
        user_ports=ports,
        selectors=LAYOUT.selectors,
    )


def test_tss_descriptor() -> None:
    """The GDT's TSS descriptor, at the TSS selector, decodes to the TSS's base and limit,
    type 9 (available 64-bit TSS), present, DPL 0, byte granularity."""
    blobs = gdt_and_tss(LAYOUT)
    gdt, tss = blobs[LAYOUT.gdt], blobs[LAYOUT.tss]
    assert len(gdt) == 7 * 8
    base, limit, access, flags = _descriptor(gdt, guest_abi.TSS_SEL)
    assert base == LAYOUT.tss
    assert limit == len(tss) - 1 == tss_limit(LAYOUT)
    assert access == 0x89  # P=1, DPL=0, S=0, type 9
    assert flags & 0x8 == 0  # G=0: limit in bytes
    assert LAYOUT.tss + len(tss) <= guest_abi.BOOT_GPA  # fits below the next structure


@pytest.mark.parametrize("tss_base", [0x4100, 0x00FF_FFFF, 0x1234_5678, 0x1_2345_6789])
def test_tss_descriptor_base_bits(tss_base: int) -> None:
    """All base bits land in their split fields (15:0 is limit, 39:16, 63:56, high dword)."""
    layout = _layout(tss_base, LAYOUT.user_ports)
    base, limit, _, _ = _descriptor(gdt_and_tss(layout)[layout.gdt], guest_abi.TSS_SEL)
    assert (base, limit) == (tss_base, tss_limit(layout))


def test_gdt_segments() -> None:
    """Kernel code/data at DPL 0, user data/code at DPL 3, code segments 64-bit (L=1)."""
    gdt = gdt_and_tss(LAYOUT)[LAYOUT.gdt]
    kcs, kds, uds, ucs, _ = LAYOUT.selectors
    assert struct.unpack_from("<Q", gdt, 0)[0] == 0
    for sel, dpl, code in ((kcs, 0, True), (kds, 0, False), (uds, 3, False), (ucs, 3, True)):
        (desc,) = struct.unpack_from("<Q", gdt, sel & ~7)
        access, flags = (desc >> 40) & 0xFF, (desc >> 52) & 0xF
        assert access & 0x80, "present"
        assert (access >> 5) & 3 == dpl == sel & 3
        assert access & 0x10, "code/data segment"
        assert bool(access & 0x08) is code
        if code:
            assert flags & 0x2, "L bit: 64-bit code"
            assert not flags & 0x4, "D must be 0 when L is 1"


def test_tss_contents() -> None:
    """RSP0 (offset 4) is the kernel stack, the I/O map base (offset 102) is 104, the rest
    of the 104-byte TSS is zero, and the bitmap ends with an all-ones byte."""
    tss = gdt_and_tss(LAYOUT)[LAYOUT.tss]
    assert struct.unpack_from("<Q", tss, 4)[0] == LAYOUT.kernel_stack_top
    assert struct.unpack_from("<H", tss, 102)[0] == TSS_BASE_BYTES == 104
    rest = bytearray(tss[:TSS_BASE_BYTES])
    rest[4:12] = bytes(8)
    rest[102:104] = bytes(2)
    assert rest == bytes(TSS_BASE_BYTES)
    assert tss[-1] == 0xFF


def test_io_bitmap_user_ports() -> None:
    """Ring 3 may use exactly the console and hypercall ports (each with its next 3, for
    32-bit accesses); every other port, e.g. 0x80 or 0x604/0x605, faults."""
    tss = gdt_and_tss(LAYOUT)[LAYOUT.tss]
    expected = {p + i for p in LAYOUT.user_ports for i in range(4)}
    assert _allowed_ports(tss) == expected
    allowed = _allowed_ports(tss)
    for denied in (0x80, 0xE8, 0xED, 0x5FF, 0x604, 0x601 + 4, 0xFFFF):
        assert denied not in allowed
    # The CPU reads two bitmap bytes per check: both must be inside the limit.
    top = max(LAYOUT.user_ports) + 3
    assert TSS_BASE_BYTES + top // 8 + 1 <= tss_limit(LAYOUT)


@settings(max_examples=50)
@given(st.lists(st.integers(0, 0xFFFC), max_size=5).map(tuple))
def test_io_bitmap_any_ports(ports: tuple[int, ...]) -> None:
    """For any set of user ports, the bitmap allows exactly them and the 3 after each, and
    the TSS ends with the 0xFF byte the CPU may read past the last bitmap byte."""
    layout = _layout(LAYOUT.tss, ports)
    tss = gdt_and_tss(layout)[layout.tss]
    assert len(tss) == tss_limit(layout) + 1
    assert _allowed_ports(tss) == {p + i for p in ports for i in range(4)}
    assert tss[-1] == 0xFF


def _translate(tables: dict[int, bytes], vaddr: int) -> int | None:
    """Walk the 4-level tables as the MMU would (2 MiB leaves); None when not present."""

    def entry(table: int, index: int) -> int:
        blob = tables[table]
        return struct.unpack_from("<Q", blob, index * 8)[0] if index * 8 < len(blob) else 0

    e = entry(LAYOUT.pml4, (vaddr >> 39) & 511)
    if not e & PTE_PRESENT:
        return None
    e = entry(e & ~0xFFF, (vaddr >> 30) & 511)
    if not e & PTE_PRESENT:
        return None
    e = entry(e & ~0xFFF, (vaddr >> 21) & 511)
    if not e & PTE_PRESENT:
        return None
    assert e & PTE_HUGE
    return (e & ~(HUGE_PAGE - 1) & ~(1 << 63)) | (vaddr & (HUGE_PAGE - 1))


def test_page_tables_entries() -> None:
    """PML4[0] -> PDPT, PDPT[0] -> PD, and 512 PDEs of 2 MiB: present|write|user|huge."""
    tables = page_tables(LAYOUT)
    flags = PTE_PRESENT | PTE_WRITE | PTE_USER
    assert struct.unpack("<Q", tables[LAYOUT.pml4]) == (LAYOUT.pdpt | flags,)
    assert struct.unpack("<Q", tables[LAYOUT.pdpt]) == (LAYOUT.pd | flags,)
    pd = struct.unpack("<512Q", tables[LAYOUT.pd])
    for i, e in enumerate(pd):
        assert e == i * HUGE_PAGE | flags | PTE_HUGE


@given(st.integers(0, (1 << 30) - 1))
def test_page_tables_identity(vaddr: int) -> None:
    """Every address in the first GiB maps to itself; the next GiB is not mapped."""
    tables = page_tables(LAYOUT)
    assert _translate(tables, vaddr) == vaddr
    assert _translate(tables, vaddr + (1 << 30)) is None


def test_long_mode_sregs() -> None:
    """Paging + PAE + long mode on, CR3 at the PML4, 64-bit kernel CS, TR at the TSS."""
    sregs = long_mode_sregs(abi.Sregs(), LAYOUT)
    assert sregs.cr0 & (CR0_PE | CR0_PG) == CR0_PE | CR0_PG
    assert sregs.cr4 & CR4_PAE
    assert sregs.efer & (EFER_LME | EFER_LMA) == EFER_LME | EFER_LMA
    assert sregs.cr3 == LAYOUT.pml4
    assert (sregs.cs.selector, sregs.cs.l, sregs.cs.db) == (guest_abi.KERNEL_CS, 1, 0)
    assert sregs.ss.selector == guest_abi.KERNEL_DS
    assert (sregs.tr.base, sregs.tr.limit) == (LAYOUT.tss, tss_limit(LAYOUT))
    assert (sregs.tr.selector, sregs.tr.type, sregs.tr.present) == (guest_abi.TSS_SEL, 11, 1)
    assert (sregs.gdt.base, sregs.gdt.limit) == (LAYOUT.gdt, 7 * 8 - 1)


def test_page_tables_map_one_uncached_mmio_page_high() -> None:
    """The small guest's IOAPIC/HPET page: PDPT[3] -> its own PD, whose entry for 0xFEC00000
    maps that 2 MiB page uncached; a page that is not 2 MiB aligned is refused."""
    from dataclasses import replace

    from tickless.kvm.longmode import PTE_PCD, PTE_PWT

    layout = replace(LAYOUT, mmio_page=(guest_abi.PD_HIGH_GPA, guest_abi.IOAPIC_GPA))
    tables = page_tables(layout)
    flags = PTE_PRESENT | PTE_WRITE | PTE_USER
    pdpt = struct.unpack(f"<{len(tables[LAYOUT.pdpt]) // 8}Q", tables[LAYOUT.pdpt])
    assert pdpt == (LAYOUT.pd | flags, 0, 0, guest_abi.PD_HIGH_GPA | flags)
    high = tables[guest_abi.PD_HIGH_GPA]
    entries = struct.unpack(f"<{len(high) // 8}Q", high)
    index = (guest_abi.HPET_GPA - 3 * (1 << 30)) // HUGE_PAGE  # the HPET shares the page
    assert entries[index] == guest_abi.IOAPIC_GPA | flags | PTE_HUGE | PTE_PCD | PTE_PWT
    assert not any(entries[:index])
    with pytest.raises(ValueError, match="2 MiB page"):
        page_tables(replace(LAYOUT, mmio_page=(guest_abi.PD_HIGH_GPA, 0xFED00000)))
