"""Statistics checked against independent computations (statistics module, scipy.stats.sem)."""

from __future__ import annotations

import math
import statistics

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from tickless.results.stats import (
    histogram,
    implied_z,
    summarize,
    summarize_lateness,
)

interval_lists = st.lists(st.integers(min_value=0, max_value=10**9), min_size=2, max_size=300)


def test_known_values() -> None:
    s = summarize([1, 2, 3, 4])
    assert s.count == 4
    assert s.mean_ns == 2.5
    assert s.sd_ns == pytest.approx(math.sqrt(1.25))  # ddof=0, not sqrt(5/3)
    # t(0.995, 3) = 5.840909 from printed tables; sem = sqrt(5/3)/2
    half = 5.840909 * math.sqrt(5 / 3) / 2
    assert s.ci99_low_ns == pytest.approx(2.5 - half, rel=1e-6)
    assert s.ci99_high_ns == pytest.approx(2.5 + half, rel=1e-6)
    assert (s.min_ns, s.p50_ns, s.max_ns) == (1.0, 2.5, 4.0)


@settings(max_examples=200)
@given(interval_lists)
def test_summarize_matches_independent_computation(values: list[int]) -> None:
    s = summarize(values)
    n = len(values)
    scale = max(values) or 1
    assert s.count == n
    assert s.mean_ns == pytest.approx(statistics.fmean(values), rel=1e-12, abs=1e-9 * scale)
    assert s.sd_ns == pytest.approx(statistics.pstdev(values), rel=1e-9, abs=1e-6 * scale)
    assert (s.min_ns, s.max_ns) == (min(values), max(values))
    p50, p99, p999 = np.percentile(values, [50, 99, 99.9])
    assert (s.p50_ns, s.p99_ns, s.p999_ns) == pytest.approx((p50, p99, p999))

    sem = float(sps.sem(values, ddof=1))
    half = float(sps.t.ppf(0.995, n - 1)) * sem
    mean = statistics.fmean(values)
    assert s.ci99_low_ns == pytest.approx(mean - half, rel=1e-9, abs=1e-6 * scale)
    assert s.ci99_high_ns == pytest.approx(mean + half, rel=1e-9, abs=1e-6 * scale)
    assert s.ci99_low_ns <= s.mean_ns <= s.ci99_high_ns
    assert s.min_ns <= s.p50_ns <= s.p99_ns <= s.p999_ns <= s.max_ns


def test_ci_uses_t_not_normal_for_small_samples() -> None:
    s = summarize([100, 110, 90, 105, 95])
    normal_half = 2.5758 * statistics.stdev([100, 110, 90, 105, 95]) / math.sqrt(5)
    assert (s.ci99_high_ns - s.mean_ns) > 1.5 * normal_half  # t(0.995, 4) = 4.604


@pytest.mark.parametrize("values", [[50_000], [7.5]])
def test_single_sample_has_point_ci(values: list[float]) -> None:
    s = summarize(values)
    assert s.count == 1
    assert s.ci99_low_ns == s.ci99_high_ns == s.mean_ns == values[0]
    assert s.sd_ns == 0.0


def test_constant_samples_have_point_ci() -> None:
    s = summarize([50_000] * 10)
    assert (s.ci99_low_ns, s.ci99_high_ns) == (50_000.0, 50_000.0)
    assert not math.isnan(s.ci99_low_ns)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "empty"),
        ([1.0, float("nan")], "NaN"),
        ([1.0, float("inf")], "infinite"),
        ([[1, 2], [3, 4]], "1-D"),
    ],
)
def test_bad_input_rejected(values: npt.ArrayLike, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        summarize(values)
    with pytest.raises(ValueError, match=message):
        summarize_lateness(values)


def test_accepts_numpy_int64() -> None:
    arr = np.array([50_000, 50_100, 49_900], dtype=np.int64)
    assert summarize(arr).mean_ns == 50_000.0


def test_lateness_counts_early_events() -> None:
    late = summarize_lateness([-3, 0, 5, -1, 10, 2])
    assert late.early_count == 2  # zero is on time, not early
    assert late.max_ns == 10.0
    assert late.mean_ns == pytest.approx(13 / 6)
    assert late.sd_ns == pytest.approx(statistics.pstdev([-3, 0, 5, -1, 10, 2]))
    assert summarize_lateness([0, 1, 2]).early_count == 0


@given(st.lists(st.integers(min_value=-(10**6), max_value=10**6), min_size=1, max_size=200))
def test_lateness_matches_independent_computation(values: list[int]) -> None:
    late = summarize_lateness(values)
    assert late.early_count == sum(1 for v in values if v < 0)
    assert late.max_ns == max(values)
    assert late.mean_ns == pytest.approx(statistics.fmean(values), abs=1e-6)
    assert late.p99_ns == pytest.approx(float(np.percentile(values, 99)))


def test_histogram_edges_are_aligned_multiples() -> None:
    edges, counts = histogram([50_020, 50_490, 50_500, 51_999], bin_ns=500)
    assert edges.tolist() == [50_000, 50_500, 51_000, 51_500, 52_000]
    assert counts.tolist() == [2, 1, 0, 1]  # 50_500 falls in [50_500, 51_000)


def test_histogram_max_on_an_edge_gets_its_own_bin() -> None:
    edges, counts = histogram([0, 10], bin_ns=10)
    assert edges.tolist() == [0, 10, 20]
    assert counts.tolist() == [1, 1]


@given(
    st.lists(st.integers(min_value=-(10**5), max_value=10**5), min_size=1, max_size=200),
    st.sampled_from([1.0, 7.0, 100.0, 333.3, 1000.0, 12_345.0]),
)
def test_histogram_counts_every_sample(values: list[int], bin_ns: float) -> None:
    edges, counts = histogram(values, bin_ns)
    assert counts.sum() == len(values)
    assert len(edges) == len(counts) + 1
    assert edges[0] <= min(values)
    assert edges[-1] > max(values)
    assert np.allclose(np.diff(edges), bin_ns)


@pytest.mark.parametrize("bin_ns", [0.0, -1.0, float("nan")])
def test_histogram_rejects_bad_bin(bin_ns: float) -> None:
    with pytest.raises(ValueError, match="bin width"):
        histogram([1, 2, 3], bin_ns)


def test_histogram_rejects_absurd_bin_count() -> None:
    with pytest.raises(ValueError, match="wider bin"):
        histogram([0, 10**9], 1.0)


def test_implied_z_of_a_95_percent_normal_interval() -> None:
    sd, n, mean = 2.0, 400, 10.0
    half = 1.96 * sd / math.sqrt(n)
    assert implied_z(sd, n, mean - half, mean + half) == pytest.approx(1.96)


def test_implied_z_of_our_own_interval_is_t_quantile() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(50_000, 100, size=4500)
    s = summarize(values)
    sd1 = float(np.std(values, ddof=1))
    z = implied_z(sd1, s.count, s.ci99_low_ns, s.ci99_high_ns)
    assert z == pytest.approx(float(sps.t.ppf(0.995, 4499)))
    assert z > 2.57


@pytest.mark.parametrize(("sd", "n"), [(0.0, 10), (-1.0, 10), (1.0, 0)])
def test_implied_z_rejects_degenerate_input(sd: float, n: int) -> None:
    with pytest.raises(ValueError):
        implied_z(sd, n, 0.0, 1.0)
