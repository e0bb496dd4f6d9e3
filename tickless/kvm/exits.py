"""vCPU exits: KVM's reasons by name, and the typed exits ``Vcpu.run()`` decodes once."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar


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


IO_IN = 0  # kvm_run.io.direction
IO_OUT = 1


# --- decoded exits: what ``Vcpu.run()`` returns (rust-vmm's ``VcpuExit``) -------------------


@dataclass(frozen=True, slots=True)
class IoOut:
    """``out``: the guest wrote ``data`` (``size`` bytes per access) to ``port``."""

    port: int
    size: int
    data: bytes
    reason: ClassVar[ExitReason] = ExitReason.IO


@dataclass(frozen=True, slots=True)
class IoIn:
    """``in``: the guest reads ``size`` bytes from ``port``; answer with ``complete_io_in``."""

    port: int
    size: int
    count: int
    reason: ClassVar[ExitReason] = ExitReason.IO


@dataclass(frozen=True, slots=True)
class MmioWrite:
    addr: int
    data: bytes
    reason: ClassVar[ExitReason] = ExitReason.MMIO


@dataclass(frozen=True, slots=True)
class MmioRead:
    """The guest reads ``length`` bytes at ``addr``; answer with ``complete_mmio_read``."""

    addr: int
    length: int
    reason: ClassVar[ExitReason] = ExitReason.MMIO


@dataclass(frozen=True, slots=True)
class Shutdown:
    """A triple fault (or a guest-requested shutdown)."""

    reason: ClassVar[ExitReason] = ExitReason.SHUTDOWN


@dataclass(frozen=True, slots=True)
class FailEntry:
    hardware_reason: int
    reason: ClassVar[ExitReason] = ExitReason.FAIL_ENTRY


@dataclass(frozen=True, slots=True)
class InternalError:
    suberror: int
    reason: ClassVar[ExitReason] = ExitReason.INTERNAL_ERROR


@dataclass(frozen=True, slots=True)
class Interrupted:
    """A signal or ``immediate_exit`` ended KVM_RUN: not an exit of the guest's doing."""

    reason: ClassVar[ExitReason] = ExitReason.INTR


@dataclass(frozen=True, slots=True)
class OtherExit:
    """Any exit this VMM does not handle; ``code`` is the raw ``KVM_EXIT_*``."""

    code: int
    reason: ClassVar[ExitReason] = ExitReason.UNKNOWN

    @property
    def name(self) -> str:
        return exit_name(self.code)


VcpuExit = (
    IoOut
    | IoIn
    | MmioWrite
    | MmioRead
    | Shutdown
    | FailEntry
    | InternalError
    | Interrupted
    | OtherExit
)


def exit_label(exit_: VcpuExit) -> str:
    """The exit's ``KVM_EXIT_*`` name, as exit counters are keyed."""
    return exit_.name if isinstance(exit_, OtherExit) else exit_.reason.name
