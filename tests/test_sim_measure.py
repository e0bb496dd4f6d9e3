"""The simulated measurement: the real timer logic under a virtual clock, deterministic,
never early, and reporting the same record as a real run."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tickless import backends
from tickless.backends import measure
from tickless.cli import main
from tickless.results.schema import from_json_dict, load_results, to_json_dict
from tickless.results.spec import MeasureSpec
from tickless.sim.measure import simulate, simulate_measurement
from tickless.sim.platforms import builtin_profiles
from tickless.sim.profile import SimInputError

US = 1000


def spec(**changes: object) -> MeasureSpec:
    base: dict[str, object] = {
        "timer": "lguest",
        "interval_ns": 50 * US,
        "count": 2000,
        "backend": "sim",
        "platform": "KVM",
    }
    base.update(changes)
    return MeasureSpec(**base)  # type: ignore[arg-type]


def test_same_seed_same_run_other_seed_other_run() -> None:
    a = simulate_measurement(spec(loads={"io"}, seed=7), None)
    b = simulate_measurement(spec(loads={"io"}, seed=7), None)
    c = simulate_measurement(spec(loads={"io"}, seed=8), None)
    assert a.intervals_ns == b.intervals_ns
    assert a.intervals_ns != c.intervals_ns


@pytest.mark.parametrize("platform", list(builtin_profiles()))
@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"method": "absolute"},
        {"loads": {"io"}},
        {"loads": {"io"}, "method": "absolute", "interval_ns": 10 * US},
        {"mode": "periodic", "hz": 10_000, "count": 300},
        {"mode": "periodic", "hz": 4000, "method": "absolute", "count": 300},
        {"rate": Fraction(1, 3)},
        {"rate": Fraction(5, 2), "loads": {"io"}},
        {"slop_ns": 20 * US, "interval_ns": 10 * US},
        {"timer": "precise", "loads": {"io"}},
        {"timer": "precise", "loads": {"io"}, "interval_ns": 300 * US, "method": "absolute"},
        {"timer": "precise", "interval_ns": 400 * US, "rate": Fraction(1, 2)},
        {"timer": "pv"},
        {"timer": "pv", "interval_ns": 400 * US, "loads": {"io"}},
        {"timer": "pv", "interval_ns": 300 * US, "method": "absolute", "rate": Fraction(5, 2)},
        {"timer": "pv", "interval_ns": 60 * US, "spin_threshold_ns": 0, "loads": {"io"}},
    ],
)
def test_never_early(platform: str, variant: dict[str, object]) -> None:
    record = simulate_measurement(spec(**{"platform": platform, "count": 500, **variant}), None)
    assert record.lateness.early_count == 0
    assert min(record.lateness_ns) >= 0
    if record.method == "relative":
        assert min(record.intervals_ns) >= record.interval_ns


def test_relative_mean_is_interval_plus_delivery_latency() -> None:
    kvm = builtin_profiles()["KVM"]
    record = simulate(spec(count=4500, interval_ns=120 * US), kvm)
    expected = 120 * US + kvm.delivery.mean_ns
    assert record.stats.ci99_low_ns <= expected <= record.stats.ci99_high_ns
    assert record.stats.sd_ns == pytest.approx(kvm.delivery.sd_ns, rel=0.1)


def test_absolute_method_keeps_the_grid() -> None:
    record = simulate_measurement(spec(method="absolute", count=3000), None)
    # Intervals average d exactly (the grid does not drift); lateness is the latency.
    assert record.stats.mean_ns == pytest.approx(50 * US, abs=30)
    kvm = builtin_profiles()["KVM"].delivery
    assert record.lateness.mean_ns == pytest.approx(kvm.mean_ns, rel=0.02)


def test_dilation_scales_latency_in_guest_time() -> None:
    """A guest at half speed sees a host latency of L as L/2 of its own nanoseconds."""
    normal = simulate_measurement(spec(count=3000), None)
    slow = simulate_measurement(spec(count=3000, rate=Fraction(1, 2)), None)
    latency = normal.stats.mean_ns - 50 * US
    assert slow.stats.mean_ns - 50 * US == pytest.approx(latency / 2, rel=0.01)
    # In host time each event takes 2d plus the (host) latency.
    assert slow.host.duration_s == pytest.approx(3000 * (100 * US + latency) / 1e9, rel=0.01)


def test_periodic_mode_fires_events_on_ticks() -> None:
    record = simulate_measurement(spec(mode="periodic", hz=1000, count=200), None)
    # 50 us events on a 1000 HZ tick: every event waits for the next tick, 1 ms apart.
    intervals = np.asarray(record.intervals_ns)
    assert np.all(np.abs(intervals - 1_000_000) < 20 * US)
    assert record.hz == 1000 and record.host.hypercalls == 3  # set, stop, DONE
    assert record.host.timer_events >= 200


def test_host_counts_follow_the_path() -> None:
    lguest = simulate_measurement(spec(count=200), None)
    assert lguest.host.hypercalls == 201  # one per arming, and DONE (as a real run)
    assert lguest.host.injections == lguest.host.timer_events == 200
    assert lguest.host.wakeups == 200
    assert lguest.host.exits == 201 + 200  # hypercalls, and a HLT before each event
    lapic = simulate_measurement(spec(count=200, timer="lapic"), None)
    assert lapic.host.hypercalls == 1 and lapic.host.exits == 200 + 200 + 1  # wrmsr, HLT, DONE
    host = simulate_measurement(spec(count=200, timer="host", platform="VMware"), None)
    assert host.platform == "Linux" and host.host.exits == 0 and host.host.hypercalls == 0
    assert any("--platform ignored" in note for note in host.notes)


def test_record_is_a_sim_record_that_round_trips() -> None:
    record = simulate_measurement(spec(count=300, loads={"io"}, platform="qemu", seed=3), None)
    assert record.backend == "sim" and record.platform == "QEMU" and record.load == "io"
    assert record.machine["machine"] == "simulated"
    assert record.stats.count == 300 and len(record.intervals_ns) == 300
    again = from_json_dict(to_json_dict(record))
    assert again.platform == "QEMU" and again.intervals_ns == record.intervals_ns


def test_io_load_delays_kvm_but_not_the_precise_channel() -> None:
    idle = simulate_measurement(spec(count=4500, platform="KVM"), None)
    io = simulate_measurement(spec(count=4500, platform="KVM", loads={"io"}), None)
    assert io.stats.mean_ns > idle.stats.mean_ns + 1 * US
    assert io.stats.sd_ns > 5 * idle.stats.sd_ns
    new = builtin_profiles()["new timers"]
    held = simulate(spec(count=4500, loads={"io"}), new)
    assert held.stats.sd_ns < 1 * US
    assert any("held device interrupts back" in note for note in held.notes)
    # The same platform without its hold-back window is hit like plain Xen.
    unheld = simulate(spec(count=4500, loads={"io"}), dataclasses.replace(new, hold_back_ns=0))
    assert unheld.stats.sd_ns > 5 * US


def test_precise_channel_wakes_early_and_spins_to_the_deadline() -> None:
    """Far deadlines: an early interrupt, then a spin; events land on their deadlines
    exactly, even under heavy IO, where the lguest path on the same platform is hit."""
    far = spec(timer="precise", interval_ns=500 * US, count=1000, loads={"io"})
    record = simulate_measurement(far, None)
    assert record.host.timer_events > 900  # woke by interrupt, not by spinning throughout
    assert record.lateness.p99_ns == 0 and record.stats.sd_ns < 1 * US
    assert any("precise:" in note for note in record.notes)
    lguest = simulate_measurement(spec(interval_ns=500 * US, count=1000, loads={"io"}), None)
    assert lguest.stats.sd_ns > 20 * US
    near = simulate_measurement(spec(timer="precise", count=500), None)
    assert near.host.timer_events == 0 and near.stats.mean_ns == 50 * US  # spun to


def test_interrupt_rate_is_what_drives_interference() -> None:
    kvm = builtin_profiles()["KVM"]
    light = simulate(spec(count=3000, loads={"io"}), kvm, io_rate_per_s=100)
    heavy = simulate(spec(count=3000, loads={"io"}), kvm, io_rate_per_s=5000)
    assert heavy.stats.mean_ns - light.stats.mean_ns > 10 * US


def test_min_delta_rounds_short_requests_up() -> None:
    """Xen's guest TIMER_SLOP left at its default 100 us: 50 us timers fire every 100 us."""
    xen = dataclasses.replace(builtin_profiles()["Xen"], min_delta_ns=100 * US)
    record = simulate(spec(count=500), xen)
    assert record.stats.mean_ns == pytest.approx(100 * US, rel=0.01)


