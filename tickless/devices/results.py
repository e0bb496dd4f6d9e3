"""The workload's results: the timestamp buffer the guest fills, and its DONE call."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from tickless.devices.device import Device, MachineContext, register_device
from tickless.devices.faults import GuestFault
from tickless.errors import GuestStopped
from tickless.guest.abi import Hypercall


@register_device
class ResultsDevice(Device):
    """DONE(events) ends the workload; ``timestamps_ns`` reads what it recorded."""

    def __init__(self, ctx: MachineContext) -> None:
        self.ctx = ctx
        self.capacity = ctx.config.results_capacity

    @classmethod
    def create(cls, ctx: MachineContext) -> ResultsDevice:
        device = cls(ctx)
        ctx.hypercalls.register(Hypercall.DONE, device.hc_done)
        return device

    def hc_done(self, events: int, _unused: int) -> int:
        if events > self.capacity - 1:
            raise GuestFault(
                f"DONE reports {events} events, but the result buffer holds {self.capacity - 1}"
            )
        self.ctx.finish(events)
        return 0

    def timestamps_ns(self, events: int) -> npt.NDArray[np.int64]:
        """The reference timestamp and one per recorded event, as the guest wrote them.

        The guest is untrusted: a count beyond the buffer is clamped, and timestamps that
        go backwards are refused."""
        n = min(max(events, 0), self.capacity - 1) + 1
        raw = self.ctx.memory.read(self.ctx.layout.results_gpa, n * 8, "results")
        stamps = np.frombuffer(raw, dtype=np.uint64).astype(np.int64)
        if n > 1 and bool(np.any(np.diff(stamps) < 0)):
            raise GuestStopped("guest reported event timestamps that go backwards")
        return stamps

    def arrivals_ns(self, events: int) -> npt.NDArray[np.int64]:
        """Per event 1..N, when its interrupt reached the guest's ring 3, before any spin
        (0: spun to without one). Untrusted: the caller drops values that do not fit
        between the event's neighbours (``measure/interrupts.py``)."""
        if self.ctx.config.results_arrays < 2 or self.ctx.config.cron_schedule:
            raise LookupError("the guest records no interrupt arrivals")
        n = min(max(events, 0), self.capacity - 1)
        raw = self.ctx.memory.read(
            self.ctx.layout.results_gpa + self.capacity * 8 + 8, n * 8, "results"
        )
        return np.frombuffer(raw, dtype=np.uint64).astype(np.int64)

    def release_bracket_ns(self) -> int:
        """``--timer rtc``: the width of the PV clock reads around the write that started
        the RTC's chain (the guest puts the second read in the arrivals' unused slot 0;
        untrusted: the caller clamps it)."""
        raw = self.ctx.memory.read(self.ctx.layout.results_gpa + self.capacity * 8, 8, "results")
        start = self.ctx.memory.read(self.ctx.layout.results_gpa, 8, "results")
        return int.from_bytes(raw, "little") - int.from_bytes(start, "little")

    def explain_arrays(self, events: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """``--explain``: per event 1..N, the guest's ring-3 wake-up time (0: spun to, the
        same array as ``arrivals_ns``) and the longest gap in its clock while spinning.
        Untrusted like the timestamps: the breakdown skips values that do not fit between
        the event's neighbours."""
        if self.ctx.config.results_arrays < 3:
            raise LookupError("the guest was not asked to explain its events")
        n = min(max(events, 0), self.capacity - 1)
        base, stride = self.ctx.layout.results_gpa, self.capacity * 8
        arrays = []
        for k in (1, 2):
            raw = self.ctx.memory.read(base + k * stride + 8, n * 8, "results")
            arrays.append(np.frombuffer(raw, dtype=np.uint64).astype(np.int64))
        return arrays[0], arrays[1]

    def cron_wakes(self, recorded: int) -> npt.NDArray[np.int64]:
        """CRON and IDLE: per timer run 1..N, when the interrupt the guest woke for reached
        ring 3 (0: none, or the run was not what the wake-up was for). Untrusted: the
        record keeps only values between the run's deadline's wait and the run."""
        if self.ctx.config.results_arrays < 4 or not self.ctx.config.cron_schedule:
            raise LookupError("the guest runs no cron schedule")
        n = min(max(recorded, 0), self.capacity - 1)
        base = self.ctx.layout.results_gpa + 3 * self.capacity * 8
        raw = self.ctx.memory.read(base + 8, n * 8, "results")
        return np.frombuffer(raw, dtype=np.uint64).astype(np.int64)

    def cron_runs(
        self, recorded: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """CRON and IDLE: per timer run 1..N, the guest time it ran, its deadline and the
        timer's index. Untrusted: the count is clamped to the buffer, times must not go
        backwards, and an index must name one of the guest's timers."""
        if self.ctx.config.results_arrays < 3 or not self.ctx.config.cron_schedule:
            raise LookupError("the guest runs no cron schedule")
        n = min(max(recorded, 0), self.capacity - 1)
        base, stride = self.ctx.layout.results_gpa, self.capacity * 8
        arrays = []
        for k in (0, 1, 2):
            raw = self.ctx.memory.read(base + k * stride + 8, n * 8, "results")
            arrays.append(np.frombuffer(raw, dtype=np.uint64).astype(np.int64))
        ran, deadline, timer = arrays
        if n > 1 and bool(np.any(np.diff(ran) < 0)):
            raise GuestStopped("guest reported timer runs that go backwards in time")
        if n and (timer.min() < 0 or timer.max() >= len(self.ctx.config.cron_schedule)):
            raise GuestStopped("guest reported a run of a timer it does not have")
        return ran, deadline, timer
