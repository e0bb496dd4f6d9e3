"""The device bus: ranges claimed once, exits dispatched to their owner, the rest a guest
fault; and the device list: every device registers itself, no hypercall twice."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any, cast

import pytest

from tickless.devices import DEVICE_TYPES
from tickless.devices.bus import Bus, BusDevice
from tickless.devices.faults import GuestFault
from tickless.devices.hypercall import HypercallPort
from tickless.guest.abi import HYPERCALL_PORT, Hypercall
from tickless.kvm.exits import IoIn, IoOut, MmioRead, MmioWrite
from tickless.kvm.vcpu import Vcpu


class FakeVcpu:
    """What the bus and the hypercall port use of a vCPU: exit registers and answers."""

    def __init__(self, rdi: int = 0, rsi: int = 0) -> None:
        self.regs = SimpleNamespace(rdi=rdi, rsi=rsi, rax=0)
        self.io_in: bytes | None = None
        self.mmio_in: bytes | None = None

    def exit_regs(self) -> Any:
        return self.regs

    def set_return_value(self, rax: int) -> None:
        self.regs.rax = rax & 0xFFFF_FFFF_FFFF_FFFF

    def complete_io_in(self, data: bytes) -> None:
        self.io_in = data

    def complete_mmio_read(self, data: bytes) -> None:
        self.mmio_in = data


class Recorder(BusDevice):
    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, bytes | int]] = []

    def io_write(self, port: int, data: bytes, vcpu: Vcpu) -> None:
        self.seen.append(("out", port, data))

    def io_read(self, port: int, size: int, vcpu: Vcpu) -> bytes:
        self.seen.append(("in", port, size))
        return b"\x2a" * size

    def mmio_write(self, addr: int, data: bytes, vcpu: Vcpu) -> None:
        self.seen.append(("write", addr, data))

    def mmio_read(self, addr: int, length: int, vcpu: Vcpu) -> bytes:
        self.seen.append(("read", addr, length))
        return bytes(range(length))


def _vcpu(fake: FakeVcpu) -> Vcpu:
    return cast(Vcpu, fake)


def test_exits_reach_the_device_that_claimed_them() -> None:
    bus, dev, cpu = Bus(4 << 20), Recorder(), FakeVcpu()
    bus.add_io(0x3F8, 8, dev)
    bus.add_mmio(0xFEC0_0000, 0x1000, dev)
    bus.dispatch(IoOut(0x3FD, 1, b"A"), _vcpu(cpu))
    bus.dispatch(IoIn(0x3F8, 1, 1), _vcpu(cpu))
    bus.dispatch(MmioWrite(0xFEC0_0010, b"\x01\x02\x03\x04"), _vcpu(cpu))
    bus.dispatch(MmioRead(0xFEC0_0FF8, 8), _vcpu(cpu))
    assert dev.seen == [
        ("out", 0x3FD, b"A"),
        ("in", 0x3F8, 1),
        ("write", 0xFEC0_0010, b"\x01\x02\x03\x04"),
        ("read", 0xFEC0_0FF8, 8),
    ]
    assert cpu.io_in == b"\x2a"
    assert cpu.mmio_in == bytes(range(8))


@pytest.mark.parametrize(
    ("exit_", "message"),
    [
        (IoOut(0x80, 1, b"\0"), "unknown I/O port 0x80 (out, 1 bytes)"),
        (IoIn(0x3F7, 1, 1), "unknown I/O port 0x3f7 (in, 1 bytes)"),
        (MmioWrite(0x4400000, b"\0" * 8), "wrote 8 bytes at 0x4400000, outside its 4 MiB"),
        (MmioRead(0xFEC0_0FFC, 8), "read 8 bytes at 0xfec00ffc"),  # runs off the range's end
    ],
)
def test_unclaimed_access_is_a_guest_fault(exit_: Any, message: str) -> None:
    bus = Bus(4 << 20)
    bus.add_io(0x3F8, 8, Recorder())
    bus.add_mmio(0xFEC0_0000, 0x1000, Recorder())
    with pytest.raises(GuestFault, match=re.escape(message)):
        bus.dispatch(exit_, _vcpu(FakeVcpu()))


def test_a_device_that_does_not_decode_a_direction_faults() -> None:
    bus = Bus(4 << 20)
    bus.add_io(0xE9, 1, BusDevice())
    with pytest.raises(GuestFault, match="read 1 bytes from port 0xe9"):
        bus.dispatch(IoIn(0xE9, 1, 1), _vcpu(FakeVcpu()))


@pytest.mark.parametrize(("start", "length"), [(0x3F8, 1), (0x3F0, 9), (0x3FF, 4), (0x3F0, 0x20)])
def test_overlapping_ranges_are_refused(start: int, length: int) -> None:
    bus = Bus(4 << 20)
    bus.add_io(0x3F8, 8, Recorder())
    bus.add_io(0x3F0, 8, Recorder())  # adjacent is fine
    bus.add_io(0x400, 1, Recorder())
    with pytest.raises(ValueError, match="overlaps"):
        bus.add_io(start, length, Recorder())


def test_hypercall_port_reads_registers_and_answers_in_rax() -> None:
    port, cpu = HypercallPort(), FakeVcpu(rdi=5, rsi=7)
    port.register(Hypercall.SET_CLOCKEVENT, lambda a0, a1: -(a0 + a1))
    bus = Bus(4 << 20)
    bus.add_io(HYPERCALL_PORT, 1, port)
    bus.dispatch(
        IoOut(HYPERCALL_PORT, 4, int(Hypercall.SET_CLOCKEVENT).to_bytes(4, "little")), _vcpu(cpu)
    )
    assert cpu.regs.rax == (-12) & 0xFFFF_FFFF_FFFF_FFFF
    with pytest.raises(GuestFault, match="32-bit out"):
        bus.dispatch(IoOut(HYPERCALL_PORT, 1, b"\x01"), _vcpu(cpu))


def test_a_hypercall_cannot_be_registered_twice() -> None:
    port = HypercallPort()
    with pytest.raises(ValueError, match="NOP is registered twice"):
        port.register(Hypercall.NOP, lambda a0, a1: 0)


def test_every_device_type_registered_once_and_every_call_has_a_device() -> None:
    names = [t.__name__ for t in DEVICE_TYPES]
    assert len(names) == len(set(names))
    assert {
        "ConsoleDevice",
        "LguestClockEventDevice",
        "PvDeadlineDevice",
        "PreciseTimerDevice",
        "PvclockDevice",
        "IoInterruptDevice",
        "ResultsDevice",
    } <= set(names)
