"""A profile fitted from a real KVM run predicts a second real run at another interval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tickless.backends import measure
from tickless.cli import main
from tickless.results.schema import to_json_dict, write_json_atomic
from tickless.results.spec import MeasureSpec

FIT_INTERVAL_NS = 100_000
PREDICT_INTERVAL_NS = 200_000
EVENTS = 1000
# Allowed |predicted - measured| / measured for the mean interval at 200 us.
MEAN_ERROR_BOUND = 0.15


def fit_and_predict(tmp_path: Path) -> tuple[float, float, float]:
    """One back-to-back pair: (mean at 100 us, mean at 200 us, predicted mean at 200 us)."""
    common = {"timer": "lguest", "count": EVENTS, "backend": "kvm"}
    fit_run = measure(MeasureSpec(interval_ns=FIT_INTERVAL_NS, **common))  # type: ignore[arg-type]
    target = measure(MeasureSpec(interval_ns=PREDICT_INTERVAL_NS, **common))  # type: ignore[arg-type]
    assert fit_run.lateness.early_count == 0 and target.lateness.early_count == 0

    tmp_path.mkdir()
    result_path, profile_path = tmp_path / "run100.json", tmp_path / "kvm-here.json"
    write_json_atomic(result_path, to_json_dict(fit_run))
    out = CliRunner().invoke(
        main, ["sim", "fit", str(result_path), "--name", "kvm-here", "--out", str(profile_path)]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(profile_path.read_text())["name"] == "kvm-here"
    predicted = measure(
        MeasureSpec(
            timer="lguest",
            interval_ns=PREDICT_INTERVAL_NS,
            count=EVENTS,
            backend="sim",
            platform=str(profile_path),
        )
    )
    assert predicted.backend == "sim" and predicted.platform == "kvm-here"
    return fit_run.stats.mean_ns, target.stats.mean_ns, predicted.stats.mean_ns


@pytest.mark.kvm
def test_profile_fitted_at_100us_predicts_a_real_run_at_200us(tmp_path: Path) -> None:
    """Measure lguest 100 us x 1000 on KVM, fit a profile, predict lguest 200 us x 1000,
    measure it (lguest: its lateness is the delivery the profile models).

    The bound, 15 % of the measured mean, is set from this noisy nested host. The delivery
    latency drifts between runs (lateness means of 55 to 112 us over runs a few minutes
    apart: up to ~17 % of a ~290 us interval), but back-to-back pairs, as here, agreed
    within 1 % in 12 of 16 trials and within 12 % in all 16. The model assumes the latency
    does not depend on the interval, which held within that noise. A burst of load from
    elsewhere can still shift one run of a pair (32 % off while another process ran
    stress-ng on both cores), so a second pair is measured if the first misses; the bound
    must hold for one of them. It is not vacuous: predicting the bare interval (mean = d),
    i.e. a model that ignored the fitted latency, is over 20 % off on this host.
    """
    misses = []
    for attempt in range(2):
        fitted_mean, real_mean, sim_mean = fit_and_predict(tmp_path / str(attempt))
        error = abs(sim_mean - real_mean) / real_mean
        # A latency-free model would not pass: the bound means something on this host.
        assert abs(PREDICT_INTERVAL_NS - real_mean) / real_mean > MEAN_ERROR_BOUND
        if error < MEAN_ERROR_BOUND:
            return
        misses.append(
            f"predicted {sim_mean / 1000:.1f} us, measured {real_mean / 1000:.1f} us "
            f"({100 * error:.1f} % off; fitted at 100 us: {fitted_mean / 1000:.1f} us)"
        )
    pytest.fail("; ".join(misses))
