"""What a device is, what it may use of its machine, and the list of device types.

A device is one file in ``tickless/devices/`` that subclasses ``Device``, decorates the
class with ``@register_device`` and is imported in ``tickless/devices/__init__.py`` (the
list, as kvmtool's ``dev_init``). ``create`` gets the ``MachineContext``, claims the
device's ports on the bus and its hypercalls on the hypercall port, and returns ``None``
when the guest's configuration does not want the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tickless.devices.bus import Bus
from tickless.devices.config import GuestConfig
from tickless.devices.console_buffer import Console
from tickless.devices.hypercall import HypercallPort
from tickless.devices.memory import GuestMemory
from tickless.guest import abi
from tickless.host.deadline_loop import DeadlineLoop
from tickless.kvm.vm import Vm
from tickless.timers.clock import GuestClock
from tickless.timers.hrtimer import TimerBase
from tickless.timers.timeline import Member, Timeline


@dataclass(frozen=True)
class GuestLayout:
    """Where the structures the host and the guest share live in guest-physical memory."""

    boot_gpa: int  # struct tickless_boot: what to run
    pvclock_gpa: int  # the PV clock page
    shared_gpa: int  # struct tickless_shared: counters
    results_gpa: int  # u64 timestamps
    info_gpa: int | None = None  # struct tickless_linux_info (Linux guests)
    msg_tx_gpa: int = abi.MSG_TX_GPA  # the message device's send buffer
    msg_ring_gpa: int = abi.MSG_RING_GPA  # and its receive ring

    @classmethod
    def small_guest(cls) -> GuestLayout:
        return cls(abi.BOOT_GPA, abi.PVCLOCK_GPA, abi.SHARED_GPA, abi.RESULTS_GPA)

    @classmethod
    def linux_window(cls, window_gpa: int) -> GuestLayout:
        """Inside the window the host reserves for a Linux guest's drivers."""
        return cls(
            window_gpa + abi.WINDOW_BOOT_OFFSET,
            window_gpa + abi.WINDOW_PVCLOCK_OFFSET,
            window_gpa + abi.WINDOW_SHARED_OFFSET,
            window_gpa + abi.WINDOW_RESULTS_OFFSET,
            window_gpa + abi.WINDOW_INFO_OFFSET,
            window_gpa + abi.WINDOW_MSG_TX_OFFSET,
            window_gpa + abi.WINDOW_MSG_RING_OFFSET,
        )


@dataclass
class MachineContext:
    """What a device may use of the machine it is part of."""

    name: str  # the machine's, for timer names and messages
    config: GuestConfig
    layout: GuestLayout
    vm: Vm
    memory: GuestMemory
    timeline: Timeline  # the guest's clock, shared by the guests started with it
    member: Member  # the boot vCPU on that timeline (BLOCK marks it idle)
    shared: abi.Shared  # counters the guest and the host both read
    timers: TimerBase  # the host timer thread every device of the host shares
    deadline_loop: DeadlineLoop | None  # the host's C loop: PV deadlines, precise channel
    bus: Bus
    hypercalls: HypercallPort
    console: Console  # everything the guest prints, whichever device it uses
    finish: Callable[[int], None]  # the workload is done, having recorded N events
    irq_routes: dict[int, int] = field(default_factory=dict)  # vector -> GSI (see inject)
    injections: int = 0  # interrupts injected into the guest, by every device

    @property
    def clock(self) -> GuestClock:
        """The guest's PV clock as it is now (a device that keeps a copy subscribes to the
        timeline: the clock is re-anchored when time is dilated, warped or frozen)."""
        return self.timeline.clock

    def inject(self, vector: int) -> None:
        """Raise a device's interrupt: an MSI with ``vector`` into the boot vCPU's LAPIC,
        or, where the guest routes it through its IOAPIC (a Linux driver cannot claim a raw
        vector), an edge on that pin."""
        self.injections += 1
        gsi = self.irq_routes.get(vector)
        if gsi is None:
            self.vm.signal_msi(vector)
        else:
            self.vm.pulse_irq(gsi)

    def raise_gsi(self, gsi: int) -> None:
        """An edge on IOAPIC pin ``gsi``: how the timer zoo's chips interrupt (ISA IRQ n is
        GSI n). The guest routes the pin to a vector (the small guest's kernel does it at
        boot, as firmware would; Linux from the MP table or ACPI's MADT)."""
        self.injections += 1
        self.vm.pulse_irq(gsi)


class Device:
    """One device of a machine. ``start`` runs just before the vCPU does, ``stop`` once it
    has stopped (cancel host timers there: the guest is gone)."""

    @classmethod
    def create(cls, ctx: MachineContext) -> Device | None:
        raise NotImplementedError

    def start(self, now_ticks: int) -> None:
        """The guest is about to run."""

    def stopping(self) -> None:
        """A stop was asked (any thread): end at once any wait a vCPU thread makes in
        this device outside KVM_RUN, where the stop's kick cannot reach it."""

    def stop(self, now_ticks: int) -> None:
        """The guest has stopped."""

    def close(self) -> None:
        """The machine is being freed (started or not): release what outlives the guest
        (host threads that read its memory, descriptors) before its memory goes."""


D = TypeVar("D", bound=type[Device])

DEVICE_TYPES: list[type[Device]] = []  # in registration order: created in this order


def register_device(cls: D) -> D:
    DEVICE_TYPES.append(cls)
    return cls
