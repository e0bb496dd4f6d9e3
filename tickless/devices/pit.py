"""The Intel 8254 PIT (``--timer pit`` and every zoo guest): ports 0x40-0x43 and channel 2's
gate at 0x61, counted in the group's guest time. It replaces KVM's in-kernel PIT2 where
the zoo is asked for (the in-kernel one cannot follow a timeline).

The input clock is 1,193,182 Hz on the guest's clock: edge ``k`` is at guest time
``ceil(k * 1e9 / F)`` ns, so every count and level is a pure function of guest time
(``i8254.py``), and dilation, freeze and warp follow by construction. Channel 0's OUT drives
GSI 0 (``ctx.raise_gsi``) on its rising edges, armed in guest time on a ``ClockEventDevice``:
mode 0 and 4 a one-shot at the edge, modes 2 and 3 a periodic on the exact edge grid
(``set_periodic_grid``: each expiry derived from the load edge and the count, no drift).

Deviations (the guest can observe them):
- a periodic channel 0 faster than ``MIN_PERIOD_NS`` (the host's lguest tick limit, 100 kHz)
  interrupts on every k-th rising edge only, k the smallest making the spacing
  ``>= MIN_PERIOD_NS``; the counts and OUT stay exact, and such programmings are counted
  (``PitStats.clamped``, in the record's notes): a count of 2 is no host timer storm;
- the chip's power-on state is undefined and no BIOS ran: nothing counts until the guest
  programs a channel (a PC's BIOS leaves channel 0 in mode 3 at 18.2 Hz);
- a control word's level change (e.g. mode 0 -> mode 2 sets OUT high) raises no interrupt:
  only counting does;
- port 0x61 bit 4 (refresh) toggles every 15.085 us of guest time, as the ISA refresh did;
- periodic edges the host timer thread reaches more than a period late are dropped (the
  ``ClockEventDevice`` policy: one interrupt, never a burst), and an edge raised while the one
  before is still pending in the guest's LAPIC merges with it: a guest that counts ticks
  falls behind under host load. KVM's PIT2 re-injects lost ticks when the guest EOIs the
  last; user space cannot see the EOI of an edge-triggered pin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tickless.devices.bus import BusDevice
from tickless.devices.device import Device, MachineContext, register_device
from tickless.devices.i8254 import Channel, edge_index, edge_time_ns
from tickless.guest.abi import MIN_PERIOD_NS, PIT_GATE_PORT, PIT_GSI, PIT_PORT, PIT_PORTS
from tickless.kvm.vcpu import Vcpu
from tickless.timers.clockevents import ClockEventDevice
from tickless.timers.hrtimer import TimerBase
from tickless.timers.timeline import Timeline

CONTROL = PIT_PORT + 3
READ_BACK = 3  # select counter field 3 in a control word
GATE2, SPEAKER, REFRESH, OUT2 = 0x01, 0x02, 0x10, 0x20
REFRESH_HALF_PERIOD_NS = 15_085  # the ISA DRAM refresh request toggled bit 4 this often
MIN_PERIOD_EDGES = -(-MIN_PERIOD_NS * 1_193_182 // 1_000_000_000)  # 12 edges = 10.06 us


@dataclass(frozen=True)
class EdgeGrid:
    """Channel 0's interrupts in mode 2/3: edges ``load + m * step`` for m >= 1."""

    load_edge: int
    step: int

    def index_after(self, ns: int) -> int:
        return max(1, (edge_index(ns) - self.load_edge) // self.step + 1)

    def time_ns(self, index: int) -> int:
        return edge_time_ns(self.load_edge + index * self.step)


@dataclass
class PitStats:
    control_words: int = 0
    irqs: int = 0  # rising edges of OUT0 raised on GSI 0
    clamped: int = 0  # periodic programmings faster than MIN_PERIOD_NS


class I8254(BusDevice):
    """The three counters and port 0x61 on ``timeline``'s clock; ``raise_irq0`` is a rising
    edge of OUT0 (called on the host timer thread, or on the vCPU's when already due)."""

    name = "i8254 pit"

    def __init__(
        self, timeline: Timeline, timers: TimerBase, raise_irq0: Callable[[], None], name: str
    ) -> None:
        self.timeline = timeline
        self.raise_irq0 = raise_irq0
        self.channels = [Channel(gate=True), Channel(gate=True), Channel(gate=False)]
        self.port61 = 0  # bits 0-3 as written (gate 2, speaker, parity/IOCHK enables)
        self.stats = PitStats()
        self.clockevent = ClockEventDevice(timeline.clock, timers, self._irq0, name=f"{name}-pit")

    def now_ns(self) -> int:
        return self.timeline.now_ns()

    # --- the bus ---------------------------------------------------------------------------

    def io_write(self, port: int, data: bytes, vcpu: Vcpu) -> None:
        """A wide ``out`` reaches the next ports too, as the ISA bus splits it; a byte past
        the device's ports goes nowhere."""
        for i, value in enumerate(data):
            self.write(port + i, value, self.now_ns())

    def io_read(self, port: int, size: int, vcpu: Vcpu) -> bytes:
        now = self.now_ns()
        return bytes(self.read(port + i, now) for i in range(size))

    # --- the chip, at a given guest time (tests drive these directly) ----------------------

    def write(self, port: int, value: int, now_ns: int) -> None:
        value &= 0xFF
        if PIT_PORT <= port < CONTROL:
            index = port - PIT_PORT
            if self.channels[index].write(value, now_ns) and index == 0:
                self._schedule(now_ns)
        elif port == CONTROL:
            self._control(value, now_ns)
        elif port == PIT_GATE_PORT:
            self.port61 = value & 0x0F
            self.channels[2].set_gate(bool(value & GATE2), now_ns)  # OUT2 raises no IRQ

    def read(self, port: int, now_ns: int) -> int:
        if PIT_PORT <= port < CONTROL:
            return self.channels[port - PIT_PORT].read(now_ns)
        if port == PIT_GATE_PORT:
            refresh = REFRESH if (now_ns // REFRESH_HALF_PERIOD_NS) & 1 else 0
            out2 = OUT2 if self.channels[2].out(now_ns) else 0
            return self.port61 | refresh | out2
        return 0xFF  # the control port is write-only: the bus floats

    def _control(self, value: int, now_ns: int) -> None:
        self.stats.control_words += 1
        select = value >> 6
        if select == READ_BACK:
            latch_count, latch_status = not value & 0x20, not value & 0x10
            for i in range(3):
                if value & (2 << i):
                    self.channels[i].read_back(latch_count, latch_status, now_ns)
            return
        access = (value >> 4) & 3
        channel = self.channels[select]
        if access == 0:
            channel.latch(now_ns)
            return
        channel.program(access, (value >> 1) & 7, bool(value & 1))
        if select == 0:
            self._schedule(now_ns)

    # --- channel 0's interrupt -------------------------------------------------------------

    def _schedule(self, now_ns: int) -> None:
        """Arm the host timer for channel 0's next rising edge(s) after a change."""
        ch = self.channels[0]
        edge = ch.next_rising_edge(now_ns)
        if edge is None or ch.load_edge is None:
            self.clockevent.shutdown()
        elif ch.periodic:
            step = ch.count * -(-MIN_PERIOD_EDGES // ch.count)
            if step != ch.count:
                self.stats.clamped += 1
            grid = EdgeGrid(ch.load_edge, step)
            self.clockevent.set_periodic_grid(grid, self.timeline.read_ticks())
        elif self.clockevent.set_deadline(edge_time_ns(edge), self.timeline.read_ticks()) != 0:
            self.clockevent.shutdown()  # already due (or absurdly far): raise it now
            self._irq0(0)

    def _irq0(self, now_ticks: int) -> None:
        """A rising edge of OUT0: an edge on GSI 0 (runs on the host timer thread)."""
        self.stats.irqs += 1
        self.raise_irq0()


@register_device
class PitDevice(Device):
    """The 8254 for zoo guests (``GuestConfig.zoo``); else KVM's PIT2 or none."""

    def __init__(self, pit: I8254) -> None:
        self.pit = pit

    @classmethod
    def create(cls, ctx: MachineContext) -> PitDevice | None:
        if not ctx.config.zoo:
            return None

        def raise_irq0() -> None:
            ctx.member.wake()  # it runs now: the group may not warp until it blocks again
            ctx.raise_gsi(PIT_GSI)

        device = cls(I8254(ctx.timeline, ctx.timers, raise_irq0, ctx.name))
        ctx.bus.add_io(PIT_PORT, PIT_PORTS, device.pit)
        ctx.bus.add_io(PIT_GATE_PORT, 1, device.pit)
        ctx.timeline.subscribe(device.pit.clockevent)
        return device

    def stop(self, now_ticks: int) -> None:
        self.pit.clockevent.shutdown()

    def close(self) -> None:
        self.pit.timeline.unsubscribe(self.pit.clockevent)

    def summary(self) -> str:
        """Counts for the record's notes."""
        s = self.pit.stats
        note = f"pit: i8254 raised {s.irqs} interrupts on GSI 0, {s.control_words} control words"
        if s.clamped:
            note += (
                f"; {s.clamped} periodic programmings faster than {MIN_PERIOD_NS // 1000} us "
                f"interrupted on every k-th edge only"
            )
        return note