def test_unsupported_load_and_timer_are_clear_value_errors() -> None:
    with pytest.raises(ValueError, match="not 'cpu'"):
        simulate_measurement(spec(loads={"cpu"}), None)
    with pytest.raises(SimInputError, match=r"unknown platform 'Hyper-V'.*VMware, VirtualBox"):
        simulate_measurement(spec(platform="Hyper-V"), None)


def test_progress_reaches_the_count() -> None:
    seen: list[int] = []
    simulate_measurement(spec(count=1500), seen.append)
    assert seen[-1] == 1500 and seen == sorted(seen)


def test_measure_dispatches_to_the_simulator() -> None:
    record = measure(spec(count=100))
    assert record.backend == "sim" and record.platform == "KVM"


def test_cli_backend_sim_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    result = CliRunner().invoke(
        main,
        ["measure", "--backend", "sim", "--platform", "xen", "--count", "300", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "platform Xen" in result.output and "mean measured interval" in result.output
    (record,) = load_results(out)
    assert record.backend == "sim" and record.platform == "Xen"


def test_cli_falls_back_to_the_simulator_without_kvm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "kvm_problem", lambda: "no /dev/kvm: not found")
    result = CliRunner().invoke(main, ["measure", "--count", "200", "--compare-paper"])
    assert result.exit_code == 0, result.output
    assert result.output.count("running the simulator instead") == 1
    assert "platform KVM" in result.output and "65.310" in result.output
