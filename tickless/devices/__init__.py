"""Devices a tickless guest sees, each one file that registers itself (``device.py``).

Every value a guest hands a device is validated; a guest that breaks the rules raises
``GuestFault`` and is stopped with that message. The imports below are the list of device
types, in the order a machine creates them (kvmtool's ``dev_init``): to add a device, write
its file and add it here.
"""

from tickless.devices import (
    acpi_pm,  # noqa: F401  (registers AcpiPmDevice)
    console,  # noqa: F401  (registers ConsoleDevice)
    hpet,  # noqa: F401  (registers HpetDevice)
    io_irq,  # noqa: F401  (registers IoInterruptDevice)
    legacy_ports,  # noqa: F401  (registers LegacyPortsDevice)
    lguest_clockevent,  # noqa: F401  (registers LguestClockEventDevice)
    message,  # noqa: F401  (registers MessageDevice)
    pit,  # noqa: F401  (registers PitDevice)
    precise_timer,  # noqa: F401  (registers PreciseTimerDevice)
    pv_deadline,  # noqa: F401  (registers PvDeadlineDevice)
    pvclock,  # noqa: F401  (registers PvclockDevice)
    results,  # noqa: F401  (registers ResultsDevice)
    rtc,  # noqa: F401  (registers RtcDevice)
    uart,  # noqa: F401  (registers UartDevice)
)
from tickless.devices.device import DEVICE_TYPES, Device, MachineContext, register_device

__all__ = ["DEVICE_TYPES", "Device", "MachineContext", "register_device"]
