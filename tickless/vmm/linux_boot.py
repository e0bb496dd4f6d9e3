"""Booting a Linux kernel: the x86-64 boot protocol, entered directly in 64-bit mode.

As Firecracker and kvmtool do for a ``vmlinux``: load the ELF's segments at their physical
addresses, write ``struct boot_params`` (the "zero page": setup header, command line,
e820 map), an MP table for the IOAPIC (and, for the timer zoo, ACPI tables: ``acpi.py``),
long-mode page tables and a GDT, and enter
``startup_64`` with ``rsi`` pointing at the zero page (Documentation/arch/x86/boot.rst,
"64-bit boot protocol"). Real mode is never run: it is emulated, and very slow, here.

The window the host shares with our drivers sits at the top of RAM, reserved in the e820
map and named on the command line (``tickless.window=``), see ``guest/abi.py``.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from tickless.axes import TimerPath
from tickless.devices.config import GuestConfig
from tickless.devices.device import GuestLayout
from tickless.devices.memory import GuestMemory
from tickless.errors import InputError
from tickless.guest import abi
from tickless.kvm import abi as kvm_abi
from tickless.kvm.exits import InternalError, VcpuExit
from tickless.kvm.longmode import LongModeLayout
from tickless.kvm.system import KvmSystem
from tickless.kvm.vcpu import Vcpu
from tickless.kvm.vm import Vm
from tickless.timers.clock import GuestClock
from tickless.vmm.acpi import ACPI_BYTES, ACPI_GPA, build_tables
from tickless.vmm.boot import enter_long_mode, write_boot_block, write_long_mode_tables
from tickless.vmm.cpuid import without_clock_leaves
from tickless.vmm.mptable import MPTABLE_BYTES, MPTABLE_GPA, mp_table

ZERO_PAGE_GPA = 0x7000
CMDLINE_GPA = 0x20000
CMDLINE_MAX_BYTES = 2048
BOOT_STACK_TOP = 0x8FF0
HIMEM_GPA = 0x10_0000
LINUX_LONG_MODE = LongModeLayout(
    pml4=0x9000,
    pdpt=0xA000,
    pd=0xB000,
    gdt=0x500,
    tss=0x600,
    kernel_stack_top=BOOT_STACK_TOP,
    user_ports=(),
    selectors=(0x08, 0x10, 0x18 | 3, 0x20 | 3, 0x28),
)

# struct boot_params offsets (arch/x86/include/uapi/asm/bootparam.h)
ACPI_RSDP_ADDR_OFFSET = 0x070
E820_ENTRIES_OFFSET = 0x1E8
SETUP_HEADER_OFFSET = 0x1F1
E820_TABLE_OFFSET = 0x2D0
E820_MAX_ENTRIES = 128
E820_RAM, E820_RESERVED, E820_ACPI = 1, 2, 3
BOOT_FLAG, HDRS_MAGIC, BOOT_PROTOCOL = 0xAA55, 0x53726448, 0x020F
LOADER_UNDEFINED = 0xFF
LOADED_HIGH = 0x01
KERNEL_ALIGNMENT = 0x100_0000

INT3 = 0xCC
FWAIT = 0x9B
BP_VECTOR = 3

# What these hosts need on the command line (../shared/notes/linux-guest-on-this-host.md):
# the emulated ring 0 lacks xrstor, popcnt and clac; the serial console is ttyS0.
# random.trust_cpu=off: with RDRAND trusted the entropy pool is ready at once and then
# reseeds every uptime/2 s for two minutes, ~30 ms of emulated ring 0 and ~6 interrupts a
# time, which an idle guest would report as its own timer activity. Off, the pool never
# becomes ready, which nothing here needs (there is no user space).
CLEARED_CPUID = "smap,xsave,popcnt"
BASE_CMDLINE = (
    f"console=ttyS0 earlyprintk=serial,ttyS0,115200 clearcpuid={CLEARED_CPUID} "
    "panic=-1 random.trust_cpu=off"
)
# A stock kernel is not shown TSC_ADJUST either: with it and an invariant TSC Linux turns its
# clocksource watchdog off for the TSC (check_system_tsc_reliable), as tsc=reliable would.
# Guest CPUID does not follow KVM_SET_CPUID2 on these hosts (vmm/cpuid.py), so the kernel's
# own clearcpuid takes the bit away.
STOCK_BASE_CMDLINE = BASE_CMDLINE.replace(CLEARED_CPUID, f"{CLEARED_CPUID},tsc_adjust")
# Our clocks bend with the timeline and the TSC need not: nothing may compare them
# (tickless.config, "Time that bends"). The stock kernel keeps the comparison.
TICKLESS_CLOCKS_CMDLINE = "tsc=reliable"
# A stock kernel is told its TSC's rate in guest time (tsc_early_khz = host kHz / R) and
# refines it itself against the dilated HPET a second after boot; told nothing, it would
# calibrate at boot against the HPET and PIT, which a busy host spoils: MMIO exits kept
# waiting for milliseconds put 10 guests booting together at R = 0.1 1.4 % off, and Linux
# refuses a refinement more than 1 % from its boot figure, so the watchdog then marks the
# TSC unstable. The refinement (tsc_refine_calibration_work) drops a sample whose two TSC
# reads around an HPET read are more than tsc_khz/32 cycles apart, 31.25/R us of wall time
# here: above R ~ 2 an HPET read (an MMIO exit, ~12 us) never fits, and the told rate stays
# (docs/linux-stock-on-bent-time.md).
# Linux checks at boot that its timer interrupt works (io_apic.c, timer_irq_works) by
# waiting 4e10/HZ TSC cycles for 4 jiffies: 154 ms of the host's TSC, which below rate
# ~0.4 is fewer than 4 jiffies of guest time, and the kernel panics ("IO-APIC + timer
# doesn't work"). kvm-clock's init turns that check off in every KVM guest; hidden from
# CPUID it cannot, so the stock command line says no_timer_check itself.
STOCK_TIMER_CHECK = "no_timer_check"

# No ACPI tables (the guest without the zoo): acpi=off, or Linux would scan the BIOS area
# for an RSDP (seconds of emulated ring 0, as the MP table's scan). pci=off everywhere: PCI is
# built only for ACPICA (tickless.config), and the host emulates no PCI bus.
NO_ACPI_CMDLINE = "acpi=off pci=off"


def zoo_cmdline(timer: TimerPath, tsc_hz: int, rate: Fraction) -> str:
    """The command line that makes Linux's own drivers run on the zoo's chips.

    - ``pci=off``: as everywhere (``NO_ACPI_CMDLINE``);
    - ``no-kvmclock``: kvm-clock would supply the boot wall clock (x86_platform.
      get_wallclock) in place of the CMOS RTC, and a clocksource on the host's time;
    - ``tsc_early_khz``: without kvm-clock Linux would calibrate the TSC against the PIT,
      which fails here (emulated ring 0 is too slow) and leaves the TSC unusable; the TSC's
      rate in guest time is the host's divided by the dilation rate;
    - ``nolapic_timer``: the LAPIC timer stays out, so the tick runs on the global
      clock-event device (the HPET's legacy timer 0, or the PIT);
    - hpet: ``clocksource=hpet`` (timekeeping reads the HPET's main counter);
    - pit: ``hpet=disable`` (else the HPET is the clock-event device) and
      ``lapic=notscdeadline`` (Linux sets the PIT up only where the LAPIC timer needs it:
      with the TSC-deadline timer present it stops the PIT instead, ``apic_needs_pit``).
    """
    khz = round(Fraction(tsc_hz, 1000) / rate)
    words = ["pci=off", "no-kvmclock", f"tsc_early_khz={khz}", "nolapic_timer"]
    if timer is TimerPath.PIT:
        words += ["hpet=disable", "lapic=notscdeadline"]
    else:
        words += ["clocksource=hpet"]
    return " ".join(words)


def stock_cmdline(timer: TimerPath, tsc_hz: int, rate: Fraction) -> str:
    """The stock kernel's words: Linux's own drivers choose (``lapic``) or the HPET is
    steered in (``hpet``); no ``tsc=reliable``, no ``no-kvmclock`` (CPUID hides KVM,
    ``vmm/cpuid.py``); the TSC's rate only where Linux cannot refine it (``tsc_told_khz``);
    no boot check of the timer interrupt, as in any KVM guest (``STOCK_TIMER_CHECK``)."""
    words = ["pci=off", STOCK_TIMER_CHECK]
    if timer is TimerPath.HPET:
        words += ["nolapic_timer", "clocksource=hpet"]
    words.append(f"tsc_early_khz={tsc_told_khz(tsc_hz, rate)}")
    return " ".join(words)


def tsc_told_khz(tsc_hz: int, rate: Fraction) -> int:
    """The TSC's rate in guest time that a stock kernel is told at boot (it refines it
    against the HPET after, where it can)."""
    return round(Fraction(tsc_hz, 1000) / rate)


PT_LOAD = 1
ELF_MAGIC = b"\x7fELF"
EM_X86_64 = 62


def elf_segments(image: bytes) -> tuple[int, list[tuple[int, int, int, int]]]:
    """The entry point (physical) and the PT_LOAD segments (paddr, offset, filesz, memsz)
    of a 64-bit x86 ELF executable; raises InputError for anything else. The entry may be
    virtual or, as in a vmlinux, already physical."""
    if len(image) < 64 or image[:4] != ELF_MAGIC or image[4] != 2 or image[5] != 1:
        raise InputError("the kernel is not a 64-bit little-endian ELF file (want a vmlinux)")
    (machine,) = struct.unpack_from("<H", image, 18)
    if machine != EM_X86_64:
        raise InputError(f"the kernel is an ELF for machine {machine}, not x86-64")
    entry, phoff = struct.unpack_from("<QQ", image, 24)
    phentsize, phnum = struct.unpack_from("<HH", image, 54)
    segments: list[tuple[int, int, int, int]] = []
    entry_phys = None
    for i in range(phnum):
        base = phoff + i * phentsize
        if base + 56 > len(image):
            raise InputError("the kernel's ELF program headers run past the file's end")
        p_type, _flags, offset, vaddr, paddr, filesz, memsz = struct.unpack_from(
            "<IIQQQQQ", image, base
        )
        if p_type != PT_LOAD:
            continue
        if offset + filesz > len(image) or filesz > memsz:
            raise InputError("the kernel's ELF segment lies outside the file")
        segments.append((paddr, offset, filesz, memsz))
        if vaddr <= entry < vaddr + memsz:  # a virtual entry point
            entry_phys = entry - vaddr + paddr
        elif paddr <= entry < paddr + memsz:  # vmlinux gives startup_64's physical address
            entry_phys = entry
    if not segments or entry_phys is None:
        raise InputError("the kernel's ELF has no loadable segment holding its entry point")
    return entry_phys, segments


def e820_map(ram_bytes: int, window_gpa: int, acpi: bool = False) -> list[tuple[int, int, int]]:
    """(start, size, type): low RAM, the MP table reserved, the ACPI tables (if any), high
    RAM, the window reserved."""
    low = [(0, MPTABLE_GPA, E820_RAM), (MPTABLE_GPA, MPTABLE_BYTES, E820_RESERVED)]
    if acpi:
        low.append((ACPI_GPA, ACPI_BYTES, E820_ACPI))
    high = [
        (HIMEM_GPA, window_gpa - HIMEM_GPA, E820_RAM),
        (window_gpa, ram_bytes - window_gpa, E820_RESERVED),
    ]
    return low + high


def zero_page(cmdline_len: int, e820: list[tuple[int, int, int]], rsdp_gpa: int = 0) -> bytes:
    """struct boot_params with the setup header a 64-bit entry needs, the e820 map and the
    RSDP's address (boot protocol 2.14; 0: none)."""
    page = bytearray(4096)
    struct.pack_into("<Q", page, ACPI_RSDP_ADDR_OFFSET, rsdp_gpa)
    page[E820_ENTRIES_OFFSET] = len(e820)
    struct.pack_into("<H", page, 0x1FE, BOOT_FLAG)
    struct.pack_into("<I", page, 0x202, HDRS_MAGIC)
    struct.pack_into("<H", page, 0x206, BOOT_PROTOCOL)
    page[0x210] = LOADER_UNDEFINED
    page[0x211] = LOADED_HIGH
    struct.pack_into("<I", page, 0x228, CMDLINE_GPA)
    struct.pack_into("<I", page, 0x230, KERNEL_ALIGNMENT)
    struct.pack_into("<I", page, 0x238, cmdline_len)
    for i, (start, size, kind) in enumerate(e820):
        struct.pack_into("<QQI", page, E820_TABLE_OFFSET + 20 * i, start, size, kind)
    return bytes(page)


class LinuxBoot:
    """A vmlinux, its command line, and the window our drivers find the host in."""

    def __init__(
        self, vmlinux: Path, extra_cmdline: str = "", zoo: bool = False, stock: bool = False
    ) -> None:
        try:
            self.image = vmlinux.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read kernel {vmlinux}: {exc.strerror}") from None
        self.vmlinux = vmlinux
        self.entry, self.segments = elf_segments(self.image)
        self.window_gpa = abi.LINUX_WINDOW_GPA
        for paddr, _offset, _filesz, memsz in self.segments:  # known now: refuse before KVM
            if paddr < HIMEM_GPA or paddr + memsz > self.window_gpa:
                raise InputError(
                    f"the kernel's segment at {paddr:#x}+{memsz:#x} does not fit in "
                    f"{abi.LINUX_RAM_BYTES >> 20} MiB below the tickless window"
                )
        self.layout = GuestLayout.linux_window(self.window_gpa)
        self.irq_routes = {abi.TIMER_VECTOR: abi.LINUX_TIMER_IRQ, abi.MSG_VECTOR: abi.LINUX_MSG_IRQ}
        self.zoo = zoo or stock
        self.stock = stock
        base = STOCK_BASE_CMDLINE if stock else f"{BASE_CMDLINE} {TICKLESS_CLOCKS_CMDLINE}"
        self.cmdline = f"{base} tickless.window={self.window_gpa:#x} {extra_cmdline}".strip()
        if len(self.cmdline) + 1 > CMDLINE_MAX_BYTES - 200:  # room for the zoo's words
            raise InputError(f"kernel command line over {CMDLINE_MAX_BYTES - 200} bytes")

    @property
    def in_kernel_pit(self) -> bool:
        """KVM's PIT2, except where the zoo's i8254 (devices/pit.py) has the ports: it
        follows the timeline, PIT2 cannot."""
        return not self.zoo

    def prepare_vm(self, vm: Vm) -> None:
        if self.in_kernel_pit:
            vm.create_pit2()  # Linux calibrates against it and expects one on a PC

    def full_cmdline(self, config: GuestConfig, clock: GuestClock) -> str:
        """The command line as the guest gets it: ours, and the zoo's words or acpi=off."""
        if self.stock:
            return f"{self.cmdline} {stock_cmdline(config.timer, clock.tick_hz, clock.rate)}"
        if not self.zoo:
            return f"{self.cmdline} {NO_ACPI_CMDLINE}"
        return f"{self.cmdline} {zoo_cmdline(config.timer, clock.tick_hz, clock.rate)}"

    def load(self, memory: GuestMemory, config: GuestConfig, clock: GuestClock) -> None:
        ram = config.memory_bytes
        for paddr, offset, filesz, memsz in self.segments:  # placement checked in __init__
            view = memory.view(paddr, memsz, "kernel")
            view[:filesz] = self.image[offset : offset + filesz]
            view[filesz:] = bytes(memsz - filesz)
        write_long_mode_tables(memory, LINUX_LONG_MODE)
        cmdline = self.full_cmdline(config, clock).encode() + b"\0"
        memory.view(CMDLINE_GPA, len(cmdline), "cmdline")[:] = cmdline
        rsdp_gpa = 0
        if self.zoo:
            tables = build_tables()
            memory.view(tables.gpa, len(tables.blob), "ACPI tables")[:] = tables.blob
            rsdp_gpa = tables.rsdp_gpa
        page = zero_page(len(cmdline) - 1, e820_map(ram, self.window_gpa, self.zoo), rsdp_gpa)
        memory.view(ZERO_PAGE_GPA, len(page), "zero page")[:] = page
        table = mp_table(MPTABLE_GPA)
        memory.view(MPTABLE_GPA, len(table), "MP table")[:] = table
        window = memory.view(self.window_gpa, abi.LINUX_WINDOW_BYTES, "window")
        window[:] = bytes(abi.LINUX_WINDOW_BYTES)
        write_boot_block(memory, config, clock, self.layout)

    def start_vcpu(self, system: KvmSystem, vcpu: Vcpu) -> None:
        regs = kvm_abi.Regs(
            rip=self.entry, rsp=BOOT_STACK_TOP, rsi=ZERO_PAGE_GPA, rflags=abi.RFLAGS_FIXED
        )
        cpuid = without_clock_leaves(system.supported_cpuid) if self.stock else None
        enter_long_mode(system, vcpu, LINUX_LONG_MODE, regs, cpuid)

    def assist(self, exit_: VcpuExit, vcpu: Vcpu) -> str | None:
        """Two instructions stop this host's emulator (an internal error at them): the
        kernel's boot-time int3 self-test (step over it and deliver the #BP the CPU would
        have) and ``fwait`` in ``fpu__drop`` when a kernel thread that used the FPU exits
        (as the clocksource watchdog's does; no x87 exception is ever pending in a kernel
        that runs no x87 code, so it is a no-op: step over it)."""
        if not isinstance(exit_, InternalError):
            return None
        rip = int(vcpu.get_regs().rip)
        phys = vcpu.translate(rip)
        opcode = None if phys is None else vcpu.vm.read(phys, 1)
        if opcode not in (bytes([INT3]), bytes([FWAIT])):
            return None
        regs = vcpu.get_regs()
        regs.rip = rip + 1
        vcpu.set_regs(regs)
        if opcode == bytes([FWAIT]):
            return "fwait"
        vcpu.inject_exception(BP_VECTOR)
        return "int3"


@dataclass(frozen=True)
class LinuxGuestInfo:
    """What the Linux guest's workload reported about the kernel (``struct
    tickless_linux_info``). The guest is untrusted: strings are cut at their NUL, limited
    to their field and decoded with replacement."""

    clockevent: str
    clocksource: str
    release: str
    hz: int
    realtime_at_boot_ns: int  # Linux's wall clock at the workload's start minus guest time


def _c_string(raw: bytes) -> str:
    text = raw.split(b"\0", 1)[0].decode("ascii", "replace")
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def read_linux_info(memory: GuestMemory, layout: GuestLayout) -> LinuxGuestInfo | None:
    """The kernel's choices, once the guest has written them (else None)."""
    if layout.info_gpa is None:
        return None
    raw = memory.read(layout.info_gpa, ctypes.sizeof(abi.LinuxInfo), "linux info")
    info = abi.LinuxInfo.from_buffer_copy(raw)
    if not info.written:
        return None
    return LinuxGuestInfo(
        clockevent=_c_string(bytes(info.clockevent)),
        clocksource=_c_string(bytes(info.clocksource)),
        release=_c_string(bytes(info.release)),
        hz=int(info.hz),
        realtime_at_boot_ns=int(info.realtime_at_boot_ns),
    )


def read_clock_samples(
    memory: GuestMemory, layout: GuestLayout
) -> tuple[abi.ClockSample, abi.ClockSample, int] | None:
    """The first and the latest of the clock samples the workload took, and how many it
    took (``clocks.c``); None before two. Values are the guest's: checked where used."""
    if layout.info_gpa is None:
        return None
    raw = memory.read(layout.info_gpa, ctypes.sizeof(abi.LinuxInfo), "linux info")
    info = abi.LinuxInfo.from_buffer_copy(raw)
    if info.clock_samples < 2:
        return None
    return info.clock_first, info.clock_last, int(info.clock_samples)
