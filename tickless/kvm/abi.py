"""The Linux KVM userspace ABI for x86-64: ioctl numbers and structure layouts.

Layouts follow ``include/uapi/linux/kvm.h`` and ``arch/x86/include/uapi/asm/kvm.h``;
``tests/test_kvm_abi.py`` checks their sizes against the kernel's.
"""

from __future__ import annotations

import ctypes as C

KVMIO = 0xAE

_IOC_WRITE = 1
_IOC_READ = 2


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


def _io(nr: int) -> int:
    return _ioc(0, nr, 0)


def _iow(nr: int, struct: type[C.Structure]) -> int:
    return _ioc(_IOC_WRITE, nr, C.sizeof(struct))


def _ior(nr: int, struct: type[C.Structure]) -> int:
    return _ioc(_IOC_READ, nr, C.sizeof(struct))


def _iowr(nr: int, struct: type[C.Structure]) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, nr, C.sizeof(struct))


u8, u16, u32, u64 = C.c_uint8, C.c_uint16, C.c_uint32, C.c_uint64


class UserspaceMemoryRegion(C.Structure):
    _fields_ = [
        ("slot", u32),
        ("flags", u32),
        ("guest_phys_addr", u64),
        ("memory_size", u64),
        ("userspace_addr", u64),
    ]


class Regs(C.Structure):
    _fields_ = [
        (name, u64)
        for name in (
            "rax",
            "rbx",
            "rcx",
            "rdx",
            "rsi",
            "rdi",
            "rsp",
            "rbp",
            "r8",
            "r9",
            "r10",
            "r11",
            "r12",
            "r13",
            "r14",
            "r15",
            "rip",
            "rflags",
        )
    ]


class Segment(C.Structure):
    _fields_ = [
        ("base", u64),
        ("limit", u32),
        ("selector", u16),
        ("type", u8),
        ("present", u8),
        ("dpl", u8),
        ("db", u8),
        ("s", u8),
        ("l", u8),
        ("g", u8),
        ("avl", u8),
        ("unusable", u8),
        ("padding", u8),
    ]


class DTable(C.Structure):
    _fields_ = [("base", u64), ("limit", u16), ("padding", u16 * 3)]


class Sregs(C.Structure):
    _fields_ = [
        ("cs", Segment),
        ("ds", Segment),
        ("es", Segment),
        ("fs", Segment),
        ("gs", Segment),
        ("ss", Segment),
        ("tr", Segment),
        ("ldt", Segment),
        ("gdt", DTable),
        ("idt", DTable),
        ("cr0", u64),
        ("cr2", u64),
        ("cr3", u64),
        ("cr4", u64),
        ("cr8", u64),
        ("efer", u64),
        ("apic_base", u64),
        ("interrupt_bitmap", u64 * 4),
    ]


class CpuidEntry2(C.Structure):
    _fields_ = [
        ("function", u32),
        ("index", u32),
        ("flags", u32),
        ("eax", u32),
        ("ebx", u32),
        ("ecx", u32),
        ("edx", u32),
        ("padding", u32 * 3),
    ]


MAX_CPUID_ENTRIES = 256


class Cpuid2(C.Structure):
    _fields_ = [("nent", u32), ("padding", u32), ("entries", CpuidEntry2 * MAX_CPUID_ENTRIES)]


class Cpuid2Header(C.Structure):
    """Only the header: the ioctl number encodes this size, not the full array's."""

    _fields_ = [("nent", u32), ("padding", u32)]


class MsrEntry(C.Structure):
    _fields_ = [("index", u32), ("reserved", u32), ("data", u64)]


class Msrs(C.Structure):
    _fields_ = [("nmsrs", u32), ("pad", u32), ("entries", MsrEntry * 8)]


class MsrsHeader(C.Structure):
    _fields_ = [("nmsrs", u32), ("pad", u32)]


class Msi(C.Structure):
    _fields_ = [
        ("address_lo", u32),
        ("address_hi", u32),
        ("data", u32),
        ("flags", u32),
        ("devid", u32),
        ("pad", u8 * 12),
    ]


class IrqLevel(C.Structure):
    _fields_ = [("irq", u32), ("level", u32)]


class Ioeventfd(C.Structure):
    """struct kvm_ioeventfd: a guest write to a port signals an eventfd, in the kernel."""

    _fields_ = [
        ("datamatch", u64),
        ("addr", u64),
        ("len", u32),
        ("fd", C.c_int32),
        ("flags", u32),
        ("pad", u8 * 36),
    ]


IOEVENTFD_FLAG_PIO = 1 << 1
IOEVENTFD_FLAG_DEASSIGN = 1 << 2


class PitConfig(C.Structure):
    _fields_ = [("flags", u32), ("pad", u32 * 15)]


class VcpuEventsException(C.Structure):
    _fields_ = [
        ("injected", u8),
        ("nr", u8),
        ("has_error_code", u8),
        ("pending", u8),
        ("error_code", u32),
    ]


class VcpuEvents(C.Structure):
    """struct kvm_vcpu_events (x86): pending exceptions, interrupts, NMI, SMI."""

    _fields_ = [
        ("exception", VcpuEventsException),
        ("interrupt", u8 * 4),
        ("nmi", u8 * 4),
        ("sipi_vector", u32),
        ("flags", u32),
        ("smi", u8 * 4),
        ("triple_fault", u8),
        ("reserved", u8 * 26),
        ("exception_has_payload", u8),
        ("exception_payload", u64),
    ]


