"""The simulator's PV deadline device (``--timer pv``) beside the lguest device it replaces:
never early, exitless for a steady stream, less late on the KVM profile, deterministic."""

from __future__ import annotations

import dataclasses

import pytest

from tickless.results.spec import MeasureSpec
from tickless.sim.deadline_wait import PvWaiter
from tickless.sim.guest_run import SimulatedGuest
from tickless.sim.interference import HandlerCost
from tickless.sim.measure import simulate, simulate_measurement
from tickless.sim.platforms import bare_disk_handler, builtin_profiles
from tickless.timers.pv_deadline import pv_advance

US = 1000
MS = 1_000_000


def spec(**changes: object) -> MeasureSpec:
    base: dict[str, object] = {
        "timer": "pv",
        "interval_ns": 1 * MS,
        "count": 2000,
        "backend": "sim",
        "platform": "KVM",
    }
    base.update(changes)
    return MeasureSpec(**base)  # type: ignore[arg-type]


def run_guest(s: MeasureSpec, handler: HandlerCost | None = None) -> SimulatedGuest:
    """A finished simulated guest, to look at its host channel."""
    run = SimulatedGuest(s, builtin_profiles()[s.platform], 0.0, handler or bare_disk_handler())
    run.execute(None)
    return run


@pytest.mark.parametrize("platform", list(builtin_profiles()))
@pytest.mark.parametrize("method", ["relative", "absolute"])
def test_pv_is_never_early(platform: str, method: str) -> None:
    for interval_ns in (250 * US, 1 * MS):
        record = simulate_measurement(
            spec(platform=platform, method=method, interval_ns=interval_ns, count=800), None
        )
        assert record.lateness.early_count == 0 and min(record.lateness_ns) >= 0
        assert min(record.intervals_ns) >= interval_ns or method == "absolute"


def test_a_steady_stream_has_fewer_exits_than_lguest() -> None:
    """lguest exits twice an event (SET_CLOCKEVENT, HLT); pv only halts, and kicks only when a
    deadline is earlier than the host's promise: once here, for the first deadline."""
    lguest = simulate_measurement(spec(timer="lguest"), None)
    pv = simulate_measurement(spec(), None)
    assert lguest.host.exits == 2 * 2000 + 1 and lguest.host.hypercalls == 2001
    assert pv.host.hypercalls == 1  # DONE
    assert pv.host.timer_events == 2000  # every event by an early interrupt (1 ms is far)
    assert pv.host.exits == 2000 + 1 + 1  # a HLT an event, one kick, DONE
    assert any("kicked the host 1 times" in note for note in pv.notes)


def test_pv_is_far_less_late_than_lguest_on_kvm() -> None:
    """The advance hides the KVM profile's ~15 us delivery: pv is late only when an interrupt
    comes later than the advance allowed for, and then by the shortfall."""
    kvm = builtin_profiles()["KVM"].delivery
    lguest = simulate_measurement(spec(timer="lguest"), None)
    pv = simulate_measurement(spec(), None)
    assert lguest.lateness.mean_ns == pytest.approx(kvm.mean_ns, rel=0.05)
    assert pv.lateness.mean_ns < lguest.lateness.mean_ns / 10
    assert pv.lateness.p99_ns < lguest.lateness.p99_ns / 2
    assert pv.stats.sd_ns < lguest.stats.sd_ns


def test_the_advance_settles_near_the_delivery_latency() -> None:
    """From pv_advance's 50 us it shrinks towards the KVM profile's delivery (~15 us): above
    its floor, not far above its mean (late wake-ups grow it only by 1/128)."""
    kvm = builtin_profiles()["KVM"].delivery
    run = run_guest(spec())
    assert isinstance(run.waiter, PvWaiter)
    channel = run.waiter.channel
    assert channel.advance.advance_ns < pv_advance().advance_ns
    assert kvm.floor_ns < channel.advance.advance_ns < kvm.mean_ns + 2 * kvm.sd_ns
    assert channel.page.advance_ns == channel.advance.advance_ns  # published to the guest
    assert channel.stats.fired == 2000
    assert channel.stats.margins == 1999  # the last one is never looked at: the run ended


def test_near_deadlines_are_spun_to_without_an_interrupt() -> None:
    """50 us is below the 200 us spin threshold: no interrupt, no exit but DONE, exact."""
    record = simulate_measurement(spec(interval_ns=50 * US), None)
    assert record.host.timer_events == 0 and record.host.wakeups == 0
    assert record.host.exits == record.host.hypercalls == 1
    assert record.stats.mean_ns == 50 * US and record.lateness.p99_ns == 0
    # With no threshold, the host's advance is the limit: 60 us deadlines are interrupts.
    below = simulate_measurement(spec(interval_ns=60 * US, spin_threshold_ns=0), None)
    assert below.host.timer_events > 1900


def test_late_interrupts_make_the_guest_kick() -> None:
    """A guest that wakes too late publishes its next deadline after the host's look (at
    250 us, ~215 us after the deadline), when nothing is promised any more: it must kick. A
    profile with rare 300 us stalls shows it; without them only the first deadline kicks."""
    kvm = builtin_profiles()["KVM"]
    stalls = dataclasses.replace(
        kvm,
        delivery=dataclasses.replace(
            kvm.delivery, stall_prob=0.05, stall_mean_ns=300 * US, stall_sd_ns=50 * US
        ),
    )
    record = simulate(spec(interval_ns=250 * US), stalls)
    smooth = simulate(spec(interval_ns=250 * US), kvm)
    kicks = record.host.exits - 2000 - 1  # a HLT an event, DONE
    assert 40 < kicks < 200  # about one per stall (5 % of 2000)
    assert smooth.host.exits == 2002 and record.lateness.early_count == 0


def test_pv_is_deterministic_for_a_seed() -> None:
    a = simulate_measurement(spec(loads={"io"}, seed=5), None)
    b = simulate_measurement(spec(loads={"io"}, seed=5), None)
    c = simulate_measurement(spec(loads={"io"}, seed=6), None)
    assert a.intervals_ns == b.intervals_ns and a.host == b.host and a.notes == b.notes
    assert a.intervals_ns != c.intervals_ns
