"""vCPU exit reasons, by name, and the decoded exits the VMM acts on."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitReason(IntEnum):
    """KVM_EXIT_* from include/uapi/linux/kvm.h."""

    UNKNOWN = 0
    EXCEPTION = 1
    IO = 2
    HYPERCALL = 3
    DEBUG = 4
    HLT = 5
    MMIO = 6
    IRQ_WINDOW_OPEN = 7
    SHUTDOWN = 8
    FAIL_ENTRY = 9
    INTR = 10
    SET_TPR = 11
    TPR_ACCESS = 12
    S390_SIEIC = 13
    S390_RESET = 14
    DCR = 15
    NMI = 16
    INTERNAL_ERROR = 17
    OSI = 18
    PAPR_HCALL = 19
    S390_UCONTROL = 20
    WATCHDOG = 21
    S390_TSCH = 22
    EPR = 23
    SYSTEM_EVENT = 24
    S390_STSI = 25
    IOAPIC_EOI = 26
    HYPERV = 27
    ARM_NISV = 28
    X86_RDMSR = 29
    X86_WRMSR = 30
    DIRTY_RING_FULL = 31
    AP_RESET_HOLD = 32
    X86_BUS_LOCK = 33
    XEN = 34
    RISCV_SBI = 35
    RISCV_CSR = 36
    NOTIFY = 37
    LOONGARCH_IOCSR = 38
    MEMORY_FAULT = 39


def exit_name(reason: int) -> str:
    """A readable name for any exit reason, including ones this table does not know."""
    try:
        return ExitReason(reason).name
    except ValueError:
        return f"UNKNOWN_EXIT_{reason}"


IO_IN = 0
IO_OUT = 1


@dataclass(frozen=True)
class IoExit:
    port: int
    size: int
    is_write: bool
    count: int
    data_offset: int


@dataclass(frozen=True)
class MmioExit:
    phys_addr: int
    length: int
    is_write: bool
    data: bytes
