"""The i8254 (``devices/pit.py``, ``devices/i8254.py``) against the datasheet's arithmetic,
driven port by port at chosen guest times on a real ``Timeline`` and a real ``TimerQueue``
(host ticks are ns here; the queue's timers run when the test says the host woke). The
small guest on KVM runs it in ``test_kvm_pit.py``."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickless.devices.i8254 import bcd_decode, bcd_encode, edge_index, edge_time_ns
from tickless.devices.pit import I8254, MIN_PERIOD_EDGES
from tickless.guest.abi import MIN_PERIOD_NS, PIT_GATE_PORT, PIT_HZ, pit_count
from tickless.results.record import record_interval_ns, spec_deadlines_ns
from tickless.results.spec import MeasureSpec
from tickless.timers.hrtimer import TimerQueue
from tickless.timers.timeline import Timeline

CH0, CH1, CH2, CONTROL = 0x40, 0x41, 0x42, 0x43
START_TICKS = 7_000_000_000  # guest time 0 is at this host tick (ticks are ns)
CLOCK_NS = 10**9 / PIT_HZ  # one input clock, ~838 ns


class Rig:
    """One PIT on a timeline; ``irqs`` holds the guest ns of each rising edge of OUT0."""

    def __init__(self, rate: Fraction | int = 1) -> None:
        self.ticks = START_TICKS
        self.timeline = Timeline(10**9, lambda: self.ticks, rate)
        self.queue = TimerQueue()
        self.irqs: list[int] = []
        self.pit = I8254(self.timeline, self.queue, self._irq, "test")
        self.timeline.subscribe(self.pit.clockevent)

    def _irq(self) -> None:
        self.irqs.append(self.timeline.now_ns())

    def now(self) -> int:
        return self.timeline.now_ns()

    def run_to_ticks(self, target: int) -> None:
        """An ideal host: it wakes at every armed expiry up to ``target`` and runs it."""
        while (wake := self.queue.next_wakeup()) is not None and wake <= target:
            self.ticks = max(self.ticks, wake)
            for timer in self.queue.expire(self.ticks):
                timer.callback(self.ticks)
        self.ticks = max(self.ticks, target)

    def run_to(self, guest_ns: int) -> None:
        """Run until the guest's clock reads ``guest_ns`` (not frozen)."""
        self.run_to_ticks(self.timeline.clock.ticks_at_or_after(guest_ns))
        assert self.now() == guest_ns

    def out(self, port: int, value: int) -> None:
        self.pit.write(port, value, self.now())

    def inb(self, port: int) -> int:
        return self.pit.read(port, self.now())

    def load(self, port: int, count: int) -> None:
        self.out(port, count & 0xFF)
        self.out(port, count >> 8 & 0xFF)


def word(rig: Rig, port: int) -> int:
    lo = rig.inb(port)
    return lo | rig.inb(port) << 8


# --- mode 0: interrupt on terminal count ------------------------------------------------------


@pytest.mark.parametrize("phase_ns", [0, 1, 419, 837])
def test_mode0_out_rises_n_clocks_after_the_edge_that_loads_the_count(phase_ns: int) -> None:
    rig, n = Rig(), 1193
    write_ns = 1_000_000_000 + phase_ns
    rig.run_to(write_ns)
    rig.out(CONTROL, 0x30)  # channel 0, lobyte/hibyte, mode 0, binary
    assert not rig.pit.channels[0].out(rig.now())  # low from the control word
    rig.load(CH0, n)
    rise_ns = edge_time_ns(edge_index(write_ns) + 1 + n)
    assert n * CLOCK_NS < rise_ns - write_ns <= (n + 1) * CLOCK_NS + 1  # the datasheet's N+1
    ch = rig.pit.channels[0]
    assert not ch.out(rise_ns - 1) and ch.out(rise_ns) and ch.out(rise_ns + 10**7)
    load = edge_index(write_ns) + 1
    for j in (0, 1, 2, 600, n - 1, n):
        assert ch.value(edge_time_ns(load + j)) == n - j
    assert ch.value(edge_time_ns(load + n + 1)) == 0xFFFF  # it counts on, OUT stays high
    rig.run_to(rise_ns + 5_000_000)
    assert rig.irqs == [rise_ns]  # once, at the edge, never before it


