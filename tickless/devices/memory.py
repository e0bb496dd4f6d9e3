"""Bounds-checked access to guest memory for devices."""

from __future__ import annotations

from tickless.devices.faults import GuestFault
from tickless.kvm.vm import Vm


class GuestMemory:
    """Reads and writes guest-physical ranges, refusing any outside the guest's memory."""

    def __init__(self, vm: Vm) -> None:
        self.vm = vm

    def view(self, gpa: int, length: int, what: str) -> memoryview:
        if length < 0 or gpa < 0:
            raise GuestFault(f"{what}: negative address or length ({gpa:#x}, {length})")
        region = self.vm.region_for(gpa, length)
        if region is None:
            raise GuestFault(f"{what}: buffer {gpa:#x}+{length} lies outside guest memory")
        start = gpa - region.guest_phys_addr
        return memoryview(region.mapping)[start : start + length]

    def read(self, gpa: int, length: int, what: str) -> bytes:
        return bytes(self.view(gpa, length, what))
