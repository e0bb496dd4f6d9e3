"""The CMOS RTC (Motorola MC146818A) at ports 0x70 (index; bit 7 masks NMI) and 0x71 (data).

Every count is a pure function of the guest's time on the group's timeline: the time of
day is the epoch (``--rtc-epoch``, default the host's time when the machine starts) plus
the guest time elapsed since, so dilation, freeze and warp follow by construction.

The model is the chip's divider chain: a 32.768 kHz counter whose position (``chain_ns``)
runs with guest time while divider bits DV of register A are 0x0-0x2 (QEMU treats the
other time bases as the PC's 32 kHz one; so do we), holds while DV is 10x (test modes) and
is reset while DV is 11x; releasing the reset starts it half a second before its first
update (the datasheet's "first update one half second later"). The seconds update when
the chain crosses a whole second; the periodic taps (register A's RS: 3-15 give 8192 Hz
down to 2 Hz, 1 and 2 give 256 and 128 Hz, the 32 kHz time base's quirk, 0 none) are the
chain's bits, so periodic edges lie on the grid counted from the release. UIP reads 1 in
the 8 cycles (244.140625 us) before each update. SET in register B stops the updates (the
chain runs on: periodic interrupts continue, as the datasheet says) and clears UIE; clearing
it re-bases the time on what the guest wrote, keeping the chain's phase. Writing a time
register while the clock runs re-bases it the same way. The flags PF, AF, UF are set at
their edges (AF: an update whose time matches the alarm bytes, 0xC0-0xFF a don't-care);
IRQF = (PF&PIE)|(AF&AIE)|(UF&UIE), and its rise is one edge on GSI 8; reading register C
returns and clears them all, so a guest that never reads C gets no second interrupt, and
no host timer is armed while IRQF is pending (8192 Hz costs nothing then). Registers C and
D are read-only; D reads VRT=1. The time registers are computed on read (BCD or binary, 12
or 24 h with bit 7 the PM flag, century byte at 0x32); the day of week is derived from the
date, as QEMU does. A mode change (DM, 24/12) keeps the time and reads it in the new mode
(QEMU's behaviour); bytes that are no valid time are normalized arithmetically, as mktime
does. Port accesses wider than a byte touch each byte's port; reads of the index port see
0xFF (it is write-only).
"""

from __future__ import annotations

import threading
import time

from tickless.devices.bus import BusDevice
from tickless.devices.device import Device, MachineContext, register_device
from tickless.devices.rtc_chip import Mc146818
from tickless.guest.abi import ETIME, MAX_DELTA_NS, RTC_GSI, RTC_PORT, RTC_PORTS
from tickless.kvm.vcpu import Vcpu
from tickless.timers.clockevents import ClockEventDevice


class RtcPorts(BusDevice):
    """Ports 0x70 and 0x71 of one ``RtcDevice``."""

    name = "cmos rtc"

    def __init__(self, device: RtcDevice) -> None:
        self.device = device

    def io_write(self, port: int, data: bytes, vcpu: Vcpu) -> None:
        for i, byte in enumerate(data):  # a wider access: each byte to its own port
            if port + i < RTC_PORT + RTC_PORTS:
                self.device.access(port + i, byte)

    def io_read(self, port: int, size: int, vcpu: Vcpu) -> bytes:
        out = bytes(
            self.device.access(port + i, None) if port + i < RTC_PORT + RTC_PORTS else 0xFF
            for i in range(size)
        )
        return out


@register_device
class RtcDevice(Device):
    """The MC146818 on the group's timeline; its edges are armed on a ``ClockEventDevice``.

    Locks: ``_lock`` guards the chip (the vCPU's accesses and the expiry take it);
    ``_program_lock`` orders the vCPU's programming of the clock-event device, which is
    done outside ``_lock`` because programming cancels a running expiry and waits for it.
    The expiry only sets flags and raises (never programs: the pending IRQF means nothing
    is due until the guest reads C, and that read programs the next edge)."""

    def __init__(self, ctx: MachineContext, epoch_ns: int) -> None:
        self.ctx = ctx
        self.epoch_ns = epoch_ns
        self.chip = Mc146818(epoch_ns, ctx.timeline.now_ns(), self._raise)
        self.clockevent = ClockEventDevice(ctx.clock, ctx.timers, self._expired, f"{ctx.name}-rtc")
        self._lock = threading.Lock()
        self._program_lock = threading.Lock()

    @classmethod
    def create(cls, ctx: MachineContext) -> RtcDevice | None:
        if not ctx.config.zoo:
            return None
        epoch = ctx.config.rtc_epoch_ns
        device = cls(ctx, time.time_ns() if epoch is None else epoch)
        ctx.bus.add_io(RTC_PORT, RTC_PORTS, RtcPorts(device))
        ctx.timeline.subscribe(device.clockevent)
        return device

    def access(self, port: int, value: int | None) -> int:
        """One byte in (``value`` None) or out on ``port``; the vCPU thread."""
        with self._program_lock:
            with self._lock:
                now = self.ctx.timeline.now_ns()
                if port == RTC_PORT:
                    result = 0xFF  # the index register is write-only
                    if value is not None:
                        self.chip.write_index(value)
                elif value is None:
                    result = self.chip.read_data(now)
                else:
                    self.chip.write_data(value, now)
                    result = 0
            if port != RTC_PORT:
                self._program()
        return result

    def _program(self) -> None:
        """Arm the next enabled edge (``_program_lock`` held, ``_lock`` not)."""
        while True:
            ticks = self.ctx.timeline.read_ticks()
            with self._lock:
                now = self.ctx.timeline.now_ns(ticks)
                self.chip.sync(now)
                due = self.chip.next_irq_ns(now)
            ce = self.clockevent
            if due is None:
                if ce.next_event_ns is not None:
                    ce.shutdown()
                return
            if due == ce.next_event_ns:
                return
            if due - now > MAX_DELTA_NS:  # an alarm a day away: hour steps, the last at or
                # just after it (by under a ns per step); the expiries before find nothing due
                steps = -(-(due - now) // MAX_DELTA_NS)
                ce.set_periodic(-(-(due - now) // steps), ticks)
                return
            if ce.set_deadline(due, ticks) != -ETIME:
                return  # -ETIME: due already; the next round's sync raises it

    def _expired(self, now_ticks: int) -> None:
        """The host timer thread: an edge is due (its flag raises the interrupt)."""
        with self._lock:
            self.chip.sync(self.ctx.timeline.now_ns(now_ticks))

    def _raise(self) -> None:
        self.ctx.raise_gsi(RTC_GSI)

    def summary(self) -> str:
        """What the chip did, for the record's notes (as of the guest's last access: an
        edge since then must not raise an interrupt into a guest that has finished)."""
        chip = self.chip
        return (
            f"rtc: {chip.raised} interrupts raised, register C read {chip.c_reads} times, "
            f"{chip.periodic_missed} periodic edges lost while one was pending"
        )

    def stop(self, now_ticks: int) -> None:
        self.clockevent.shutdown()

    def close(self) -> None:
        self.ctx.timeline.unsubscribe(self.clockevent)
