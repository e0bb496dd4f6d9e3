"""The HPET's register logic (``devices/hpet.py``), pure Python, no KVM: the registers, the
counter as a function of the timeline's guest time (dilated, frozen), comparator matches
(one-shot, periodic, 32-bit, in the past), status W1C, routing, and bad writes.

Host ticks come from a fake source the test moves (ticks are ns); host timers sit in a bare
``TimerQueue`` whose due expiries the test runs, so every match is checked at exact ticks.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from tickless.axes import TickMode, TimerPath
from tickless.devices import hpet_registers as h
from tickless.devices.config import GuestConfig
from tickless.devices.hpet import Hpet
from tickless.errors import InputError
from tickless.guest.abi import HPET_GPA, PIT_GSI, RTC_GSI
from tickless.timers.hrtimer import TimerQueue
from tickless.timers.timeline import Timeline

START = 1 << 40
CFG, STATUS, COUNTER = h.CONFIG_REG, h.STATUS_REG, h.COUNTER_REG


def tn(i: int, sub: int) -> int:
    return h.TIMER_BASE + i * h.TIMER_STRIDE + sub


class Rig:
    """An HPET on a timeline with hand-moved host ticks; records what it raised."""

    def __init__(self, rate: Fraction | int = 1, fsb: bool = False) -> None:
        self.now = START
        self.timeline = Timeline(10**9, lambda: self.now, rate=rate)
        self.queue = TimerQueue()
        self.gsis: list[tuple[int, int]] = []  # (guest ns, gsi)
        self.msis: list[tuple[int, int]] = []  # (vector, destination)
        self.hpet = Hpet(
            self.timeline, self.queue, self._gsi, lambda v, d: self.msis.append((v, d)), fsb=fsb
        )
        for event in self.hpet.events:
            self.timeline.subscribe(event)

    def _gsi(self, gsi: int) -> None:
        self.gsis.append((self.timeline.now_ns(), gsi))

    def guest_ns(self) -> int:
        return self.timeline.now_ns()

    def run_to(self, ticks: int) -> None:
        """Let host time pass to ``ticks``, running each host timer when it is due."""
        while (wake := self.queue.next_wakeup()) is not None and wake <= ticks:
            self.now = max(self.now, wake)
            for timer in self.queue.expire(self.now):
                timer.callback(self.now)
        self.now = max(self.now, ticks)

    def run_for(self, ns: int) -> None:
        self.run_to(self.now + ns)

    def read(self, offset: int, size: int = 8) -> int:
        return int.from_bytes(self.hpet.mmio_read(HPET_GPA + offset, size, None), "little")

    def write(self, offset: int, value: int, size: int = 8) -> None:
        self.hpet.mmio_write(HPET_GPA + offset, value.to_bytes(size, "little"), None)

    def enable(self, legacy: bool = False) -> None:
        self.write(CFG, h.CFG_ENABLE | (h.CFG_LEGACY if legacy else 0))


def oneshot_config(route: int = 20, level: bool = False) -> int:
    return h.TN_INT_ENB | (h.TN_LEVEL if level else 0) | route << h.TN_ROUTE_SHIFT


def test_capabilities_and_reset_state() -> None:
    r = Rig()
    caps = r.read(h.ID_REG)
    assert caps & 0xFF == 1  # revision
    assert (caps >> 8 & 0x1F) + 1 == 3  # comparators
    assert caps & h.CAP_COUNT_SIZE and caps & h.CAP_LEG_RT
    assert caps >> 16 & 0xFFFF == 0x8086
    assert caps >> 32 == 10_000_000  # 10 ns in fs
    assert r.read(h.ID_REG, 4) == caps & 0xFFFFFFFF and r.read(4, 4) == caps >> 32
    for i in range(3):
        config = r.read(tn(i, h.TN_CONFIG))
        assert config & h.TN_PER_CAP and config & h.TN_SIZE_CAP and not config & h.TN_FSB_CAP
        assert config >> 32 == h.ROUTE_CAP
        assert r.read(tn(i, h.TN_COMPARATOR)) == (1 << 64) - 1
    assert r.read(CFG) == 0 and r.read(STATUS) == 0 and r.read(COUNTER) == 0
    assert r.read(0x0F8) == 0 and r.read(0x3F8) == 0 and r.read(tn(3, 0)) == 0  # reserved


def test_counter_halted_is_writable_and_runs_from_there_at_10_ns() -> None:
    r = Rig()
    r.write(COUNTER, 0x1234_5678, 4)
    r.write(COUNTER + 4, 0x9, 4)
    r.run_for(5_000)
    assert r.read(COUNTER) == 0x9_1234_5678  # held while halted
    r.enable()
    r.run_for(1_005)
    assert r.read(COUNTER) == 0x9_1234_5678 + 100
    r.write(COUNTER, 0, 8)  # ignored while it runs, as QEMU's
    assert r.read(COUNTER) == 0x9_1234_5678 + 100
    assert r.hpet.stats.ignored_writes == 1
    assert r.read(COUNTER + 4, 4) == 0x9
    r.write(CFG, 0)
    r.run_for(10_000)
    assert r.read(COUNTER) == 0x9_1234_5678 + 100  # halted again: holds


@pytest.mark.parametrize("rate", [Fraction(4), Fraction(1, 2)])
def test_counter_follows_a_dilated_timeline(rate: Fraction) -> None:
    r = Rig(rate=rate)
    r.enable()
    g0, c0 = r.guest_ns(), r.read(COUNTER)
    r.run_for(1_000_000)  # 1 ms of host time
    g1, c1 = r.guest_ns(), r.read(COUNTER)
    assert g1 - g0 == 1_000_000 * rate
    assert abs((c1 - c0) - (g1 - g0) // 10) <= 1
    r.timeline.set_rate(1)  # a rate change mid-run keeps the counter continuous
    assert r.read(COUNTER) == c1
    r.run_for(1_000_000)
    assert abs(r.read(COUNTER) - c1 - 100_000) <= 1


def test_oneshot_fires_when_the_counter_reaches_the_comparator_never_before() -> None:
    r = Rig()
    r.enable()
    r.write(tn(0, h.TN_CONFIG), oneshot_config(route=21))
    now = r.read(COUNTER)
    r.write(tn(0, h.TN_COMPARATOR), now + 1000)
    due_ns = r.hpet.origin_ns + (now + 1000) * 10
    r.run_to(START + due_ns - r.guest_ns() + r.now - START - 1)
    assert r.gsis == []
    r.run_for(1_000_000)
    assert r.gsis == [(due_ns, 21)]
    assert r.read(tn(0, h.TN_COMPARATOR)) == now + 1000  # one-shot: stays
    r.run_for(10**9)
    assert len(r.gsis) == 1  # and fires once


def test_a_frozen_timeline_holds_the_counter_and_the_comparator() -> None:
    r = Rig()
    r.enable()
    r.write(tn(1, h.TN_CONFIG), oneshot_config(route=2))
    c0 = r.read(COUNTER)
    r.write(tn(1, h.TN_COMPARATOR), c0 + 500)  # 5 us ahead
    r.timeline.freeze()
    c_frozen = r.read(COUNTER)
    r.run_for(10**9)
    assert r.read(COUNTER) == c_frozen and r.gsis == []
    r.timeline.thaw()
    r.run_for(1_000_000)
    assert [gsi for _, gsi in r.gsis] == [2]
    assert r.gsis[0][0] == r.hpet.origin_ns + (c0 + 500) * 10


def test_periodic_rearms_on_its_grid_and_the_comparator_advances() -> None:
    r = Rig()
    r.enable()
    r.write(tn(0, h.TN_CONFIG), oneshot_config() | h.TN_PERIODIC | h.TN_VAL_SET)
    c0 = r.read(COUNTER)
    r.write(tn(0, h.TN_COMPARATOR), c0 + 2000)  # sets comparator and period
    r.write(tn(0, h.TN_COMPARATOR), 10_000)  # SETVAL cleared: the period only
    assert r.read(tn(0, h.TN_COMPARATOR)) == c0 + 2000
    r.run_for(20_000 + 4 * 100_000 + 50)
    first = r.hpet.origin_ns + (c0 + 2000) * 10
    assert r.gsis == [(first + k * 100_000, 20) for k in range(5)]
    assert r.read(tn(0, h.TN_COMPARATOR)) == c0 + 2000 + 5 * 10_000
    # a host expiry 3.5 periods late: one interrupt, the missed ones skipped and counted
    wake = r.queue.next_wakeup()
    assert wake is not None
    r.now = wake + 350_000
    for timer in r.queue.expire(r.now):
        timer.callback(r.now)
    assert len(r.gsis) == 6 and r.hpet.stats.overruns == 3
    assert r.read(tn(0, h.TN_COMPARATOR)) == c0 + 2000 + 9 * 10_000


def test_a_periodic_timer_with_its_interrupt_off_runs_no_host_timer_and_keeps_its_phase() -> None:
    r = Rig()
    r.enable()
    periodic = oneshot_config() | h.TN_PERIODIC
    r.write(tn(0, h.TN_CONFIG), periodic | h.TN_VAL_SET)
    c0 = r.read(COUNTER)
    r.write(tn(0, h.TN_COMPARATOR), c0 + 2000)
    r.write(tn(0, h.TN_COMPARATOR), 10_000)
    r.run_for(20_000 + 50)
    assert len(r.gsis) == 1
    r.write(tn(0, h.TN_CONFIG), periodic & ~h.TN_INT_ENB)  # as Linux's shutdown leaves it
    assert r.queue.next_wakeup() is None  # nothing can see its matches fire
    r.run_for(7 * 100_000)
    assert len(r.gsis) == 1
    # ... except a read-back of its comparator, which has moved on by its period per match
    assert r.read(tn(0, h.TN_COMPARATOR)) == c0 + 2000 + 8 * 10_000
    assert r.hpet.stats.matches == 8 and r.hpet.stats.masked == 7
    r.write(tn(0, h.TN_CONFIG), periodic)  # on again: the next match is on the old grid
    r.run_for(100_000)
    first = r.hpet.origin_ns + (c0 + 2000) * 10
    assert r.gsis[1:] == [(first + 8 * 100_000, 20)]
    level = periodic & ~h.TN_INT_ENB | h.TN_LEVEL  # its status bit shows each match
    r.write(tn(0, h.TN_CONFIG), level)
    assert r.queue.next_wakeup() is not None


def test_a_tiny_period_is_clamped_not_a_host_timer_storm() -> None:
    r = Rig()
    r.enable()
    r.write(tn(2, h.TN_CONFIG), oneshot_config() | h.TN_PERIODIC | h.TN_VAL_SET)
    r.write(tn(2, h.TN_COMPARATOR), r.read(COUNTER) + 1)  # period: 1 tick, 10 ns
    r.run_for(1_000_000)
    assert 99 <= len(r.gsis) <= 101  # one per 10 us, not per 10 ns
    assert r.hpet.stats.clamped == len(r.gsis)


def test_status_is_set_by_level_matches_and_cleared_by_writing_one() -> None:
    r = Rig()
    r.enable()
    r.write(tn(0, h.TN_CONFIG), oneshot_config(level=True))
    r.write(tn(1, h.TN_CONFIG), h.TN_LEVEL)  # level, interrupt disabled: status only
    r.write(tn(2, h.TN_CONFIG), oneshot_config())  # edge: no status
    c = r.read(COUNTER)
    for i in range(3):
        r.write(tn(i, h.TN_COMPARATOR), c + 100)
    r.run_for(10_000)
    assert r.read(STATUS) == 0b011
    assert [gsi for _, gsi in r.gsis] == [20, 20]  # comparators 0 and 2 interrupt
    assert r.hpet.stats.masked == 1
    r.write(STATUS, 0b110, 4)  # write 1 to clear; a 1 where no bit is set changes nothing
    assert r.read(STATUS) == 0b001
    r.write(STATUS, 0, 4)
    assert r.read(STATUS) == 0b001
    r.write(STATUS, 1)
    assert r.read(STATUS) == 0


def test_legacy_replacement_routes_comparators_0_and_1_to_irq_0_and_8() -> None:
    r = Rig()
    r.enable(legacy=True)
    c = r.read(COUNTER)
    for i in range(3):
        r.write(tn(i, h.TN_CONFIG), oneshot_config(route=22))
        r.write(tn(i, h.TN_COMPARATOR), c + 100 * (i + 1))
    r.run_for(100_000)
    assert [gsi for _, gsi in r.gsis] == [PIT_GSI, RTC_GSI, 22]


def test_read_only_bits_and_bad_writes() -> None:
    r = Rig()
    r.write(h.ID_REG, 0)
    assert r.read(h.ID_REG) == h.CAPABILITIES
    r.write(tn(0, h.TN_CONFIG), (1 << 64) - 1)  # every bit: only the writable ones stick
    config = r.read(tn(0, h.TN_CONFIG))
    assert config >> 32 == h.ROUTE_CAP and config & h.TN_PER_CAP and config & h.TN_SIZE_CAP
    assert not config & (h.TN_FSB_EN | 1 | 1 << 7)  # no FSB capability; reserved bits 0
    assert r.hpet.stats.refused_routes == 1  # route 31 is not offered: the old one stays
    assert (config & h.TN_ROUTE_MASK) >> h.TN_ROUTE_SHIFT == 0
    r.write(tn(0, h.TN_CONFIG), 5 << h.TN_ROUTE_SHIFT)  # 5: the PV timer's pin, not offered
    assert (r.read(tn(0, h.TN_CONFIG)) & h.TN_ROUTE_MASK) == 0
    r.write(tn(0, h.TN_CONFIG) + 4, 0, 4)  # the capabilities half is read-only
    assert r.read(tn(0, h.TN_CONFIG)) >> 32 == h.ROUTE_CAP
    writes = r.hpet.stats.ignored_writes
    r.hpet.mmio_write(HPET_GPA + CFG, b"\x01", None)  # a byte: ignored
    r.hpet.mmio_write(HPET_GPA + CFG + 2, b"\x01\x00\x00\x00", None)  # misaligned
    assert r.hpet.stats.ignored_writes == writes + 2 and r.read(CFG) == 0
    assert r.hpet.mmio_read(HPET_GPA + 5, 2, None) == (10_000_000 >> 8).to_bytes(4, "little")[:2]
    assert r.read(CFG + 4, 4) == 0 and r.read(tn(0, 0x18)) == 0


def test_a_64_bit_comparator_in_the_past_never_fires() -> None:
    r = Rig()
    r.enable()
    r.run_for(1_000_000)
    r.write(tn(0, h.TN_CONFIG), oneshot_config())
    r.write(tn(0, h.TN_COMPARATOR), r.read(COUNTER) - 10)
    r.run_for(10 * 10**9)
    assert r.gsis == [] and r.queue.next_wakeup() is None  # nothing armed at all


def test_a_32_bit_oneshot_interrupts_at_the_wrap_and_at_its_match() -> None:
    r = Rig()
    r.write(COUNTER, (1 << 32) - 1000)  # 10 us before the low half wraps
    r.enable()
    r.write(tn(0, h.TN_CONFIG), oneshot_config() | h.TN_32BIT)
    r.write(tn(0, h.TN_COMPARATOR), 500)  # the low 32 bits wrap first, then match 500
    origin = r.hpet.origin_ns
    r.run_for(100_000)
    wrap, match = origin + (1 << 32) * 10, origin + ((1 << 32) + 500) * 10
    assert [t for t, _ in r.gsis] == [wrap, match]
    assert r.read(tn(0, h.TN_COMPARATOR)) == 500


def test_a_read_raises_a_match_the_host_timer_has_not_run_yet() -> None:
    """As Linux's set_next_event does: program, re-read; a counter past the comparator
    means its interrupt was raised before the read returned."""
    r = Rig()
    r.enable()
    r.write(tn(0, h.TN_CONFIG), oneshot_config())
    r.write(tn(0, h.TN_COMPARATOR), r.read(COUNTER) + 50)
    r.now += 1_000  # time passes, the host timer thread has not woken
    assert r.gsis == []
    r.read(COUNTER, 4)
    assert len(r.gsis) == 1
    r.run_for(10**9)
    assert len(r.gsis) == 1


def test_fsb_delivers_a_valid_msi_and_drops_a_bad_one() -> None:
    r = Rig(fsb=True)
    assert r.read(tn(0, h.TN_CONFIG)) & h.TN_FSB_CAP
    r.enable()
    r.write(tn(0, h.TN_CONFIG), oneshot_config() | h.TN_FSB_EN)
    r.write(tn(0, h.TN_FSB_ROUTE), 0xFEE0_0000 << 32 | 0xE2)
    r.write(tn(0, h.TN_COMPARATOR), r.read(COUNTER) + 100)
    r.run_for(10_000)
    assert r.msis == [(0xE2, 0)] and r.gsis == []
    for bad in (0x1234_0000 << 32 | 0xE2, 0xFEE0_0000 << 32 | 0x05, 0xFEE0_0000 << 32 | 0x4E2):
        r.write(tn(0, h.TN_FSB_ROUTE), bad)  # outside the window, vector < 16, SMI delivery
        r.write(tn(0, h.TN_COMPARATOR), r.read(COUNTER) + 100)
        r.run_for(10_000)
    assert r.msis == [(0xE2, 0)] and r.hpet.stats.bad_msi == 3


def test_disabling_stops_the_comparators() -> None:
    r = Rig()
    r.enable()
    r.write(tn(0, h.TN_CONFIG), oneshot_config())
    r.write(tn(0, h.TN_COMPARATOR), r.read(COUNTER) + 100)
    r.write(CFG, 0)
    r.run_for(10**8)
    assert r.gsis == [] and r.queue.next_wakeup() is None
    r.enable()  # the counter resumes where it stopped: the match is still ahead
    r.run_for(10**6)
    assert len(r.gsis) == 1


def test_a_periodic_match_raises_its_interrupt_before_the_comparator_moves_on() -> None:
    """So a guest that reads the next match knows that match's interrupt was raised."""
    r = Rig()
    seen: list[int] = []
    r.hpet.raise_gsi = lambda gsi: seen.append(r.read(tn(0, h.TN_COMPARATOR)))
    r.enable()
    r.write(tn(0, h.TN_CONFIG), oneshot_config() | h.TN_PERIODIC | h.TN_VAL_SET)
    c0 = r.read(COUNTER)
    r.write(tn(0, h.TN_COMPARATOR), c0 + 1000)
    r.write(tn(0, h.TN_COMPARATOR), 1000)
    r.run_for(30_500)
    assert seen == [c0 + 1000 * k for k in (1, 2, 3)]
    assert r.read(tn(0, h.TN_COMPARATOR)) == c0 + 4000


def test_a_periodic_interval_the_device_cannot_run_is_refused() -> None:
    for interval_ns in (1_000_005, 9_990):  # off the tick; faster than the device runs
        with pytest.raises(InputError, match="10 ns"):
            GuestConfig(
                timer=TimerPath.HPET, mode=TickMode.PERIODIC, interval_ns=interval_ns, count=1
            )
    GuestConfig(timer=TimerPath.HPET, interval_ns=1_000_005, count=1)  # one-shot: any
