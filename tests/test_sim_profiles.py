"""Platform profiles: components, their JSON format, name resolution, fitting from a run,
and one clear line for every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tickless.cli import main
from tickless.results.paper import PLATFORMS
from tickless.results.schema import to_json_dict, write_json_atomic
from tickless.results.spec import MeasureSpec
from tickless.sim.measure import simulate_measurement
from tickless.sim.platforms import builtin_profiles, fit_from_record, resolve_platform
from tickless.sim.profile import (
    DeliveryModel,
    ProfileError,
    load_profile,
    profile_from_json,
    profile_to_json,
)


def kvm_json() -> dict[str, Any]:
    return profile_to_json(builtin_profiles()["KVM"])


def test_every_builtin_round_trips_through_json() -> None:
    for profile in builtin_profiles().values():
        assert profile_from_json(json.loads(json.dumps(profile_to_json(profile)))) == profile


def test_builtins_are_the_papers_platforms_fitted_at_50us_idle() -> None:
    profiles = builtin_profiles()
    assert list(profiles) == list(PLATFORMS)
    kvm = profiles["KVM"]
    assert kvm.fitted_on.interval_ns == 50_000 and kvm.fitted_on.load == "idle"
    assert kvm.delivery.mean_ns == pytest.approx(65_310 - 50_000)
    assert kvm.delivery.sd_ns == pytest.approx(1_526)
    assert profiles["new timers"].hold_back_ns > 0 and profiles["Xen"].hold_back_ns == 0
    assert profiles["Linux"].irq_overhead_ns == 0 < profiles["QEMU"].irq_overhead_ns


@pytest.mark.parametrize(
    ("mean", "sd", "floor"), [(15_000.0, 1_500.0, None), (56.0, 83.0, None), (99.0, 5.0, 90.0)]
)
def test_delivery_model_matches_its_moments_and_is_never_negative(
    mean: float, sd: float, floor: float | None
) -> None:
    model = DeliveryModel.from_moments(mean, sd, floor_ns=floor)
    assert model.mean_ns == pytest.approx(mean) and model.sd_ns == pytest.approx(sd)
    assert model.floor_ns >= 0
    draws = model.sample(np.random.default_rng(0), 200_000)
    assert draws.min() >= 0
    assert draws.mean() == pytest.approx(mean, rel=0.02, abs=1.0)


def test_fitting_samples_separates_stalls_and_keeps_mean_and_sd() -> None:
    rng = np.random.default_rng(1)
    bulk = 60_000 + rng.gamma(4.0, 500.0, 1000)
    bulk[::25] += rng.exponential(200_000, 40)  # 4 % stalls, as a busy host shows
    model = DeliveryModel.from_samples(bulk)
    assert model.stall_prob == pytest.approx(0.04, abs=0.01)
    assert model.floor_ns == pytest.approx(bulk.min())
    assert model.mean_ns == pytest.approx(bulk.mean()) and model.sd_ns == pytest.approx(bulk.std())


@pytest.mark.parametrize("name", ["KVM", "kvm", "Kvm", "new timers", "New-Timers", "newtimers"])
def test_names_resolve_case_insensitively(name: str) -> None:
    assert resolve_platform(name).name.lower().replace(" ", "") in ("kvm", "newtimers")


def test_unknown_platform_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError) as err:
        resolve_platform("Hyper-V")
    message = str(err.value)
    assert "\n" not in message and "unknown platform 'Hyper-V'" in message
    assert all(name in message for name in PLATFORMS)


def broken(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``data`` with the key at ``path`` (dotted) set to ``value`` (or removed if ...)."""
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("version", 2, "reads profile version 1"),
        ("version", True, "reads profile version 1"),
        ("format", "something-else", "not a tickless sim profile"),
        ("delivery.floor_ns", ..., "'delivery.floor_ns' is missing"),
        ("exit_cost_ns", ..., "'exit_cost_ns' is missing"),
        ("delivery.shape", "4", "'delivery.shape' must be a number, got string"),
        ("irq_exits", None, "'irq_exits' must be a number, got null"),
        ("delivery.floor_ns", -5.0, "'delivery.floor_ns' must not be negative"),
        ("exit_cost_ns", -1, "'exit_cost_ns' must not be negative"),
        ("min_delta_ns", 1.5, "whole number"),
        ("min_delta_ns", 5, "min_delta_ns must be between"),
        ("delivery.stall_prob", 1.5, "stall_prob must be at most 1"),
        ("colour", "blue", "'colour' is not part of the profile format"),
        ("delivery", [1, 2], "'delivery' must be a JSON object"),
    ],
)
def test_malformed_profiles_are_one_clear_line(
    tmp_path: Path, path: str, value: Any, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken(kvm_json(), path, value)))
    with pytest.raises(ProfileError) as err:
        load_profile(bad)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(bad) in str(err.value)


def test_bad_json_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "tickless-sim-profile",')
    with pytest.raises(ProfileError, match="invalid JSON at line 1"):
        load_profile(bad)
    with pytest.raises(ProfileError, match="no such profile file"):
        resolve_platform(str(tmp_path / "missing.json"))


