"""What a device is, what it may use of its machine, and the list of device types.

A device is one file in ``tickless/devices/`` that subclasses ``Device``, decorates the
class with ``@register_device`` and is imported in ``tickless/devices/__init__.py`` (the
list, as kvmtool's ``dev_init``). ``create`` gets the ``MachineContext``, claims the
device's ports on the bus and its hypercalls on the hypercall port, and returns ``None``
when the guest's configuration does not want the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tickless.devices.bus import Bus
from tickless.devices.hypercall import HypercallPort
from tickless.devices.memory import GuestMemory
from tickless.guest import abi
from tickless.kvm.vm import Vm
from tickless.timers.clock import GuestClock
from tickless.timers.hrtimer import TimerBase
from tickless.vmm.config import GuestConfig


@dataclass
class MachineContext:
    """What a device may use of the machine it is part of."""

    name: str  # the machine's, for timer names and messages
    config: GuestConfig
    vm: Vm
    memory: GuestMemory
    clock: GuestClock  # the guest's PV clock
    shared: abi.Shared  # counters the guest and the host both read
    timers: TimerBase  # the host timer thread every device of the host shares
    precise_timers: TimerBase  # the precise channel's own timer thread (or ``timers``)
    bus: Bus
    hypercalls: HypercallPort
    finish: Callable[[int], None]  # the workload is done, having recorded N events
    injections: int = 0  # interrupts injected into the guest, by every device

    def inject(self, vector: int) -> None:
        """Raise ``vector`` in the guest's boot vCPU (an MSI into the in-kernel LAPIC)."""
        self.injections += 1
        self.vm.signal_msi(vector)


class Device:
    """One device of a machine. ``start`` runs just before the vCPU does, ``stop`` once it
    has stopped (cancel host timers there: the guest is gone)."""

    @classmethod
    def create(cls, ctx: MachineContext) -> Device | None:
        raise NotImplementedError

    def start(self, now_ticks: int) -> None:
        """The guest is about to run."""

    def stop(self, now_ticks: int) -> None:
        """The guest has stopped."""


D = TypeVar("D", bound=type[Device])

DEVICE_TYPES: list[type[Device]] = []  # in registration order: created in this order


def register_device(cls: D) -> D:
    DEVICE_TYPES.append(cls)
    return cls
