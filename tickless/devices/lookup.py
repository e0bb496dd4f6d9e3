"""A machine's devices as its owner asks for them, by type.

The machine creates whatever registered itself (``device.py``'s ``DEVICE_TYPES``) and
names no device; the accessors the measurements use (the PV deadline device, the precise
channel, the I/O source, the recorded timestamps) live here, beside the devices they name.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

from tickless.devices.device import Device
from tickless.devices.io_irq import IoInterruptDevice
from tickless.devices.precise_timer import PreciseTimerDevice
from tickless.devices.pv_deadline import PvDeadlineDevice
from tickless.devices.results import ResultsDevice

D = TypeVar("D", bound=Device)


class MachineDevices:
    """Lookups over ``devices`` (a machine's, in creation order)."""

    name: str
    devices: list[Device]

    def device(self, kind: type[D]) -> D | None:
        """This machine's device of type ``kind``, if its configuration created one."""
        for device in self.devices:
            if isinstance(device, kind):
                return device
        return None

    def required(self, kind: type[D]) -> D:
        device = self.device(kind)
        if device is None:
            raise LookupError(f"{self.name} has no {kind.__name__}")
        return device

    @property
    def io(self) -> IoInterruptDevice | None:
        return self.device(IoInterruptDevice)

    @property
    def precise(self) -> PreciseTimerDevice:
        return self.required(PreciseTimerDevice)

    @property
    def pv(self) -> PvDeadlineDevice:
        return self.required(PvDeadlineDevice)

    def timestamps_ns(self, events: int) -> npt.NDArray[np.int64]:
        """The reference timestamp and one per recorded event (see ``ResultsDevice``)."""
        return self.required(ResultsDevice).timestamps_ns(events)
