"""Running a vCPU: the signal that takes a thread out of KVM_RUN, how a guest's run ended,
why an exit no device handles stops it, and what shows the watchdog it makes progress."""

from __future__ import annotations

import ctypes as C
import signal
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field

from tickless.guest import abi
from tickless.kvm.exits import FailEntry, InternalError, Shutdown, VcpuExit, exit_label
from tickless.kvm.vcpu import Vcpu

STOP_SIGNAL = signal.SIGUSR1


def kick(vcpu: Vcpu, thread: threading.Thread | None) -> None:
    """Make a vCPU thread leave KVM_RUN now (immediate_exit covers a thread not in it)."""
    vcpu.request_stop()
    if thread is not None and thread.ident is not None and thread.is_alive():
        signal.pthread_kill(thread.ident, STOP_SIGNAL)


def install_stop_signal() -> None:
    """A no-op handler, so the signal only interrupts KVM_RUN (call from the main thread)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(STOP_SIGNAL, lambda signum, frame: None)


@dataclass
class GuestOutcome:
    """How a guest's run ended: ``ok`` (it called DONE) or with a fault message."""

    ok: bool = False
    reason: str = "not started"
    events: int = 0
    exits: Counter[str] = field(default_factory=Counter)
    hypercalls: int = 0
    injections: int = 0
    console: str = ""
    vcpu_cpu_ns: int = 0
    assists: Counter[str] = field(default_factory=Counter)  # emulator gaps the VMM filled


def describe_stop(exit_: VcpuExit, vcpu: Vcpu) -> str:
    """Why an exit that no device handles stops the guest."""
    if isinstance(exit_, Shutdown):
        return "guest triple-faulted (KVM_EXIT_SHUTDOWN)"
    if isinstance(exit_, FailEntry):
        return f"KVM could not enter the guest (hardware reason {exit_.hardware_reason:#x})"
    if isinstance(exit_, InternalError):
        rip = vcpu.get_regs().rip
        return f"KVM internal error (suberror {exit_.suberror}) at rip {rip:#x}"
    return f"unexpected vCPU exit {exit_label(exit_)}"


# Fields of the shared page that are no sign of the guest's progress: what the host writes,
# and what the guest's interrupt handlers write (a loop in ring 3 with interrupts on takes
# every interrupt a chip left armed, a periodic HPET or PIT among them: its handler's counts
# move while the loop makes no progress of its own).
HOST_WRITTEN_OFFSETS = tuple(
    getattr(abi.Shared, name).offset
    for name in (
        "host_fired",
        "pv_host_armed_ns",
        "pv_advance_ns",
        "io_covered",
        "irq_count",
        "lapic_irq_count",
        "precise_irq_count",
        "io_irq_count",
        "io_irq_cpu0",
        "io_irq_cpu1",
        "io_seen",
        "io_done_tsc",
        "ring3_back_tsc",
        "msg_irq_count",
    )
)


def _guest_written_mask() -> int:
    mask = bytearray(b"\xff" * C.sizeof(abi.Shared))
    for offset in HOST_WRITTEN_OFFSETS:
        mask[offset : offset + 8] = bytes(8)
    return int.from_bytes(mask, "little")


GUEST_WRITTEN_MASK = _guest_written_mask()  # the shared page's bits only the guest writes


def guest_activity(exits: int, hypercalls: int, shared: abi.Shared) -> bytes:
    """Everything the host sees a guest do, as one value that changes when it does: its
    exits, hypercalls and the counters its workload writes. Only what the guest did, not
    what it was made to do: interrupts the host injects (the host's own counter of them,
    what its deadline loop publishes, and the counts the guest's handlers keep) come
    whether or not the loop they interrupt makes progress. (One mask over the page: the
    watchdog takes this for a thousand guests a second.)"""
    guest_written = int.from_bytes(bytes(shared), "little") & GUEST_WRITTEN_MASK
    size = C.sizeof(abi.Shared)
    return struct.pack("<QQ", exits, hypercalls) + guest_written.to_bytes(size, "little")
