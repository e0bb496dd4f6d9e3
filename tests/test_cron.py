"""Cron guests (``tickless cron``, ``results/cron.py``): schedules from a seed, the checks
of a merged sequence, and on KVM: a warped group repeats its sequence exactly, interleaves
as the same group does in real time, and ``idle --warp-idle`` runs 1,000 s of housekeeping
with every run at or after its deadline."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner
from records import cron_record

from tickless.cli import main
from tickless.errors import InputError
from tickless.results.cron import CronEvent, CronRecord, CronSpec, canonical_order, summarize

S = 1_000_000_000
MS = 1_000_000


def expected_runs(spec: CronSpec) -> int:
    """Runs with a deadline before the end: the guest stops at the end, before its timers."""
    return sum(
        math.ceil((spec.duration_ns - first) / period) if first < spec.duration_ns else 0
        for schedule in spec.schedules()
        for period, first in schedule
    )


# --- pure -------------------------------------------------------------------------------------


def test_schedules_are_drawn_from_the_seed_on_the_grid_and_distinct() -> None:
    spec = CronSpec(periods_ns=(S, 300 * MS), duration_ns=10 * S, guests=8, seed=3)
    a, b = spec.schedules(), spec.schedules()
    assert a == b  # a function of the seed
    assert a != CronSpec(periods_ns=(S, 300 * MS), duration_ns=10 * S, guests=8, seed=4).schedules()
    firsts = [first for schedule in a for _, first in schedule]
    assert len(set(firsts)) == len(firsts)
    assert all(first % spec.resolution_ns == 0 and first > 0 for first in firsts)
    for schedule in a:
        assert [p for p, _ in schedule] == [S, 300 * MS]
        assert all(first <= period for period, first in schedule)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"periods_ns": ()}, "--every"),
        ({"periods_ns": (500_000,)}, "--every"),
        ({"guests": 0}, "--guests"),
        ({"resolution_ns": 2 * S}, "--resolution"),
        ({"duration_ns": 10**6 * S}, "--duration"),
    ],
)
def test_bad_specs_are_refused_in_one_line(kw: dict[str, object], words: str) -> None:
    args: dict[str, object] = {"periods_ns": (S,), "duration_ns": 10 * S}
    args.update(kw)
    with pytest.raises(InputError, match=words):
        CronSpec(**args)  # type: ignore[arg-type]


def test_summary_counts_early_runs_and_order_beyond_the_resolution() -> None:
    events = [
        CronEvent(0, 0, 100 * MS, 100 * MS),
        CronEvent(1, 0, 130 * MS, 131 * MS),
        CronEvent(0, 1, 115 * MS, 132 * MS),  # ran after a deadline 15 ms later: disorder
        CronEvent(1, 1, 140 * MS, 139 * MS),  # early
    ]
    record = cron_record()
    summarize(record, events)
    assert record.early == 1
    assert record.out_of_order == 1
    assert record.lateness_max_ns == 17 * MS
    assert record.events[2] == [0, 1, 115 * MS, 132 * MS]


def test_the_sequence_hash_ignores_ties_and_the_origin_but_not_order() -> None:
    """Guests due at one deadline may run in either order; the hash is of the deadlines
    from the origin, so two runs whose "now" differed compare."""
    a = [CronEvent(0, 0, 100 * MS, 100 * MS), CronEvent(1, 0, 100 * MS, 100 * MS + 5)]
    b = [CronEvent(1, 0, 100 * MS, 100 * MS), CronEvent(0, 0, 100 * MS, 100 * MS + 5)]

    def keys(events: list[CronEvent]) -> list[tuple[int, int, int]]:
        return [(e.guest, e.timer, e.deadline_ns) for e in canonical_order(events)]

    assert keys(a) == keys(b)
    ra, rb = cron_record(), cron_record()
    summarize(ra, a)
    summarize(rb, b)
    assert ra.sequence_sha256 == rb.sequence_sha256
    shifted = [CronEvent(e.guest, e.timer, e.deadline_ns + 7, e.ran_ns + 7) for e in a]
    rc = cron_record(origin_ns=7)
    summarize(rc, shifted)
    assert rc.sequence_sha256 == ra.sequence_sha256
    swapped = [CronEvent(0, 0, 200 * MS, 200 * MS), CronEvent(1, 0, 100 * MS, 201 * MS)]
    rd, re_ = cron_record(), cron_record()
    summarize(rd, swapped)
    summarize(re_, sorted(swapped, key=lambda e: e.deadline_ns))
    assert rd.sequence_sha256 != re_.sequence_sha256


# --- KVM --------------------------------------------------------------------------------------


def _cron(spec: CronSpec) -> CronRecord:
    from tickless.measure.cron import run_cron

    return run_cron(spec)


@pytest.mark.kvm
def test_a_warped_group_repeats_its_sequence_exactly() -> None:
    """Deterministic runs: four guests, two timers each, 200 s of guest time warped, twice
    with one seed: the same sequence (hash), every run at or after its deadline, none out of
    order, and every run the schedules ask for."""
    spec = CronSpec(
        periods_ns=(S, 300 * MS), duration_ns=200 * S, guests=4, warp_idle=True, seed=11
    )
    first, second = _cron(spec), _cron(spec)
    for record in (first, second):
        assert not record.partial
        assert record.early == 0 and record.out_of_order == 0
        assert record.runs == len(record.events) == expected_runs(spec)
        assert record.warps > 0 and record.warped_s > 150
        assert record.guest_time_s >= 200
    assert first.sequence_sha256 == second.sequence_sha256


@pytest.mark.kvm
def test_a_warped_group_interleaves_as_the_same_group_in_real_time() -> None:
    """One timeline for four guests: warped, their merged event order is the one the same
    four produce at dilation 1 without warp. Deadlines sit on a 100 ms grid, so the real-time
    run keeps its order unless the host delays a wake-up by 100 ms (with the 10 ms default,
    a loaded host's 10 ms delays once swapped three runs)."""
    base = dict(
        periods_ns=(S, 300 * MS), duration_ns=4 * S, guests=4, seed=5, resolution_ns=100 * MS
    )
    warped = _cron(CronSpec(**base, warp_idle=True))  # type: ignore[arg-type]
    real = _cron(CronSpec(**base))  # type: ignore[arg-type]
    for record in (warped, real):
        assert record.early == 0 and record.out_of_order == 0
        assert record.runs == len(record.events) > 40
    assert real.warps == 0 and warped.warps > 0
    assert warped.sequence_sha256 == real.sequence_sha256


@pytest.mark.kvm
def test_a_dilated_group_keeps_its_schedule_in_guest_time() -> None:
    """At dilation 4 without warp, the runs keep their guest-time deadlines (none early,
    every run the schedules ask for), and the run cannot take less wall time than a
    quarter of its guest time (how long it does take is a figure; the clock's rate is
    checked against the host's in test_time_bending)."""
    spec = CronSpec(periods_ns=(200 * MS,), duration_ns=2 * S, guests=2, rate=Fraction(4))
    record = _cron(spec)
    assert record.early == 0 and record.out_of_order == 0
    assert record.runs == expected_runs(spec)
    assert record.warps == 0
    ran_ns = [event[3] for event in record.events]
    span_s = (max(ran_ns) - min(ran_ns)) / S  # guest time between runs it saw start and end
    assert span_s >= 1.5
    assert record.wall_time_s >= span_s / 4 * 0.995  # 0.5 %: TSC against monotonic


@pytest.mark.kvm
def test_idle_warp_runs_1000_s_of_housekeeping(tmp_path: Path) -> None:
    """The issue's run: ``idle --guests 1 --duration 1000s --warp-idle``: the record shows
    at least 1,000 s of guest time, how much was warped, the 1 s timer's 1,000 runs and the
    4 s timer's 250, none before its deadline in guest time. The guest time not warped
    over is at most the wall time the run took, so the warps account for the rest. (How
    many host timer wake-ups the holds after the warps cost depends on how fast the guest
    runs on: a figure, ``benchmarks/bending_time.py`` prints it.)"""
    out = tmp_path / "idle.json"
    args = ["idle", "--guests", "1", "--duration", "1000s", "--warp-idle", "--json", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    d = json.loads(out.read_text())
    assert d["guest_time_s"] >= 1000
    assert d["warped_s"] > 0
    assert d["guest_time_s"] - d["warped_s"] <= d["wall_time_s"] * 1.005
    assert d["timer_runs"] == [1000, 250]
    assert d["early_timer_runs"] == 0
    assert d["dilation"] == "1"


@pytest.mark.kvm
def test_an_idle_fleet_warps_only_once_every_guest_booted(tmp_path: Path) -> None:
    """Three warped idle guests are one group: the first booted must not warp alone (nor
    may a guest boot on a clock a warp holds still). Each runs its own 50 s of guest time:
    50 runs of its 1 s timer and 12 or 13 of its 4 s timer (its phase decides), and their
    starts are apart by no warped time."""
    out = tmp_path / "idle.json"
    args = ["idle", "--guests", "3", "--duration", "50s", "--warp-idle", "--json", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    d = json.loads(out.read_text())
    assert d["guests"] == 3 and d["early_timer_runs"] == 0
    assert d["timer_runs"][0] == 150 and 36 <= d["timer_runs"][1] <= 39
    assert d["guest_time_s"] >= 50 and d["warped_s"] > 0
    assert d["guest_time_s"] - d["warped_s"] <= d["wall_time_s"] * 1.005
    # Past its 50 s, the run's guest time is the spread of the guests' starts: not warped
    # (a guest warping alone while the others boot would spread them by whole seconds of
    # warps), so at most the wall time.
    assert d["guest_time_s"] - 50 <= d["wall_time_s"] * 1.005