def test_mode0_writing_the_first_byte_stops_the_count_and_its_interrupt() -> None:
    rig = Rig()
    rig.out(CONTROL, 0x30)
    rig.load(CH0, 1000)
    rig.run_to(500 * 838)
    held = rig.pit.channels[0].value(rig.now())
    rig.out(CH0, 0x10)  # half of a new count
    rig.run_to(5_000_000)
    assert rig.pit.channels[0].value(rig.now()) == held and rig.irqs == []
    rig.out(CH0, 0x00)  # the high byte loads 0x0010
    load = edge_index(rig.now()) + 1
    rig.run_to(10_000_000)
    assert rig.irqs == [edge_time_ns(load + 0x10)]


def test_a_count_of_zero_is_65536_clocks_and_10000_in_bcd() -> None:
    rig = Rig()
    rig.out(CONTROL, 0x30)
    rig.load(CH0, 0)
    load = edge_index(rig.now()) + 1
    rig.run_to(100_000_000)
    assert rig.irqs == [edge_time_ns(load + 65536)]
    rig.out(CONTROL, 0xB1)  # channel 2, lobyte/hibyte, mode 0, BCD
    rig.out(PIT_GATE_PORT, 1)
    rig.load(CH2, 0)
    load2 = edge_index(rig.now()) + 1
    rig.run_to(edge_time_ns(load2 + 1))
    assert word(rig, CH2) == 0x9999  # 10000 - 1, in BCD
    rig.run_to(edge_time_ns(load2 + 10_000) - 1)
    assert not rig.inb(PIT_GATE_PORT) & 0x20
    rig.run_to(edge_time_ns(load2 + 10_000))
    assert rig.inb(PIT_GATE_PORT) & 0x20


def test_bcd_counts_and_reads_in_decimal_digits() -> None:
    assert bcd_decode(0x3412) == 3412 and bcd_encode(3410) == 0x3410
    assert bcd_decode(0x00FA) == 15 * 10 + 10  # a digit above 9 counts as its binary value
    rig = Rig()
    rig.out(CONTROL, 0x35)  # channel 0, lobyte/hibyte, mode 2, BCD
    rig.load(CH0, 0x3412)
    load = edge_index(rig.now()) + 1
    rig.run_to(edge_time_ns(load + 2))
    assert word(rig, CH0) == 0x3410
    rig.run_to(edge_time_ns(load + 2 * 3412))
    assert rig.irqs == [edge_time_ns(load + 3412), edge_time_ns(load + 2 * 3412)]


# --- the periodic modes -------------------------------------------------------------------


def test_mode2_interrupts_on_the_exact_grid_with_no_drift() -> None:
    rig, n = Rig(), pit_count(1_000_000)
    assert n == 1193
    rig.run_to(123_456_789)
    rig.out(CONTROL, 0x34)
    rig.load(CH0, n)
    load = edge_index(rig.now()) + 1
    rig.run_to(edge_time_ns(load + 1000 * n))
    assert rig.irqs == [edge_time_ns(load + m * n) for m in range(1, 1001)]
    assert abs(rig.irqs[-1] - rig.irqs[0] - 999 * n * 10**9 / PIT_HZ) < 1  # 999847.33 ns each
    ch = rig.pit.channels[0]
    low = edge_time_ns(load + 5 * n - 1)  # OUT low for one clock before each reload
    assert ch.out(low - 1) and not ch.out(low) and ch.out(edge_time_ns(load + 5 * n))
    assert ch.value(low) == 1 and ch.value(edge_time_ns(load + 5 * n)) == n


@pytest.mark.parametrize("n", [10, 11])
def test_mode3_is_a_square_wave(n: int) -> None:
    rig = Rig()
    rig.out(PIT_GATE_PORT, 1)
    rig.out(CONTROL, 0xB6)  # channel 2, lobyte/hibyte, mode 3
    rig.load(CH2, n)
    load = edge_index(rig.now()) + 1
    ch = rig.pit.channels[2]
    levels = [ch.out(edge_time_ns(load + j)) for j in range(2 * n)]
    high = (n + 1) // 2
    assert levels == ([True] * high + [False] * (n - high)) * 2
    if n % 2 == 0:
        assert [ch.value(edge_time_ns(load + j)) for j in range(n)] == [10, 8, 6, 4, 2] * 2