def test_a_profile_file_runs_like_a_builtin(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    data = kvm_json()
    data["name"] = "mine"
    path.write_text(json.dumps(data))
    spec = MeasureSpec(timer="lguest", interval_ns=50_000, count=300, backend="sim", seed=4)
    mine = simulate_measurement(MeasureSpec(**{**vars(spec), "platform": str(path)}), None)
    kvm = simulate_measurement(spec, None)
    assert mine.platform == "mine" and mine.intervals_ns == kvm.intervals_ns


def sim_record_file(tmp_path: Path, **changes: object) -> Path:
    base: dict[str, object] = {
        "timer": "lguest",
        "interval_ns": 100_000,
        "count": 1000,
        "backend": "sim",
        "platform": "VMware",
    }
    record = simulate_measurement(MeasureSpec(**{**base, **changes}), None)  # type: ignore[arg-type]
    path = tmp_path / "run.json"
    write_json_atomic(path, to_json_dict(record))
    return path


def test_fit_from_a_run_predicts_another_interval(tmp_path: Path) -> None:
    """Fit on a (simulated) VMware run at 100 us, predict 200 us: the fitted profile must
    recover VMware's delivery latency, so the prediction lands on VMware's own run."""
    run = sim_record_file(tmp_path)
    out = tmp_path / "fitted.json"
    result = CliRunner().invoke(main, ["sim", "fit", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    fitted = load_profile(out)
    assert fitted.name == "fitted-run"
    vmware = builtin_profiles()["VMware"].delivery
    assert fitted.delivery.mean_ns == pytest.approx(vmware.mean_ns, rel=0.02)
    base = MeasureSpec(timer="lguest", interval_ns=200_000, count=2000, backend="sim", seed=9)
    predicted = simulate_measurement(MeasureSpec(**{**vars(base), "platform": str(out)}), None)
    truth = simulate_measurement(MeasureSpec(**{**vars(base), "platform": "VMware"}), None)
    assert predicted.stats.mean_ns == pytest.approx(truth.stats.mean_ns, rel=0.01)


def test_fit_refuses_runs_that_do_not_measure_delivery(tmp_path: Path) -> None:
    periodic = sim_record_file(tmp_path, mode="periodic", count=50)
    with pytest.raises(ProfileError, match="tickless run"):
        fit_from_record(json_record(periodic), "x", "x")
    io = sim_record_file(tmp_path, loads={"io"}, count=50)
    with pytest.raises(ProfileError, match="idle run"):
        fit_from_record(json_record(io), "x", "x")
    for timer in ("pv", "precise"):  # early interrupts and a spin: lateness is not delivery
        spun = sim_record_file(tmp_path, timer=timer, interval_ns=1_000_000, count=50)
        with pytest.raises(ProfileError, match=f"a {timer} run wakes early"):
            fit_from_record(json_record(spun), "x", "x")


def json_record(path: Path) -> Any:
    from tickless.results.schema import load_results

    return load_results(path)[0]


def run_cli(args: list[str]) -> Any:
    return CliRunner().invoke(main, args)


def one_line_error(output: str) -> str:
    """Exactly one error line (click may put its usage lines before a usage error)."""
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    return errors[0]


def test_cli_unknown_platform(tmp_path: Path) -> None:
    out = tmp_path / "never.json"
    result = run_cli(
        ["measure", "--backend", "sim", "--platform", "hyperv", "--count", "10", "--json", str(out)]
    )
    assert result.exit_code != 0
    line = one_line_error(result.output)
    assert "unknown platform 'hyperv'" in line and "VirtualBox" in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        ('{"format": "tickless-sim-profile", "version": 9}', "version"),
        (None, "is missing"),
        ("NEGATIVE", "must not be negative"),
    ],
)
def test_cli_malformed_profile(tmp_path: Path, content: str | None, message: str) -> None:
    profile = tmp_path / "p.json"
    if content is None:
        profile.write_text(json.dumps(broken(kvm_json(), "delivery.scale_ns", ...)))
    elif content == "NEGATIVE":
        profile.write_text(json.dumps(broken(kvm_json(), "delivery.floor_ns", -1000)))
    else:
        profile.write_text(content)
    out = tmp_path / "never.json"
    result = run_cli(
        ["measure", "--backend", "sim", "--platform", str(profile), "--json", str(out)]
    )
    assert result.exit_code != 0
    assert message in one_line_error(result.output)
    assert not out.exists()


@pytest.mark.parametrize("interval", ["0us", "-50us"])
def test_cli_rejects_non_positive_intervals(interval: str) -> None:
    result = run_cli(["measure", "--backend", "sim", "--interval", interval])
    assert result.exit_code == 2 and "--interval" in result.output


def test_cli_fit_bad_inputs_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    garbage = tmp_path / "garbage.json"
    garbage.write_text("[1, 2")
    for args in (
        ["sim", "fit", str(tmp_path / "missing.json"), "--out", str(out)],
        ["sim", "fit", str(garbage), "--out", str(out)],
    ):
        result = run_cli(args)
        assert result.exit_code != 0
        one_line_error(result.output)
    two = tmp_path / "two.json"
    record = json.loads(sim_record_file(tmp_path).read_text())
    two.write_text(json.dumps([record, record]))
    result = run_cli(["sim", "fit", str(two), "--out", str(out)])
    assert result.exit_code != 0 and "--record" in one_line_error(result.output)
    assert not out.exists()
    result = run_cli(["sim", "fit", str(two), "--record", "1", "--out", str(out)])
    assert result.exit_code == 0 and load_profile(out).name == "fitted-two"


def test_cli_profiles_lists_and_exports(tmp_path: Path) -> None:
    listing = run_cli(["sim", "profiles"])
    assert listing.exit_code == 0 and all(name in listing.output for name in PLATFORMS)
    out = tmp_path / "xen.json"
    assert run_cli(["sim", "profiles", "XEN", "--out", str(out)]).exit_code == 0
    assert load_profile(out) == builtin_profiles()["Xen"]
    result = run_cli(["sim", "profiles", "nope"])
    assert result.exit_code != 0 and "unknown platform" in one_line_error(result.output)
