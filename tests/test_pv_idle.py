"""PV idle (issue 21): a small guest on the PV deadline device with nothing to do until its
next deadline blocks in the host (a byte to PV_BLOCK_PORT, lguest's LHCALL_HALT) instead of
halting, and the loop resumes it at the deadline without an interrupt entry. Counts only."""

from __future__ import annotations

from fractions import Fraction

import pytest

from tickless.axes import TimerPath
from tickless.devices.config import GuestConfig
from tickless.errors import InputError
from tickless.guest.abi import Scenario
from tickless.measure.idle import run_idle
from tickless.results.idle import IdleSpec
from tickless.vmm.host import VmmHost

SECOND_NS = 1_000_000_000


def test_pv_idle_block_needs_the_pv_device() -> None:
    with pytest.raises(InputError, match="--pv-idle block"):
        IdleSpec(guests=1, timer=TimerPath.LGUEST, pv_idle="block")
    with pytest.raises(InputError, match="--pv-idle lapic"):
        IdleSpec(guests=1, timer=TimerPath.LGUEST, pv_idle="lapic")
    with pytest.raises(InputError, match="--slop"):
        IdleSpec(guests=1, pv_idle="lapic", slop_ns=1_000_000)
    # the default: lapic where it runs, halt where it cannot
    assert IdleSpec(guests=1).pv_idle == "lapic"
    assert IdleSpec(guests=1, slop_ns=1_000_000).pv_idle == "halt"
    assert IdleSpec(guests=1, timer=TimerPath.LGUEST).pv_idle == "halt"
    with pytest.raises(InputError, match="--pv-idle"):
        IdleSpec(guests=1, pv_idle="nap")


@pytest.mark.kvm
def test_blocked_guests_wake_at_their_deadlines_without_interrupts() -> None:
    """Two guests, 3 s: their 1 s and 4 s housekeeping timers run (none early) and every
    wake-up is a BLOCK the loop ended, not an interrupt; the run's end stops guests that
    are blocked in the host (the run returns). The same fleet on halt takes interrupts."""
    spec = IdleSpec(guests=2, duration_ns=3 * SECOND_NS, pv_idle="block")
    result = run_idle(spec)
    record = result.to_json_dict()
    assert record["early_timer_runs"] == 0
    assert any(note.startswith("idle: block") for note in result.notes)
    for guest in result.per_guest:
        assert guest.housekeeping_runs >= 2  # the 1 s timer, at least twice in 3 s
        assert guest.timer_interrupts == 0  # no interrupt entry for a deadline
        assert guest.wakeups >= guest.housekeeping_runs - 1  # each a BLOCK the loop ended
    assert result.injections == 0
    halted = run_idle(IdleSpec(guests=2, duration_ns=3 * SECOND_NS, pv_idle="halt"))
    assert any(note.startswith("idle: halt") for note in halted.notes)
    assert all(g.timer_interrupts >= 2 for g in halted.per_guest)


@pytest.mark.kvm
def test_lapic_idle_guests_wake_by_kvms_timer_not_the_loop() -> None:
    """--pv-idle lapic: each wait arms KVM's LAPIC timer for its deadline in the trap that
    halts, so the timers run (none early) on LAPIC interrupts while the deadline loop
    delivers nothing: no expiry, no injection."""
    result = run_idle(IdleSpec(guests=2, duration_ns=3 * SECOND_NS, pv_idle="lapic"))
    assert result.to_json_dict()["early_timer_runs"] == 0
    assert any(note.startswith("idle: lapic") for note in result.notes)
    for guest in result.per_guest:
        assert guest.housekeeping_runs >= 2
        assert guest.timer_interrupts >= 2  # the LAPIC timer's
    assert result.injections == 0
    assert result.host_timer_expiries == 0


@pytest.mark.kvm
def test_a_lapic_idle_guest_keeps_its_timeline_at_one_rate() -> None:
    """Its waits arm KVM's LAPIC timer for a host TSC worked out at the rate of the moment:
    a rate change or a freeze of its timeline is refused in one line, naming the guest."""
    config = GuestConfig(
        scenario=Scenario.IDLE, timer=TimerPath.PV, pv_idle="lapic", duration_ns=SECOND_NS
    )
    with VmmHost() as host:
        timeline = host.timeline()
        machine = host.boot(config, name="lazy", timeline=timeline)
        with pytest.raises(InputError, match=r"a rate change refused: lazy: .*--pv-idle lapic"):
            timeline.set_rate(Fraction(1))
        with pytest.raises(InputError, match="a freeze refused: lazy"):
            machine.freeze()
        host.destroy(machine)