class Translation(C.Structure):
    """struct kvm_translation: a guest-virtual address through the vCPU's page tables."""

    _fields_ = [
        ("linear_address", u64),
        ("physical_address", u64),
        ("valid", u8),
        ("writeable", u8),
        ("usermode", u8),
        ("pad", u8 * 5),
    ]


class EnableCap(C.Structure):
    _fields_ = [("cap", u32), ("flags", u32), ("args", u64 * 4), ("pad", u8 * 64)]


class MpState(C.Structure):
    _fields_ = [("mp_state", u32)]


MP_STATE_RUNNABLE = 0


class ClockData(C.Structure):
    _fields_ = [
        ("clock", u64),
        ("flags", u32),
        ("pad0", u32),
        ("realtime", u64),
        ("host_tsc", u64),
        ("pad", u32 * 4),
    ]


# --- struct kvm_run (the vCPU's shared page), x86 layout -------------------------------------


class RunIo(C.Structure):
    _fields_ = [
        ("direction", u8),
        ("size", u8),
        ("port", u16),
        ("count", u32),
        ("data_offset", u64),
    ]


class RunMmio(C.Structure):
    _fields_ = [("phys_addr", u64), ("data", u8 * 8), ("len", u32), ("is_write", u8)]


class RunFailEntry(C.Structure):
    _fields_ = [("hardware_entry_failure_reason", u64), ("cpu", u32)]


class RunInternal(C.Structure):
    _fields_ = [("suberror", u32), ("ndata", u32), ("data", u64 * 16)]


class RunSystemEvent(C.Structure):
    _fields_ = [("type", u32), ("ndata", u32), ("data", u64 * 16)]


class RunExit(C.Union):
    _fields_ = [
        ("io", RunIo),
        ("mmio", RunMmio),
        ("fail_entry", RunFailEntry),
        ("internal", RunInternal),
        ("system_event", RunSystemEvent),
        ("padding", u8 * 256),
    ]


class SyncRegs(C.Structure):
    _fields_ = [("regs", Regs), ("sregs", Sregs)]


class Run(C.Structure):
    _fields_ = [
        ("request_interrupt_window", u8),
        ("immediate_exit", u8),
        ("padding1", u8 * 6),
        ("exit_reason", u32),
        ("ready_for_interrupt_injection", u8),
        ("if_flag", u8),
        ("flags", u16),
        ("cr8", u64),
        ("apic_base", u64),
        ("exit", RunExit),
        ("kvm_valid_regs", u64),
        ("kvm_dirty_regs", u64),
        ("s", SyncRegs),
    ]


# --- ioctl numbers --------------------------------------------------------------------------

GET_API_VERSION = _io(0x00)
CREATE_VM = _io(0x01)
CHECK_EXTENSION = _io(0x03)
GET_VCPU_MMAP_SIZE = _io(0x04)
GET_SUPPORTED_CPUID = _iowr(0x05, Cpuid2Header)
CREATE_VCPU = _io(0x41)
SET_USER_MEMORY_REGION = _iow(0x46, UserspaceMemoryRegion)
SET_TSS_ADDR = _io(0x47)
SET_IDENTITY_MAP_ADDR = _iow(0x48, C.c_uint64)  # type: ignore[arg-type]
CREATE_IRQCHIP = _io(0x60)
IRQ_LINE = _iow(0x61, IrqLevel)
GET_CLOCK = _ior(0x7C, ClockData)
RUN = _io(0x80)
GET_REGS = _ior(0x81, Regs)
SET_REGS = _iow(0x82, Regs)
GET_SREGS = _ior(0x83, Sregs)
SET_SREGS = _iow(0x84, Sregs)
SET_MSRS = _iow(0x89, MsrsHeader)
SET_CPUID2 = _iow(0x90, Cpuid2Header)
GET_TSC_KHZ = _io(0xA3)
ENABLE_CAP = _iow(0xA3, EnableCap)
SIGNAL_MSI = _iow(0xA5, Msi)
IOEVENTFD = _iow(0x79, Ioeventfd)
SET_MP_STATE = _iow(0x99, MpState)
CREATE_PIT2 = _iow(0x77, PitConfig)
TRANSLATE = _iowr(0x85, Translation)
GET_VCPU_EVENTS = _ior(0x9F, VcpuEvents)
SET_VCPU_EVENTS = _iow(0xA0, VcpuEvents)

# --- capabilities ---------------------------------------------------------------------------

CAP_IRQCHIP = 0
CAP_SET_TSS_ADDR = 4
CAP_USER_MEMORY = 3
CAP_TSC_DEADLINE_TIMER = 72
CAP_SYNC_REGS = 74
CAP_SIGNAL_MSI = 77
CAP_IOEVENTFD = 36
CAP_X2APIC_API = 129
CAP_IMMEDIATE_EXIT = 136
CAP_HALT_POLL = 182
CAP_GET_TSC_KHZ = 61

SYNC_X86_REGS = 1 << 0

X2APIC_API_USE_32BIT_IDS = 1 << 0
X2APIC_API_DISABLE_BROADCAST_QUIRK = 1 << 1
