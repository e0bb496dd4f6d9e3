"""The ACPI PM1 registers on the bus where the zoo's ACPI tables name them
(``pm1_registers.py`` says what they do)."""

from __future__ import annotations

from tickless.devices.device import Device, MachineContext, register_device
from tickless.devices.pm1_registers import PM1_EVT_PORT, PM1_PORTS, Pm1Registers


@register_device
class AcpiPmDevice(Device):
    """Created with the zoo, whose machines get the ACPI tables that name these ports."""

    def __init__(self, registers: Pm1Registers) -> None:
        self.registers = registers

    @classmethod
    def create(cls, ctx: MachineContext) -> AcpiPmDevice | None:
        if not ctx.config.zoo:
            return None
        device = cls(Pm1Registers())
        ctx.bus.add_io(PM1_EVT_PORT, PM1_PORTS, device.registers)
        return device
