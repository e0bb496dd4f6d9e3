"""A virtual CPU: its registers, its shared ``kvm_run`` page, and KVM_RUN."""

from __future__ import annotations

import contextlib
import ctypes as C
import errno
import fcntl
import mmap
import os

from tickless.errors import KvmError
from tickless.kvm import abi
from tickless.kvm.exits import (
    IO_OUT,
    ExitReason,
    FailEntry,
    InternalError,
    Interrupted,
    IoIn,
    IoOut,
    MmioRead,
    MmioWrite,
    OtherExit,
    Shutdown,
    VcpuExit,
)
from tickless.kvm.vm import Vm

INTERRUPTED = Interrupted()
SHUTDOWN = Shutdown()


class Vcpu:
    """One vCPU. ``run()`` blocks in KVM_RUN (the GIL is released) until an exit."""

    def __init__(self, vm: Vm, vcpu_id: int = 0) -> None:
        self.vm = vm
        self.vcpu_id = vcpu_id
        self.fd = vm.create_vcpu_fd(vcpu_id)
        self._run_map = mmap.mmap(self.fd, vm.system.vcpu_mmap_size, mmap.MAP_SHARED)
        self.run_page = abi.Run.from_buffer(self._run_map)
        self.sync_regs = bool(vm.check_extension(abi.CAP_SYNC_REGS) & abi.SYNC_X86_REGS)

    def close(self) -> None:
        if self.fd >= 0:
            del self.run_page
            with contextlib.suppress(BufferError):  # still viewed: freed with the last view
                self._run_map.close()
            os.close(self.fd)
            self.fd = -1

    def _ioctl(self, request: int, arg: int | bytes | bytearray, what: str) -> None:
        try:
            fcntl.ioctl(self.fd, request, arg)
        except OSError as exc:
            raise KvmError(f"{what} failed: {exc.strerror}") from exc

    # --- state ------------------------------------------------------------------------------

    def get_regs(self) -> abi.Regs:
        buf = bytearray(C.sizeof(abi.Regs))
        fcntl.ioctl(self.fd, abi.GET_REGS, buf, True)
        return abi.Regs.from_buffer_copy(buf)

    def set_regs(self, regs: abi.Regs) -> None:
        self._ioctl(abi.SET_REGS, bytes(regs), "KVM_SET_REGS")

    def get_sregs(self) -> abi.Sregs:
        buf = bytearray(C.sizeof(abi.Sregs))
        fcntl.ioctl(self.fd, abi.GET_SREGS, buf, True)
        return abi.Sregs.from_buffer_copy(buf)

    def set_sregs(self, sregs: abi.Sregs) -> None:
        self._ioctl(abi.SET_SREGS, bytes(sregs), "KVM_SET_SREGS")

    def set_cpuid(self, cpuid: abi.Cpuid2) -> None:
        self._ioctl(abi.SET_CPUID2, bytearray(cpuid), "KVM_SET_CPUID2")

    def translate(self, virtual: int) -> int | None:
        """The guest-physical address of a guest-virtual one (None: not mapped)."""
        buf = bytearray(abi.Translation(linear_address=virtual))
        try:
            fcntl.ioctl(self.fd, abi.TRANSLATE, buf, True)
        except OSError as exc:
            raise KvmError(f"KVM_TRANSLATE failed: {exc.strerror}") from exc
        result = abi.Translation.from_buffer_copy(buf)
        return int(result.physical_address) if result.valid else None

    def inject_exception(self, vector: int) -> None:
        """Queue a CPU exception (no error code) for the next entry: emulator assists."""
        buf = bytearray(C.sizeof(abi.VcpuEvents))
        try:
            fcntl.ioctl(self.fd, abi.GET_VCPU_EVENTS, buf, True)
        except OSError as exc:
            raise KvmError(f"KVM_GET_VCPU_EVENTS failed: {exc.strerror}") from exc
        events = abi.VcpuEvents.from_buffer(buf)
        events.exception.injected = 1
        events.exception.nr = vector
        events.exception.has_error_code = 0
        events.exception.pending = 0
        events.flags = 0
        self._ioctl(abi.SET_VCPU_EVENTS, buf, "KVM_SET_VCPU_EVENTS")

    def set_runnable(self) -> None:
        """Start an application processor without INIT/SIPI (the host sets its registers)."""
        state = abi.MpState(mp_state=abi.MP_STATE_RUNNABLE)
        self._ioctl(abi.SET_MP_STATE, bytes(state), "KVM_SET_MP_STATE")

    # --- running ----------------------------------------------------------------------------

    def run(self) -> VcpuExit:
        """Enter the guest until the next exit and decode it (``Interrupted`` when a signal
        or ``immediate_exit`` stopped the run; ``immediate_exit`` is cleared again)."""
        page = self.run_page
        if self.sync_regs:
            page.kvm_valid_regs = abi.SYNC_X86_REGS
        try:
            fcntl.ioctl(self.fd, abi.RUN, 0)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                page.immediate_exit = 0
                return INTERRUPTED
            raise KvmError(f"KVM_RUN failed: {exc.strerror}") from exc
        return self._decode(int(page.exit_reason))

    def request_stop(self) -> None:
        """Make the next (or current, once signalled) KVM_RUN return at once."""
        self.run_page.immediate_exit = 1

    # --- exit decoding ----------------------------------------------------------------------

    def _decode(self, reason: int) -> VcpuExit:
        exit_ = self.run_page.exit
        if reason == ExitReason.IO:
            io = exit_.io
            size, count, offset = int(io.size), int(io.count), int(io.data_offset)
            if io.direction == IO_OUT:
                return IoOut(int(io.port), size, self._run_map[offset : offset + size * count])
            return IoIn(int(io.port), size, count)
        if reason == ExitReason.MMIO:
            m = exit_.mmio
            length = min(int(m.len), 8)
            if m.is_write:
                return MmioWrite(int(m.phys_addr), bytes(m.data)[:length])
            return MmioRead(int(m.phys_addr), length)
        if reason == ExitReason.SHUTDOWN:
            return SHUTDOWN
        if reason == ExitReason.FAIL_ENTRY:
            return FailEntry(int(exit_.fail_entry.hardware_entry_failure_reason))
        if reason == ExitReason.INTERNAL_ERROR:
            return InternalError(int(exit_.internal.suberror))
        return OtherExit(reason)

    def complete_io_in(self, data: bytes) -> None:
        """The bytes an ``in`` reads, placed where KVM takes them on the next KVM_RUN."""
        io = self.run_page.exit.io
        length = int(io.size) * int(io.count)
        offset = int(io.data_offset)
        self._run_map[offset : offset + length] = data[:length].ljust(length, b"\xff")

    def complete_mmio_read(self, data: bytes) -> None:
        m = self.run_page.exit.mmio
        length = min(int(m.len), 8)
        C.memmove(C.addressof(m.data), data[:length].ljust(length, b"\xff"), length)

    # --- fast register access for hypercalls ------------------------------------------------
    def exit_regs(self) -> abi.Regs:
        """Registers at the last exit: from the sync-regs area when KVM offers it."""
        if self.sync_regs:
            regs: abi.Regs = self.run_page.s.regs
            return regs
        return self.get_regs()

    def set_return_value(self, rax: int) -> None:
        """Set the guest's rax for when it resumes (a hypercall's return value)."""
        value = rax & 0xFFFF_FFFF_FFFF_FFFF
        if self.sync_regs:
            self.run_page.s.regs.rax = value
            self.run_page.kvm_dirty_regs = abi.SYNC_X86_REGS
        else:
            regs = self.get_regs()
            regs.rax = value
            self.set_regs(regs)
