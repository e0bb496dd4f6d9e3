"""The HPET (IA-PC HPET 1.0a) at ``HPET_GPA``: a 64-bit main counter and three comparators,
emulated on the group's timeline.

Registers: the spec's 1 KiB (QEMU's 10 ns tick), 32- and 64-bit aligned; narrower or
misaligned reads see the bytes they cover, such writes are ignored and counted.

Time: the counter is ``(ns - origin_ns) // 10`` of the guest's time while ENABLE_CNF is set
(held, and writable, while clear), so dilation, freeze and warp follow by construction.
Each comparator's next match is a guest-time deadline on the host timer thread
(``ClockEventDevice.program_match``). A counter or status read first raises every match
the returned value has passed, so a guest that re-reads the counter after programming, as
Linux's ``hpet_clkevt_set_next_event`` does, learns the truth.

Matches: on the counter's low 32 (``Tn_32MODE_CNF``) or 64 bits; a one-shot behind waits
for the wrap (a 32-bit one also interrupts at each wrap, as QEMU's). Periodic: each match
adds the last value written; missed periods are skipped and counted; 10 us at least.

Interrupts (``Tn_INT_ENB_CNF``): with LEG_RT_CNF comparators 0 and 1 raise GSIs 0 and 8 (no
overrides in our MP table and MADT); otherwise ``Tn_INT_ROUTE_CNF`` names an IOAPIC pin of
``ROUTE_CAP`` (a pin not offered keeps the old route); or, with the FSB capability (off by
default, as QEMU's, so Linux keeps its legacy "hpet" clock event) and ``Tn_FSB_EN_CNF``, an
MSI whose address and data must name the LAPIC window, a fixed or lowest-priority delivery
and a vector >= 16 (else dropped and counted). Level-triggered: status bit set per match.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tickless.devices.bus import BusDevice
from tickless.devices.device import Device, MachineContext, register_device
from tickless.devices.hpet_registers import (
    CAPABILITIES,
    CFG_ENABLE,
    CFG_LEGACY,
    CONFIG_REG,
    COUNTER_REG,
    ID_REG,
    LEGACY_GSI,
    MIN_PERIOD_TICKS,
    MSI_WINDOW,
    MSI_WINDOW_MASK,
    NEVER_TICKS,
    NUM_TIMERS,
    ROUTE_CAP,
    STATUS_REG,
    TICK_NS,
    TIMER_BASE,
    TIMER_STRIDE,
    TN_32BIT,
    TN_COMPARATOR,
    TN_CONFIG,
    TN_FSB_CAP,
    TN_FSB_EN,
    TN_FSB_ROUTE,
    TN_INT_ENB,
    TN_LEVEL,
    TN_PER_CAP,
    TN_PERIODIC,
    TN_ROUTE_MASK,
    TN_ROUTE_SHIFT,
    TN_SIZE_CAP,
    TN_VAL_SET,
    TN_WRITABLE,
    U32,
    U64,
    HpetStats,
    HpetTimer,
    RaiseGsi,
    SignalMsi,
)
from tickless.guest.abi import HPET_GPA, HPET_MMIO_BYTES
from tickless.kvm.vcpu import Vcpu
from tickless.timers.clock import GuestClock
from tickless.timers.clockevents import ClockEventDevice
from tickless.timers.hrtimer import TimerBase
from tickless.timers.timeline import Timeline


def _passive(t: HpetTimer) -> bool:
    """Matches that raise nothing (interrupt off, edge-triggered) show only in a periodic
    comparator's read-back, which ``_catch_up`` works out: no host timer runs for them.
    Linux leaves timer 0 so once the LAPIC timer ticks (1,000 wake-ups/s at R = 10)."""
    return not t.config & (TN_INT_ENB | TN_LEVEL)


class Hpet(BusDevice):
    """The register file and its comparators; see the module docstring."""

    name = "hpet"

    def __init__(
        self,
        timeline: Timeline,
        timers: TimerBase,
        raise_gsi: RaiseGsi,
        signal_msi: SignalMsi,
        fsb: bool = False,
        base: int = HPET_GPA,
        name: str = "hpet",
    ) -> None:
        self.timeline, self.base = timeline, base
        self.raise_gsi, self.signal_msi = raise_gsi, signal_msi
        self.config = 0
        self.status = 0
        self.held = 0  # the counter while halted
        self.origin_ns = 0  # while running: guest ns at which the counter read 0
        self.stats = HpetStats()
        self._status_lock = threading.Lock()  # the expiry sets bits, the guest clears them
        self._mmio_lock = threading.Lock()  # vCPUs only: never taken by an expiry
        caps = TN_PER_CAP | TN_SIZE_CAP | (TN_FSB_CAP if fsb else 0) | ROUTE_CAP << 32
        self.timers = [HpetTimer(i, caps) for i in range(NUM_TIMERS)]
        self.events = [
            ClockEventDevice(
                timeline.clock, timers, self._expiry_of(t), name=f"{name}-comparator{t.index}"
            )
            for t in self.timers
        ]

    # --- time ------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return bool(self.config & CFG_ENABLE)

    def _now(self) -> tuple[int, int]:
        ticks = self.timeline.read_ticks()
        return ticks, self.timeline.now_ns(ticks)

    def _counter_at(self, now_ns: int) -> int:
        """The unwrapped counter (the register is its low 64 bits)."""
        return (now_ns - self.origin_ns) // TICK_NS if self.enabled else self.held

    def _ns_of(self, counter: int) -> int:
        return self.origin_ns + counter * TICK_NS

    def _next_target(self, t: HpetTimer, after: int) -> int | None:
        """The first counter value after ``after`` at which comparator ``t`` fires."""
        target = after + ((t.comparator - after - 1) & t.mask) + 1
        if t.config & TN_32BIT and not t.config & TN_PERIODIC:
            target = min(target, ((after >> 32) + 1) << 32)  # the 32-bit wrap interrupt
        return target if target - after <= NEVER_TICKS else None

    # --- the bus ---------------------------------------------------------------------------

    def mmio_read(self, addr: int, length: int, vcpu: Vcpu | None) -> bytes:
        offset = addr - self.base
        with self._mmio_lock:
            if length in (4, 8) and offset % length == 0:
                return self.read(offset, length).to_bytes(length, "little")
            first, last = offset & ~7, (offset + length - 1) & ~7  # any other access
            raw = b"".join(self.read(q, 8).to_bytes(8, "little") for q in range(first, last + 8, 8))
            return raw[offset - first : offset - first + length]

    def mmio_write(self, addr: int, data: bytes, vcpu: Vcpu | None) -> None:
        offset = addr - self.base
        with self._mmio_lock:
            if len(data) in (4, 8) and offset % len(data) == 0:
                self.write(offset, len(data), int.from_bytes(data, "little"))
            else:
                self.stats.ignored_writes += 1

    def read(self, offset: int, size: int) -> int:
        """A 4- or 8-byte aligned read at ``offset`` into the block."""
        reg = offset & ~7
        value = self._read64(reg)
        return value if size == 8 else (value >> (8 * (offset & 4))) & U32

    def _read64(self, reg: int) -> int:
        if reg == ID_REG:
            return CAPABILITIES
        if reg == CONFIG_REG:
            return self.config
        if reg == STATUS_REG:
            self._sync()
            return self.status
        if reg == COUNTER_REG:
            return self._sync() & U64
        t, sub = self._timer_at(reg)
        if t is None:
            return 0
        if sub == TN_CONFIG:
            return t.config
        if sub == TN_COMPARATOR:
            self._catch_up(t)
            return t.comparator
        return t.fsb if sub == TN_FSB_ROUTE else 0

    def write(self, offset: int, size: int, value: int) -> None:
        """A 4- or 8-byte aligned write: ``value`` into the register's bytes it covers."""
        reg, shift = offset & ~7, 8 * (offset & 4) if size == 4 else 0
        mask = (U32 if size == 4 else U64) << shift
        value = (value << shift) & mask

        def merged(old: int) -> int:
            return (old & ~mask) | value

        if reg == CONFIG_REG:
            self._write_config(merged(self.config) & (CFG_ENABLE | CFG_LEGACY))
        elif reg == STATUS_REG:
            with self._status_lock:
                self.status &= ~(value & ((1 << NUM_TIMERS) - 1))
        elif reg == COUNTER_REG:
            if self.enabled:
                self.stats.ignored_writes += 1
            else:
                self.held = merged(self.held)
        else:
            t, sub = self._timer_at(reg)
            if t is None or (sub == TN_CONFIG and not mask & U32):
                return  # read-only (ID, capabilities) or reserved
            if sub == TN_CONFIG:
                self._write_timer_config(t, merged(t.config))
            elif sub == TN_COMPARATOR:
                self._write_comparator(t, value, mask)
            elif sub == TN_FSB_ROUTE:
                t.fsb = merged(t.fsb)  # read at each FSB interrupt

    def _timer_at(self, reg: int) -> tuple[HpetTimer | None, int]:
        index, sub = divmod(reg - TIMER_BASE, TIMER_STRIDE)
        if reg < TIMER_BASE or index >= NUM_TIMERS:
            return None, 0
        return self.timers[index], sub

    # --- register writes (vCPU thread) ------------------------------------------------------

    def _write_config(self, new: int) -> None:
        for t in self.timers:
            self._catch_up(t)
        for event in self.events:
            event.shutdown()
        _, now_ns = self._now()
        if new & CFG_ENABLE and not self.enabled:
            self.origin_ns = now_ns - self.held * TICK_NS
        elif self.enabled and not new & CFG_ENABLE:
            self.held = self._counter_at(now_ns) & U64
        self.config = new
        for t in self.timers:
            self._arm(t)

    def _write_timer_config(self, t: HpetTimer, new: int) -> None:
        old = t.config
        new = (new & TN_WRITABLE) | (old & ~TN_WRITABLE)
        route = (new & TN_ROUTE_MASK) >> TN_ROUTE_SHIFT
        if not (ROUTE_CAP >> route) & 1 and new & TN_ROUTE_MASK != old & TN_ROUTE_MASK:
            self.stats.refused_routes += 1  # a pin not offered: the old route stays
            new = (new & ~TN_ROUTE_MASK) | (old & TN_ROUTE_MASK)
        if not old & TN_FSB_CAP:
            new &= ~TN_FSB_EN
        self._catch_up(t)
        self.events[t.index].shutdown()
        t.config = new
        if new & TN_32BIT:  # the upper halves read 0 from now on
            t.comparator &= U32
            t.period &= U32
        self._arm(t)

    def _write_comparator(self, t: HpetTimer, value: int, mask: int) -> None:
        self._catch_up(t)
        self.events[t.index].shutdown()
        mask &= t.mask  # 32-bit mode: the upper half is not there
        periodic = t.config & TN_PERIODIC
        if not periodic or t.config & TN_VAL_SET:
            t.comparator = (t.comparator & ~mask) | (value & mask)
        if periodic:  # the value also becomes the period (QEMU's, most hardware's)
            t.period = ((t.period & ~mask) | (value & mask)) & (t.mask >> 1)
        t.config &= ~TN_VAL_SET
        self._arm(t)

    def _arm(self, t: HpetTimer) -> None:
        """Arm comparator ``t``'s next match (its host timer is shut down)."""
        t.target = None
        if not self.enabled:
            return
        _, now_ns = self._now()
        t.target = self._next_target(t, self._counter_at(now_ns))
        if t.target is not None and not _passive(t):
            self.events[t.index].program_match(self._ns_of(t.target), now_ns)

    def _catch_up(self, t: HpetTimer) -> None:
        """A passive comparator's matches up to now, as if each had run (``_passive``):
        a periodic one's read-back moves on by its period per match."""
        if t.target is None or not self.enabled or not _passive(t):
            return
        counter = self._counter_at(self._now()[1])
        passed = 0
        if t.config & TN_PERIODIC and t.period and t.target <= counter:
            step = max(t.period, MIN_PERIOD_TICKS)
            passed = (counter - t.target) // step + 1
            t.comparator = (t.comparator + passed * step) & t.mask
            t.target += passed * step
        while not t.config & TN_PERIODIC and t.target is not None and t.target <= counter:
            passed += 1  # a one-shot, and each 32-bit wrap after it
            t.target = self._next_target(t, t.target)
        self.stats.matches += passed
        self.stats.masked += passed

    def _sync(self) -> int:
        """Raise every match the counter has passed (before a read shows it); returns the
        unwrapped counter."""
        ticks, now_ns = self._now()
        counter = self._counter_at(now_ns)
        if self.enabled:
            for t, event in zip(self.timers, self.events, strict=True):
                if t.target is not None and t.target <= counter:
                    event.fire_if_due(ticks)
        return counter

    # --- matches (the host timer thread, or a read's _sync) --------------------------------

    def _expiry_of(self, t: HpetTimer) -> Callable[[int], None]:
        return lambda now_ticks: self._expired(t, now_ticks)

    def _expired(self, t: HpetTimer, now_ticks: int) -> None:
        event = self.events[t.index]
        clock: GuestClock = event.clock
        now_ns = clock.ns_at(max(now_ticks, clock.tsc_timestamp))
        target = t.target
        if target is None or not self.enabled:
            return
        counter = self._counter_at(now_ns)
        if counter < target:  # an hourly look at a far match
            event.rearm_from_expiry(self._ns_of(target), now_ns)
            return
        comparator = t.comparator
        if t.config & TN_PERIODIC and t.period:
            step = max(t.period, MIN_PERIOD_TICKS)
            self.stats.clamped += t.period < MIN_PERIOD_TICKS
            passed = (counter - target) // step + 1
            self.stats.overruns += passed - 1
            comparator = (comparator + passed * step) & t.mask
            t.target = target + passed * step
        else:
            t.target = self._next_target(t, counter)
        if t.target is not None:
            event.rearm_from_expiry(self._ns_of(t.target), now_ns)
        self._fire(t)
        t.comparator = comparator  # after the interrupt: a read of the next match knows it

    def _fire(self, t: HpetTimer) -> None:
        self.stats.matches += 1
        if t.config & TN_LEVEL:
            with self._status_lock:
                self.status |= 1 << t.index
        if not t.config & TN_INT_ENB:
            self.stats.masked += 1
            return
        if self.config & CFG_LEGACY and t.index < len(LEGACY_GSI):
            self.raise_gsi(LEGACY_GSI[t.index])
        elif t.config & TN_FSB_EN:
            address, data = t.fsb >> 32, t.fsb & U32
            vector, delivery = data & 0xFF, (data >> 8) & 7
            if address & MSI_WINDOW_MASK != MSI_WINDOW or delivery > 1 or vector < 16:
                self.stats.bad_msi += 1
                return
            self.signal_msi(vector, (address >> 12) & 0xFF)
        else:
            self.raise_gsi((t.config & TN_ROUTE_MASK) >> TN_ROUTE_SHIFT)
        self.stats.interrupts += 1

    def shutdown(self) -> None:
        for event in self.events:
            event.shutdown()