def test_mode4_strobes_one_clock_low_and_interrupts_after_it() -> None:
    rig, n = Rig(), 100
    rig.out(CONTROL, 0x38)
    rig.load(CH0, n)
    load = edge_index(rig.now()) + 1
    ch = rig.pit.channels[0]
    assert ch.out(edge_time_ns(load + n - 1)) and not ch.out(edge_time_ns(load + n))
    assert ch.out(edge_time_ns(load + n + 1))
    rig.run_to(1_000_000)
    assert rig.irqs == [edge_time_ns(load + n + 1)]


def test_a_tiny_periodic_count_interrupts_on_every_kth_edge_only() -> None:
    """Count 2 in mode 2 is ~600 kHz: the host raises every 6th edge (10.06 us apart)."""
    rig = Rig()
    rig.out(CONTROL, 0x34)
    rig.load(CH0, 2)
    load = edge_index(rig.now()) + 1
    rig.run_to(1_000_000)
    step = 2 * -(-MIN_PERIOD_EDGES // 2)
    assert step * 10**9 / PIT_HZ >= MIN_PERIOD_NS
    assert rig.irqs == [edge_time_ns(load + m * step) for m in range(1, len(rig.irqs) + 1)]
    assert len(rig.irqs) == (edge_index(1_000_000) - load) // step
    assert rig.pit.stats.clamped == 1
    assert rig.pit.channels[0].value(edge_time_ns(load + 1)) == 1  # the count is still exact


def test_a_control_word_stops_channel_0() -> None:
    rig = Rig()
    rig.out(CONTROL, 0x34)
    rig.load(CH0, 1193)
    rig.run_to(3_000_000)
    fired = len(rig.irqs)
    rig.out(CONTROL, 0x30)
    rig.run_to(50_000_000)
    assert len(rig.irqs) == fired == 2 and len(rig.queue) == 0


# --- reading: latch, read-back, flip-flops -------------------------------------------------


def test_the_latch_holds_the_count_until_both_bytes_are_read() -> None:
    rig = Rig()
    rig.out(CONTROL, 0x34)
    rig.load(CH0, 50_000)
    load = edge_index(rig.now()) + 1
    rig.run_to(edge_time_ns(load + 1234))
    rig.out(CONTROL, 0x00)  # latch channel 0
    rig.run_to(edge_time_ns(load + 5000))
    rig.out(CONTROL, 0x00)  # ignored: the first latch is not read yet
    assert word(rig, CH0) == 50_000 - 1234
    assert word(rig, CH0) == 50_000 - 5000  # live again


def test_lobyte_and_hibyte_reads_alternate_and_a_control_word_resets_them() -> None:
    rig = Rig()
    rig.out(CONTROL, 0x30)
    rig.load(CH0, 0x1234)
    rig.out(CONTROL, 0x10)  # lobyte only: the count waits for a new write
    rig.out(CH0, 0x56)
    load = edge_index(rig.now()) + 1
    rig.run_to(edge_time_ns(load + 1))
    assert rig.inb(CH0) == 0x55 and rig.inb(CH0) == 0x55
    rig.out(CONTROL, 0x34)
    rig.load(CH0, 0x3000)
    load = edge_index(rig.now()) + 1
    rig.run_to(edge_time_ns(load + 0x10))
    assert rig.inb(CH0) == 0xF0  # the low byte first
    rig.out(CONTROL, 0x34)  # a control word resets the flip-flop (and stops the count)
    rig.load(CH0, 0x3000)
    assert rig.inb(CH0) == 0x00 and rig.inb(CH0) == 0x30


def test_read_back_latches_status_then_count_of_the_selected_channels() -> None:
    rig = Rig()
    rig.out(CONTROL, 0x34)  # channel 0: lobyte/hibyte, mode 2
    rig.out(CONTROL, 0xB0)  # channel 2: lobyte/hibyte, mode 0, gate low
    rig.load(CH0, 1000)
    rig.load(CH2, 500)
    rig.out(CONTROL, 0xC0 | 0b1010)  # status and count of channels 0 and 2
    # before the load edge the count is null; mode 2's OUT is high, mode 0's low
    assert rig.inb(CH0) == 0x80 | 0x40 | 0x30 | 2 << 1
    assert word(rig, CH0) == 1000
    assert rig.inb(CH2) == 0x40 | 0x30 | 0 << 1
    assert word(rig, CH2) == 500
    load = edge_index(rig.now()) + 1
    rig.run_to(edge_time_ns(load + 10))
    rig.out(CONTROL, 0xE0 | 0b0010)  # status only, channel 0
    rig.out(CONTROL, 0xD0 | 0b0010)  # count only
    assert rig.inb(CH0) == 0x80 | 0x30 | 2 << 1  # loaded: null count clear
    assert word(rig, CH0) == 990


# --- channel 2's gate and OUT2 at port 0x61: what Linux's TSC calibration polls --------------


def test_linux_pit_calibrate_tsc_loop_sees_out2_rise_after_its_latch() -> None:
    """arch/x86/kernel/tsc.c pit_calibrate_tsc(): gate 2 high, speaker off, mode 0 with a
    50 ms latch, then poll port 0x61 bit 5 (each poll an exit, ~12 us of guest time)."""
    rig, latch, poll_ns = Rig(), PIT_HZ // 20, 12_000
    rig.run_to(2_000_000_333)
    rig.out(PIT_GATE_PORT, (rig.inb(PIT_GATE_PORT) & ~0x02) | 0x01)
    rig.out(CONTROL, 0xB0)
    rig.out(CH2, latch & 0xFF)
    rig.out(CH2, latch >> 8)
    rise_ns = edge_time_ns(edge_index(rig.now()) + 1 + latch)
    polls = 0
    while not rig.inb(PIT_GATE_PORT) & 0x20:
        polls += 1
        assert polls < 10_000, "OUT2 never rose"
        rig.run_to(rig.now() + poll_ns)
    assert rise_ns <= rig.now() < rise_ns + poll_ns
    assert rig.irqs == []  # channel 2 has no interrupt


def test_linux_quick_pit_calibrate_sees_the_msb_count_down() -> None:
    """quick_pit_calibrate(): mode 0 from 0xffff, then read lo, hi (no latch) and expect
    the MSB to fall by one every 256 clocks."""
    rig = Rig()
    rig.out(PIT_GATE_PORT, 0x01)
    rig.out(CONTROL, 0xB0)
    rig.load(CH2, 0xFFFF)
    load = edge_index(rig.now()) + 1
    seen = []
    for k in range(0, 256 * 20, 97):
        rig.run_to(edge_time_ns(load + k))
        rig.inb(CH2)
        seen.append(rig.inb(CH2))
    assert seen == [(0xFFFF - k) >> 8 for k in range(0, 256 * 20, 97)]


def test_the_gate_pauses_mode0_and_retriggers_modes_1_and_5() -> None:
    rig = Rig()
    rig.out(PIT_GATE_PORT, 0x01)
    rig.out(CONTROL, 0xB0)
    rig.load(CH2, 1000)
    load = edge_index(rig.now()) + 1
    rig.run_to(edge_time_ns(load + 100))
    rig.out(PIT_GATE_PORT, 0x00)  # counting stops
    rig.run_to(edge_time_ns(load + 5000))
    assert word(rig, CH2) == 900 and not rig.inb(PIT_GATE_PORT) & 0x20
    rig.out(PIT_GATE_PORT, 0x01)  # and resumes at the next edge
    resume = edge_index(rig.now()) + 1
    ch = rig.pit.channels[2]
    assert not ch.out(edge_time_ns(resume + 899)) and ch.out(edge_time_ns(resume + 900))
    rig.out(CONTROL, 0xB2)  # mode 1: a rising gate triggers a one-shot low pulse
    rig.load(CH2, 50)
    assert rig.inb(PIT_GATE_PORT) & 0x20  # high until a trigger; the gate is already high
    rig.out(PIT_GATE_PORT, 0x00)
    rig.out(PIT_GATE_PORT, 0x01)
    trigger = edge_index(rig.now()) + 1
    assert not ch.out(edge_time_ns(trigger)) and ch.out(edge_time_ns(trigger + 50))
    rig.out(CONTROL, 0xBA)  # mode 5: a strobe 50 clocks after the trigger
    rig.load(CH2, 50)
    rig.out(PIT_GATE_PORT, 0x00)
    rig.out(PIT_GATE_PORT, 0x01)
    trigger = edge_index(rig.now()) + 1
    assert ch.out(edge_time_ns(trigger + 49)) and not ch.out(edge_time_ns(trigger + 50))


def test_port_61_keeps_its_low_bits_and_toggles_refresh_with_guest_time() -> None:
    rig = Rig()
    rig.out(PIT_GATE_PORT, 0xFF)
    assert rig.inb(PIT_GATE_PORT) & 0x0F == 0x0F
    seen = set()
    for _ in range(8):
        rig.run_to(rig.now() + 15_085)
        seen.add(rig.inb(PIT_GATE_PORT) & 0x10)
    assert seen == {0, 0x10}


# --- the timeline: dilation and freeze follow ------------------------------------------------


def test_a_dilated_timeline_counts_in_guest_time() -> None:
    rig = Rig(rate=Fraction(1, 2))  # the guest lives at half speed: 2 host ns per guest ns
    rig.out(CONTROL, 0x34)
    rig.load(CH0, 1193)
    load = edge_index(rig.now()) + 1
    rig.run_to_ticks(START_TICKS + 2 * edge_time_ns(load + 3 * 1193))
    assert rig.irqs == [edge_time_ns(load + m * 1193) for m in (1, 2, 3)]
    assert rig.pit.channels[0].value(rig.now()) == 1193


def test_a_frozen_timeline_stops_the_count_and_its_interrupts() -> None:
    rig = Rig()
    rig.out(CONTROL, 0x30)
    rig.load(CH0, 10_000)
    load = edge_index(rig.now()) + 1
    rig.run_to(edge_time_ns(load + 4000))
    rig.timeline.freeze()
    rig.run_to_ticks(rig.ticks + 50_000_000)  # 50 ms of host time, none of guest time
    assert word(rig, CH0) == 6000 and rig.irqs == []
    rig.timeline.thaw()
    rig.run_to(edge_time_ns(load + 20_000))
    assert rig.irqs == [edge_time_ns(load + 10_000)]


# --- an untrusted guest ------------------------------------------------------------------------

ports = st.sampled_from([CH0, CH1, CH2, CONTROL, PIT_GATE_PORT])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(ports, st.integers(0, 255), st.integers(0, 50_000), st.booleans())))
def test_any_sequence_of_accesses_is_handled_and_never_storms(
    accesses: list[tuple[int, int, int, bool]],
) -> None:
    """Random and boundary values on every port, at random times: no exception, at most one
    host timer, and channel 0 never interrupts more often than every MIN_PERIOD_NS."""
    rig = Rig()
    start_ns = rig.now()
    for port, value, wait_ns, is_read in accesses:
        rig.run_to(rig.now() + wait_ns)
        if is_read:
            assert 0 <= rig.inb(port) <= 0xFF
        else:
            rig.out(port, value)
        assert len(rig.queue) <= 1
    rig.run_to(rig.now() + 2_000_000)
    assert rig.irqs == sorted(rig.irqs)
    # at most one per MIN_PERIOD_NS, and one more per write (a new one-shot may come sooner)
    writes = sum(1 for _, _, _, is_read in accesses if not is_read)
    assert len(rig.irqs) <= writes + (rig.now() - start_ns) // MIN_PERIOD_NS + 1


