"""A KVM virtual machine: guest memory, the in-kernel irqchip, interrupt injection."""

from __future__ import annotations

import ctypes as C
import fcntl
import mmap
import os
from dataclasses import dataclass

from tickless.errors import KvmError
from tickless.kvm import abi
from tickless.kvm.system import KvmSystem

MSI_ADDRESS_BASE = 0xFEE00000


@dataclass
class MemoryRegion:
    slot: int
    guest_phys_addr: int
    size: int
    mapping: mmap.mmap

    def contains(self, gpa: int, length: int) -> bool:
        return (
            length >= 0
            and self.guest_phys_addr <= gpa
            and gpa + length <= self.guest_phys_addr + self.size
        )


class Vm:
    """One VM file descriptor and the memory it owns."""

    def __init__(self, system: KvmSystem) -> None:
        self.system = system
        self.fd = system.create_vm_fd()
        self.regions: list[MemoryRegion] = []
        self._msi_cache: dict[tuple[int, int], bytearray] = {}

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        for region in self.regions:
            try:
                region.mapping.close()
            except BufferError:
                # Still viewed: a device's ctypes object in a reference cycle outlives the
                # machine until the garbage collector runs. Give the pages back now (a late
                # read sees zeros, never freed memory); the address range goes with the view.
                region.mapping.madvise(mmap.MADV_DONTNEED)
        self.regions.clear()

    def _ioctl(self, request: int, arg: int | bytes | bytearray, what: str) -> int:
        try:
            result = fcntl.ioctl(self.fd, request, arg)
        except OSError as exc:
            raise KvmError(f"{what} failed: {exc.strerror}") from exc
        return result if isinstance(result, int) else 0

    def check_extension(self, cap: int) -> int:
        return self._ioctl(abi.CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION")

    def add_memory(self, guest_phys_addr: int, size: int) -> MemoryRegion:
        """Back [gpa, gpa+size) with anonymous host memory; accesses elsewhere exit as MMIO."""
        mapping = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        addr = C.addressof(C.c_char.from_buffer(mapping))
        region = abi.UserspaceMemoryRegion(
            slot=len(self.regions),
            flags=0,
            guest_phys_addr=guest_phys_addr,
            memory_size=size,
            userspace_addr=addr,
        )
        self._ioctl(abi.SET_USER_MEMORY_REGION, bytes(region), "KVM_SET_USER_MEMORY_REGION")
        mem = MemoryRegion(len(self.regions), guest_phys_addr, size, mapping)
        self.regions.append(mem)
        return mem

    def region_for(self, gpa: int, length: int) -> MemoryRegion | None:
        for region in self.regions:
            if region.contains(gpa, length):
                return region
        return None

    def read(self, gpa: int, length: int) -> bytes | None:
        """Guest-physical memory, or None where the guest has none."""
        region = self.region_for(gpa, length)
        if region is None:
            return None
        start = gpa - region.guest_phys_addr
        return bytes(region.mapping[start : start + length])

    def set_tss_addr(self, gpa: int) -> None:
        self._ioctl(abi.SET_TSS_ADDR, gpa, "KVM_SET_TSS_ADDR")

    def create_irqchip(self) -> None:
        """In-kernel LAPIC/IOAPIC/PIC: interrupts and HLT never come back through Python."""
        self._ioctl(abi.CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP")

    def enable_cap(self, cap: int, *args: int) -> None:
        ec = abi.EnableCap(cap=cap)
        for i, value in enumerate(args):
            ec.args[i] = value
        self._ioctl(abi.ENABLE_CAP, bytes(ec), f"KVM_ENABLE_CAP({cap})")

    def set_halt_poll_ns(self, ns: int) -> None:
        """Cap KVM's halt polling for this VM (0 turns it off)."""
        self.enable_cap(abi.CAP_HALT_POLL, ns)

    def tsc_khz(self) -> int:
        return self._ioctl(abi.GET_TSC_KHZ, 0, "KVM_GET_TSC_KHZ")

    def signal_msi(self, vector: int, dest_apic_id: int = 0) -> int:
        """Inject an edge MSI: fixed delivery, physical destination. Safe from any thread.

        Returns >0 when delivered, 0 when the guest blocked it (coalesced).
        """
        buf = self._msi_cache.get((vector, dest_apic_id))
        if buf is None:
            msi = abi.Msi(address_lo=MSI_ADDRESS_BASE | (dest_apic_id << 12), data=vector)
            buf = self._msi_cache[(vector, dest_apic_id)] = bytearray(msi)
        try:  # a mutable buffer makes ioctl() return the call's result, not the bytes
            return int(fcntl.ioctl(self.fd, abi.SIGNAL_MSI, buf, True))
        except OSError as exc:
            raise KvmError(f"KVM_SIGNAL_MSI failed: {exc.strerror}") from exc

    def create_pit2(self) -> None:
        """KVM's in-kernel i8254 PIT (Linux calibrates with it and probes for it)."""
        self._ioctl(abi.CREATE_PIT2, bytes(abi.PitConfig()), "KVM_CREATE_PIT2")

    def irq_line(self, gsi: int, level: int) -> None:
        """Drive an in-kernel irqchip input (IOAPIC pin / PIC line) high or low."""
        self._ioctl(abi.IRQ_LINE, bytes(abi.IrqLevel(irq=gsi, level=level)), "KVM_IRQ_LINE")

    def pulse_irq(self, gsi: int) -> None:
        """An edge on ``gsi``: high, then low. Safe from any thread."""
        self.irq_line(gsi, 1)
        self.irq_line(gsi, 0)

    def ioeventfd(self, port: int, length: int, fd: int, *, deassign: bool = False) -> None:
        """A ``length``-byte guest write to ``port`` signals eventfd ``fd`` in the kernel:
        no exit to userspace (other widths still exit, to the bus)."""
        flags = abi.IOEVENTFD_FLAG_PIO | (abi.IOEVENTFD_FLAG_DEASSIGN if deassign else 0)
        spec = abi.Ioeventfd(addr=port, len=length, fd=fd, flags=flags)
        self._ioctl(abi.IOEVENTFD, bytes(spec), "KVM_IOEVENTFD")

    def create_vcpu_fd(self, vcpu_id: int) -> int:
        return self._ioctl(abi.CREATE_VCPU, vcpu_id, "KVM_CREATE_VCPU")