@register_device
class HpetDevice(Device):
    """The HPET of a guest that has the timer zoo (``GuestConfig.zoo``)."""

    def __init__(self, ctx: MachineContext, hpet: Hpet) -> None:
        self.ctx, self.hpet = ctx, hpet

    @classmethod
    def create(cls, ctx: MachineContext) -> HpetDevice | None:
        if not ctx.config.zoo:
            return None
        hpet = Hpet(ctx.timeline, ctx.timers, ctx.raise_gsi, ctx.vm.signal_msi, name=ctx.name)
        ctx.bus.add_mmio(HPET_GPA, HPET_MMIO_BYTES, hpet)
        for event in hpet.events:
            ctx.timeline.subscribe(event)
        return cls(ctx, hpet)

    def summary(self) -> str:
        """What the guest made of its HPET, for the record's notes."""
        s = self.hpet.stats
        return (
            f"hpet: {s.matches} comparator matches, {s.interrupts} interrupts raised, "
            f"{s.masked} masked, {s.overruns} periods skipped late, {s.clamped} run at the "
            f"10 us minimum period, {s.refused_routes} routes refused, {s.bad_msi} bad MSIs "
            f"dropped, {s.ignored_writes} writes ignored"
        )

    def stop(self, now_ticks: int) -> None:
        self.hpet.shutdown()

    def close(self) -> None:
        for event in self.hpet.events:
            self.ctx.timeline.unsubscribe(event)