def test_wide_accesses_reach_the_next_ports() -> None:
    rig = Rig()
    rig.out(CONTROL, 0x30)
    rig.pit.io_write(CH0, bytes([0x34, 0x12]), None)  # type: ignore[arg-type]
    assert rig.pit.channels[0].has_count is False  # both bytes went to two channels
    assert rig.pit.io_read(CONTROL, 2, None) == b"\xff\xff"  # type: ignore[arg-type]


# --- the record of a periodic PIT run -------------------------------------------------------


def test_periodic_pit_deadlines_are_the_edges_after_the_guests_clock_read() -> None:
    """Interrupt i cannot come before edge L + i*N, L > the edge of the guest's read before
    the count write (timestamps[0]); other paths keep their deadlines."""
    stamps = np.array([5_000_000_123, 5_001_000_000, 5_002_000_000], dtype=np.int64)
    spec = MeasureSpec(timer="pit", mode="periodic", interval_ns=1_000_000, count=2)
    first = edge_index(5_000_000_123) + 1
    expected = [edge_time_ns(first + 1193), edge_time_ns(first + 2 * 1193)]
    assert spec_deadlines_ns(spec, stamps).tolist() == expected
    assert record_interval_ns(spec) == 999_847
    one_shot = MeasureSpec(timer="pit", interval_ns=1_000_000, count=2)
    assert spec_deadlines_ns(one_shot, stamps).tolist() == [5_001_000_123, 5_002_000_000]
    assert record_interval_ns(one_shot) == 1_000_000
    sim = MeasureSpec(timer="pit", mode="periodic", interval_ns=1_000_000, count=2, backend="sim")
    assert record_interval_ns(sim) == 1_000_000
