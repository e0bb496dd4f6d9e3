"""The CMOS RTC (devices/rtc.py): its registers as functions of guest time, driven through
the ports' logic at chosen guest times, and its interrupts armed on a real ``Timeline``
with the bare hrtimer queue (dilated and frozen)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, cast

import pytest

from tickless.devices.config import GuestConfig
from tickless.devices.device import MachineContext
from tickless.devices.rtc import RtcDevice, RtcPorts
from tickless.devices.rtc_chip import (
    A_UIP,
    B_24H,
    B_AIE,
    B_DM,
    B_PIE,
    B_SET,
    B_UIE,
    C_AF,
    C_IRQF,
    C_PF,
    C_UF,
    CENTURY,
    HOUR,
    HOUR_ALARM,
    MDAY,
    MIN,
    MIN_ALARM,
    MONTH,
    REG_A,
    REG_B,
    REG_C,
    REG_D,
    SEC,
    SEC_ALARM,
    WDAY,
    YEAR,
    Mc146818,
    periodic_rate_hz,
)
from tickless.guest.abi import RTC_GSI, RTC_PORT
from tickless.timers.hrtimer import TimerQueue
from tickless.timers.timeline import Timeline

S = 1_000_000_000
# 2026-12-04 21:59:58.750 UTC, a Friday
EPOCH_S = int(datetime.datetime(2026, 12, 4, 21, 59, 58, tzinfo=datetime.UTC).timestamp())
EPOCH_NS = EPOCH_S * S + 750_000_000


class Chip:
    """A chip and the interrupts it raised, accessed at explicit guest times."""

    def __init__(self, epoch_ns: int = EPOCH_NS) -> None:
        self.irqs = 0
        self.chip = Mc146818(epoch_ns, 0, self._irq)

    def _irq(self) -> None:
        self.irqs += 1

    def read(self, reg: int, now_ns: int) -> int:
        self.chip.write_index(reg)
        return self.chip.read_data(now_ns)

    def write(self, reg: int, value: int, now_ns: int) -> None:
        self.chip.write_index(reg)
        self.chip.write_data(value, now_ns)


def clock_bytes(c: Chip, now_ns: int) -> list[int]:
    return [c.read(r, now_ns) for r in (SEC, MIN, HOUR, WDAY, MDAY, MONTH, YEAR, CENTURY)]


def test_power_on_registers_bcd_24h() -> None:
    c = Chip()
    assert clock_bytes(c, 0) == [0x58, 0x59, 0x21, 0x06, 0x04, 0x12, 0x26, 0x20]
    assert c.read(REG_A, 0) == 0x26 and c.read(REG_B, 0) == B_24H
    assert c.read(REG_D, 0) == 0x80 and c.read(REG_C, 0) == 0


def test_binary_and_12_hour_encodings_of_chosen_times() -> None:
    c = Chip()
    c.write(REG_B, B_DM | B_24H, 0)
    assert clock_bytes(c, 0) == [58, 59, 21, 6, 4, 12, 26, 20]
    c.write(REG_B, B_DM, 0)  # binary, 12 h: 21 h is 9 PM
    assert c.read(HOUR, 0) == 0x80 | 9
    c.write(REG_B, 0, 0)  # BCD, 12 h
    assert c.read(HOUR, 0) == 0x89
    # 2.25 s later the day has turned: 22:00:01 is 10 PM, BCD 0x10 with the PM bit
    assert c.read(HOUR, 2_250_000_000) == 0x90 and c.read(MIN, 2_250_000_000) == 0
    # midnight and noon in 12 h mode: 12 AM (0x12) and 12 PM (0x92)
    for hour, want in ((0, 0x12), (12, 0x92)):
        m = Chip(int(datetime.datetime(2030, 1, 1, hour, tzinfo=datetime.UTC).timestamp()) * S)
        m.write(REG_B, 0, 0)
        assert m.read(HOUR, 0) == want


def test_the_time_follows_guest_time_and_the_date_turns() -> None:
    c = Chip(int(datetime.datetime(2099, 12, 31, 23, 59, 59, tzinfo=datetime.UTC).timestamp()) * S)
    assert clock_bytes(c, 999_999_999)[:3] == [0x59, 0x59, 0x23]
    assert clock_bytes(c, S) == [0, 0, 0, 0x06, 0x01, 0x01, 0x00, 0x21]  # Friday 2100-01-01


def test_update_in_progress_window_at_chosen_guest_times() -> None:
    c = Chip()  # the next update is 250 ms after guest time 0
    update = 250_000_000
    window = 244_140_625  # 8 cycles of 32768 Hz, in ns * 1000 (exactly 244140.625 ns)
    assert not c.read(REG_A, 0) & A_UIP
    assert not c.read(REG_A, update - window // 1000 - 1) & A_UIP
    assert c.read(REG_A, update - window // 1000) & A_UIP  # the window starts
    assert c.read(REG_A, update - 1) & A_UIP
    assert c.read(SEC, update - 1) == 0x58 and c.read(SEC, update) == 0x59
    assert not c.read(REG_A, update) & A_UIP  # the update is done
    c.write(REG_B, B_SET | B_24H, update + S - 1000)  # SET: no updates, no UIP
    assert not c.read(REG_A, update + S - 1000) & A_UIP


def test_register_c_is_read_to_clear_and_flags_follow_their_edges() -> None:
    c = Chip()
    assert c.read(REG_C, 0) == 0
    assert c.read(REG_C, 249_999_999) == C_PF  # 1024 Hz edges, no update yet
    assert c.read(REG_C, 249_999_999) == 0
    assert c.read(REG_C, 250_000_000) == C_PF | C_UF  # the update, and a 1024 Hz edge
    assert c.read(REG_C, 250_000_000) == 0
    # 1024 Hz edges every 976562.5 ns from the second's start: the next at 250.9765625 ms
    assert c.read(REG_C, 250_976_562) == 0
    assert c.read(REG_C, 250_976_563) == C_PF
    c.write(REG_A, 0x20, 250_976_563)  # RS 0: no periodic flag
    assert c.read(REG_C, 251_000_000 + S) == C_UF
    assert c.irqs == 0  # no enable, no interrupt


def test_interrupt_needs_register_c_read_to_rise_again() -> None:
    c = Chip()
    c.write(REG_B, B_24H | B_PIE, 0)
    c.chip.sync(1_000_000)
    assert c.irqs == 1 and c.chip.next_irq_ns(1_000_000) is None  # pending: nothing armed
    c.chip.sync(50_000_000)
    assert c.irqs == 1 and c.chip.periodic_missed > 40
    assert c.read(REG_C, 50_000_000) == C_IRQF | C_PF
    nxt = c.chip.next_irq_ns(50_000_000)
    assert nxt is not None and nxt > 50_000_000
    c.chip.sync(nxt - 1)
    assert c.irqs == 1
    c.chip.sync(nxt)
    assert c.irqs == 2


def test_enabling_a_set_flag_raises_at_once() -> None:
    c = Chip()
    c.chip.sync(300_000_000)  # UF set, no enable
    c.write(REG_B, B_24H | B_UIE, 300_000_000)
    assert c.irqs == 1 and c.read(REG_C, 300_000_000) == C_IRQF | C_UF | C_PF


def test_divider_reset_release_starts_the_grid_and_the_first_update_half_a_second_later() -> None:
    c = Chip()
    c.write(REG_A, 0x76, 10_000)  # divider reset, 1024 Hz selected: nothing moves
    c.write(REG_B, B_24H | B_PIE | B_UIE, 20_000)
    assert c.chip.next_irq_ns(5 * S) is None
    assert c.read(REG_C, 5 * S) == 0 and clock_bytes(c, 5 * S)[0] == 0x58
    release = 7 * S + 123
    c.write(REG_A, 0x26, release)
    assert c.read(REG_C, release) == 0
    period = Fraction(S, 1024)
    for k in (1, 2, 3, 512):
        due = c.chip.next_irq_ns(release + -(-period * (k - 1) // 1))
        assert due == release + -(-period * k // 1)  # ceil: never before the exact edge
    assert c.read(SEC, release + S // 2 - 1) == 0x58
    assert c.read(SEC, release + S // 2) == 0x59  # the first update: half a second on


def test_reserved_divider_values_hold_the_chain_and_rate_zero_is_none() -> None:
    c = Chip()
    c.write(REG_B, B_24H | B_PIE, 0)
    c.read(REG_C, 0)
    c.write(REG_A, 0x46, 100)  # DV 100: a test mode, the chain stops
    assert c.chip.next_irq_ns(100) is None and c.read(REG_C, 10 * S) == 0
    assert clock_bytes(c, 10 * S)[0] == 0x58
    c.write(REG_A, 0x20, 10 * S)  # runs on from where it stopped; RS 0: no periodic edge
    assert c.chip.next_irq_ns(10 * S) is None
    c.write(REG_A, 0x21, 10 * S)  # RS 1: the 256 Hz quirk of the 32 kHz time base
    assert periodic_rate_hz(1) == 256 and periodic_rate_hz(2) == 128
    assert periodic_rate_hz(3) == 8192 and periodic_rate_hz(15) == 2
    due = c.chip.next_irq_ns(10 * S)
    assert due is not None and due - 10 * S <= S // 256


def test_set_holds_the_clock_while_the_guest_writes_and_rebases_it() -> None:
    c = Chip()
    c.write(REG_B, B_SET | B_24H | B_UIE, 0)
    assert c.read(REG_B, 0) == B_SET | B_24H  # SET clears UIE
    for reg, value in (
        (HOUR, 0x08),
        (MIN, 0x30),
        (SEC, 0x00),
        (MDAY, 0x29),
        (MONTH, 0x02),
        (YEAR, 0x28),
        (CENTURY, 0x20),
    ):
        c.write(reg, value, 0)
    assert c.read(SEC, 3 * S) == 0x00 and c.read(REG_C, 3 * S) & C_UF == 0  # no updates
    c.write(REG_B, B_24H, 3 * S)  # the clock runs from what was written, same phase
    assert c.chip.seconds(3 * S) == int(
        datetime.datetime(2028, 2, 29, 8, 30, tzinfo=datetime.UTC).timestamp()
    )
    assert c.read(SEC, 3 * S + 249_999_999) == 0x00 and c.read(SEC, 3 * S + 250_000_000) == 0x01
    assert c.read(WDAY, 3 * S) == 0x03  # 2028-02-29 is a Tuesday


def test_writing_a_time_register_while_running_rebases() -> None:
    c = Chip()
    c.write(MIN, 0x10, 100)
    assert clock_bytes(c, 100)[:3] == [0x58, 0x10, 0x21]
    assert c.read(SEC, 250_000_000) == 0x59  # the phase is kept


def test_alarm_with_dont_care_bytes() -> None:
    c = Chip()
    c.write(SEC_ALARM, 0x05, 0)
    c.write(MIN_ALARM, 0xC0, 0)
    c.write(HOUR_ALARM, 0xFF, 0)
    c.write(REG_B, B_24H | B_AIE, 0)
    due = c.chip.next_irq_ns(0)  # 22:00:05 is 6.25 s away
    assert due == 6_250_000_000
    c.chip.sync(due - 1)
    assert c.irqs == 0
    c.chip.sync(due)
    assert c.irqs == 1 and c.read(REG_C, due) == C_IRQF | C_AF | C_UF | C_PF
    assert c.chip.next_irq_ns(due) == due + 60 * S  # every minute
    c.write(HOUR_ALARM, 0x25, due)  # no valid hour: never
    assert c.chip.next_irq_ns(due) is None


def test_bad_writes_are_handled_as_the_chip_would() -> None:
    c = Chip()
    c.write(REG_C, 0xFF, 0)
    c.write(REG_D, 0x00, 0)
    assert c.read(REG_C, 0) == 0 and c.read(REG_D, 0) == 0x80
    c.write(REG_A, 0xFF, 0)  # UIP is read-only; DV 111 resets, RS 15
    assert c.read(REG_A, 0) == 0x7F
    c.write(MONTH, 0x99, 0)  # not a date: held bytes, normalized when the clock runs
    c.write(REG_A, 0x26, 0)
    assert c.chip.seconds(0) > EPOCH_S
    c.chip.write_index(0x8E)  # NMI mask bit: ignored, index 0x0E is plain RAM
    c.chip.write_data(0x5A, 0)
    assert c.chip.nmi_masked and c.read(0x0E, 0) == 0x5A


# --- the device on a timeline, its edges armed on the hrtimer queue ---------------------------


class Ticks:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


@dataclass
class Ctx:
    timeline: Timeline
    timers: TimerQueue
    config: GuestConfig = field(default_factory=lambda: GuestConfig(rtc_epoch_ns=EPOCH_NS))
    name: str = "test"
    gsis: list[int] = field(default_factory=list)

    @property
    def clock(self) -> Any:
        return self.timeline.clock

    def raise_gsi(self, gsi: int) -> None:
        self.gsis.append(gsi)


def device(rate: Fraction | int = 1) -> tuple[RtcDevice, Ctx, Ticks, RtcPorts]:
    ticks = Ticks()
    ctx = Ctx(Timeline(S, ticks, rate), TimerQueue())
    dev = RtcDevice(cast(MachineContext, ctx), EPOCH_NS)
    ctx.timeline.subscribe(dev.clockevent)
    return dev, ctx, ticks, RtcPorts(dev)


def out(ports: RtcPorts, reg: int, value: int) -> None:
    ports.io_write(RTC_PORT, bytes([reg]), cast(Any, None))
    ports.io_write(RTC_PORT + 1, bytes([value]), cast(Any, None))


def inb(ports: RtcPorts, reg: int) -> int:
    ports.io_write(RTC_PORT, bytes([reg]), cast(Any, None))
    return ports.io_read(RTC_PORT + 1, 1, cast(Any, None))[0]


def run_timers(ctx: Ctx, ticks: Ticks, until: int) -> None:
    """Run the queue's expiries in order up to host tick ``until``."""
    while (wake := ctx.timers.next_wakeup()) is not None and wake <= until:
        ticks.now = max(ticks.now, wake)
        for timer in ctx.timers.expire(ticks.now):
            timer.callback(ticks.now)
    ticks.now = max(ticks.now, until)


