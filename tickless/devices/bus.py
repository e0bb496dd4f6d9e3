"""The bus: port I/O and MMIO exits go to the device that claimed the address.

As Firecracker's ``vstate/bus.rs``: a device claims a range when it is created, the vCPU
loop hands every decoded exit to ``Bus.dispatch``, and an access nobody claimed is the
guest's fault. Ranges may not overlap, so one access has exactly one owner.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from tickless.devices.faults import GuestFault
from tickless.kvm.exits import IoIn, IoOut, MmioRead, MmioWrite
from tickless.kvm.vcpu import Vcpu

BusExit = IoOut | IoIn | MmioWrite | MmioRead


class BusDevice:
    """A device on the bus. Override what it decodes; an access it does not take is the
    guest's fault (the defaults say so). ``vcpu`` is the CPU that made the access, for
    devices that read or answer in its registers (the hypercall port)."""

    name = "device"

    def io_write(self, port: int, data: bytes, vcpu: Vcpu) -> None:
        raise GuestFault(f"{self.name}: guest wrote {len(data)} bytes to port {port:#x}")

    def io_read(self, port: int, size: int, vcpu: Vcpu) -> bytes:
        raise GuestFault(f"{self.name}: guest read {size} bytes from port {port:#x}")

    def mmio_write(self, addr: int, data: bytes, vcpu: Vcpu) -> None:
        raise GuestFault(f"{self.name}: guest wrote {len(data)} bytes at {addr:#x}")

    def mmio_read(self, addr: int, length: int, vcpu: Vcpu) -> bytes:
        raise GuestFault(f"{self.name}: guest read {length} bytes at {addr:#x}")


@dataclass
class _Ranges:
    """Non-overlapping [start, start+length) ranges, each with its device."""

    kind: str
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    devices: list[BusDevice] = field(default_factory=list)

    def add(self, start: int, length: int, device: BusDevice) -> None:
        if length <= 0:
            raise ValueError(f"{device.name}: an empty {self.kind} range")
        i = bisect_right(self.starts, start)
        if (i > 0 and self.ends[i - 1] > start) or (
            i < len(self.starts) and self.starts[i] < start + length
        ):
            other = self.devices[i - 1 if i > 0 and self.ends[i - 1] > start else i]
            raise ValueError(
                f"{device.name}: {self.kind} {start:#x}+{length} overlaps {other.name}'s"
            )
        self.starts.insert(i, start)
        self.ends.insert(i, start + length)
        self.devices.insert(i, device)

    def find(self, addr: int, length: int) -> BusDevice | None:
        i = bisect_right(self.starts, addr) - 1
        if i >= 0 and addr + length <= self.ends[i]:
            return self.devices[i]
        return None


class Bus:
    """Port I/O and MMIO ranges of one machine, and the dispatch of exits to them.

    ``ram_bytes`` only makes the message for an unclaimed MMIO access say that it also
    lies outside the guest's memory (which is why it exited)."""

    def __init__(self, ram_bytes: int) -> None:
        self.ram_bytes = ram_bytes
        self._io = _Ranges("port")
        self._mmio = _Ranges("MMIO")
        self._unclaimed_io: BusDevice | None = None  # None: an unclaimed port is a fault

    def set_unclaimed_io(self, device: BusDevice) -> None:
        """Where port accesses that no device claimed go (a PC's floating bus), instead of
        stopping the guest: a real OS probes ports of hardware it may not have."""
        self._unclaimed_io = device

    def add_io(self, first_port: int, count: int, device: BusDevice) -> None:
        self._io.add(first_port, count, device)

    def add_mmio(self, gpa: int, length: int, device: BusDevice) -> None:
        self._mmio.add(gpa, length, device)

    def dispatch(self, exit_: BusExit, vcpu: Vcpu) -> None:
        """Hand one decoded exit to its device (answers to reads go back to the vCPU)."""
        if isinstance(exit_, IoOut):
            device = self._io.find(exit_.port, 1) or self._unclaimed_io  # a port, any width
            if device is None:
                raise self._unclaimed_port(exit_.port, "out", exit_.size)
            device.io_write(exit_.port, exit_.data, vcpu)
        elif isinstance(exit_, IoIn):
            device = self._io.find(exit_.port, 1) or self._unclaimed_io
            if device is None:
                raise self._unclaimed_port(exit_.port, "in", exit_.size)
            vcpu.complete_io_in(device.io_read(exit_.port, exit_.size, vcpu) * exit_.count)
        elif isinstance(exit_, MmioWrite):
            device = self._mmio.find(exit_.addr, len(exit_.data))
            if device is None:
                raise self._unclaimed_mmio("wrote", exit_.addr, len(exit_.data))
            device.mmio_write(exit_.addr, exit_.data, vcpu)
        else:
            device = self._mmio.find(exit_.addr, exit_.length)
            if device is None:
                raise self._unclaimed_mmio("read", exit_.addr, exit_.length)
            vcpu.complete_mmio_read(device.mmio_read(exit_.addr, exit_.length, vcpu))

    @staticmethod
    def _unclaimed_port(port: int, direction: str, size: int) -> GuestFault:
        return GuestFault(f"guest used unknown I/O port {port:#x} ({direction}, {size} bytes)")

    def _unclaimed_mmio(self, verb: str, addr: int, length: int) -> GuestFault:
        return GuestFault(
            f"guest {verb} {length} bytes at {addr:#x}, outside its "
            f"{self.ram_bytes >> 20} MiB of memory"
        )