@pytest.mark.parametrize("rate", [Fraction(1), Fraction(1, 2), Fraction(4)])
def test_periodic_interrupts_follow_a_dilated_timeline(rate: Fraction) -> None:
    _dev, ctx, ticks, ports = device(rate)
    out(ports, REG_A, 0x76)
    out(ports, REG_B, B_24H | B_PIE)
    out(ports, REG_A, 0x26)  # release at guest 0
    arrivals = []
    for _ in range(5):
        wake = ctx.timers.next_wakeup()
        assert wake is not None
        run_timers(ctx, ticks, wake)
        arrivals.append(ctx.timeline.now_ns())
        assert inb(ports, REG_C) == C_IRQF | C_PF
    assert ctx.gsis == [RTC_GSI] * 5
    edges = [-(-Fraction(S, 1024) * k // 1) for k in range(1, 6)]
    assert all(a >= e for a, e in zip(arrivals, edges, strict=True))  # never early
    assert all(a - e <= 4 for a, e in zip(arrivals, edges, strict=True))  # pvclock rounding
    assert ticks.now == pytest.approx(float(edges[-1] / rate), abs=10)


def test_no_host_timer_while_irqf_pending_even_at_8192_hz() -> None:
    dev, ctx, ticks, ports = device()
    out(ports, REG_A, 0x23)  # 8192 Hz
    out(ports, REG_B, B_24H | B_PIE)
    run_timers(ctx, ticks, S)  # a guest that never reads C
    assert ctx.gsis == [RTC_GSI] and ctx.timers.next_wakeup() is None
    assert inb(ports, REG_A) == 0x23  # an access accounts the edges since
    assert ctx.gsis == [RTC_GSI] and ctx.timers.next_wakeup() is None
    assert dev.chip.periodic_missed == 8192 - 1  # the first of the second raised


def test_frozen_timeline_fires_nothing_and_thaw_goes_on() -> None:
    _dev, ctx, ticks, ports = device()
    out(ports, REG_B, B_24H | B_UIE)  # the next update is at guest 250 ms
    ticks.now = 100_000_000
    ctx.timeline.freeze()
    run_timers(ctx, ticks, 10 * S)
    assert ctx.gsis == [] and inb(ports, SEC) == 0x58
    ctx.timeline.thaw()
    run_timers(ctx, ticks, 10 * S + 149_999_999)
    assert ctx.gsis == []
    run_timers(ctx, ticks, 10 * S + 150_000_000)
    assert ctx.gsis == [RTC_GSI] and inb(ports, SEC) == 0x59


@pytest.mark.parametrize("rate", [Fraction(1), Fraction(1, 3), Fraction(4)])
def test_far_alarm_and_updates_follow_a_dilated_timeline(rate: Fraction) -> None:
    _dev, ctx, ticks, ports = device(rate)
    out(ports, SEC_ALARM, 0x00)
    out(ports, MIN_ALARM, 0x00)
    out(ports, HOUR_ALARM, 0x09)  # 09:00:00 tomorrow: 11 h 0 min 1.25 s of guest time away
    out(ports, REG_B, B_24H | B_AIE)
    due = (11 * 3600 + 1) * S + 250_000_000
    at = ctx.timeline.clock.ticks_at_or_after  # guest ns -> host ticks (pvclock's scale)
    run_timers(ctx, ticks, at(due) - 1)
    assert ctx.gsis == [] and ctx.timeline.now_ns() < due
    run_timers(ctx, ticks, at(due + 12))  # hour steps: the last under 1 ns a step late
    assert ctx.gsis == [RTC_GSI] and inb(ports, REG_C) & C_AF
    assert inb(ports, HOUR) == 0x09 and inb(ports, MIN) == 0 and inb(ports, SEC) == 0
    out(ports, REG_B, B_24H | B_UIE)  # update-ended: one a guest second
    for n in range(2, 5):
        run_timers(ctx, ticks, at(due + (n - 1) * S) - 1)
        assert len(ctx.gsis) == n - 1
        run_timers(ctx, ticks, at(due + (n - 1) * S))
        assert len(ctx.gsis) == n and inb(ports, REG_C) == C_IRQF | C_UF | C_PF
        assert inb(ports, SEC) == n - 1


def test_wide_accesses_and_the_write_only_index() -> None:
    _dev, _ctx, _ticks, ports = device()
    ports.io_write(RTC_PORT, bytes([0x0E, 0x77]), cast(Any, None))  # index 0x0E, then data
    assert inb(ports, 0x0E) == 0x77
    assert ports.io_read(RTC_PORT, 1, cast(Any, None)) == b"\xff"
    assert ports.io_read(RTC_PORT + 1, 2, cast(Any, None)) == bytes([0x77, 0xFF])


def linux_get_time(c: Chip, now_ns: int, step_ns: int = 12_000) -> tuple[int, int]:
    """Linux's mc146818_get_time (drivers/rtc/rtc-mc146818-lib.c) against the chip: seconds,
    UIP (wait 100 us while set), seconds again, the other fields, UIP again; each port
    access ``step_ns`` of guest time (an exit here). Returns (seconds since 1970, when)."""
    t = now_ns

    def rd(reg: int) -> int:
        nonlocal t
        t += step_ns
        return c.read(reg, t)

    for _ in range(200):
        seconds = rd(SEC)
        if rd(REG_A) & A_UIP:
            t += 100_000
            continue
        if seconds != rd(SEC):
            continue
        fields = [rd(r) for r in (MIN, HOUR, MDAY, MONTH, YEAR)]
        ctrl, century = rd(REG_B), rd(CENTURY)
        if rd(REG_A) & A_UIP:
            t += 100_000
            continue
        assert ctrl & B_24H and not ctrl & B_DM  # what Linux expects of a PC's RTC
        mi, h, d, mo, y = (v // 16 * 10 + v % 16 for v in fields)
        yy = (century // 16 * 10 + century % 16) * 100 + y
        when = datetime.datetime(
            yy, mo, d, h, mi, seconds // 16 * 10 + seconds % 16, tzinfo=datetime.UTC
        )
        return int(when.timestamp()), t
    raise AssertionError("UIP never cleared")


@pytest.mark.parametrize("start_ns", [0, 249_000_000, 249_800_000, 250_000_000, 999_900_000])
def test_linux_reads_the_epoch_plus_guest_time(start_ns: int) -> None:
    """Also when it starts inside the UIP window: it waits, and reads the new second."""
    c = Chip()
    got, done = linux_get_time(c, start_ns)
    assert got == (EPOCH_NS + done) // S  # the second the clock shows when the read ends


def test_record_deadlines_bound_the_chips_edges_and_skip_lost_ones() -> None:
    """The deadlines the record checks (``rtc_deadlines_ns``) against the chip itself: a
    guest releases the divider inside a bracket, takes each interrupt after a latency
    (sometimes over a period: edges are lost) and reads register C after. Each deadline
    is never after the edge that raised the event (so "early" is a real check), and is
    that edge to within the bracket, lost edges or not (no period counted as lateness)."""
    import numpy as np

    from tickless.results.record import rtc_deadlines_ns

    c = Chip()
    c.write(REG_A, 0x76, 1_000)
    c.read(REG_C, 1_000)
    c.write(REG_B, B_24H | B_PIE, 2_000)
    t0, release, t1 = 10_000, 13_000, 15_000
    c.write(REG_A, 0x26, release)
    stamps, edges, t = [t0], [], t1
    latencies = [30_000, 70_000, 2_100_000, 5_000, 980_000, 20_000] * 20
    for latency in latencies:
        edge = c.chip.next_irq_ns(t)
        assert edge is not None
        c.chip.sync(edge)
        edges.append(edge)
        stamps.append(edge + latency)
        t = edge + latency + 12_000  # ring 3 reads C after recording the event
        assert c.read(REG_C, t) & C_IRQF
    assert c.irqs == len(latencies) and c.chip.periodic_missed > 0
    deadlines = rtc_deadlines_ns(np.array(stamps, dtype=np.int64), Fraction(S, 1024), t1 - t0)
    slack = deadlines - np.array(edges)
    assert int(slack.max()) <= 0  # never after the real edge
    assert int(slack.min()) >= -(release - t0) - 1  # within the bracket (and rounding)
