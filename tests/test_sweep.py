"""tickless sweep: grids, points parsed by the commands' own options, the table on disk,
and real local Dask clusters running, interrupting and resuming sweeps."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_signals import interrupt_once_under_way

from tickless.cli.sweep_points import build_points, find_command
from tickless.errors import InputError
from tickless.sweep.grid import grid_points, load_grid_file, merge, parse_param
from tickless.sweep.point import Outcome
from tickless.sweep.runners import flatten
from tickless.sweep.store import KEY, SweepStore, read_rows


def _points(args: list[str], params: list[str]):  # type: ignore[no-untyped-def]
    command, fixed = find_command(args)
    return build_points(command, fixed, merge([dict(parse_param(p) for p in params)]))


def test_a_grid_is_every_combination_in_order() -> None:
    grid = merge([dict([parse_param("guests=1,2"), parse_param("--mode=a,b,c")])])
    points = grid_points(grid)
    assert len(points) == 6
    assert points[0] == {"guests": "1", "mode": "a"} and points[1]["mode"] == "b"


@pytest.mark.parametrize("text", ["guests", "=1,2", "guests=1,,2", "guests=1,"])
def test_a_malformed_param_is_one_line(text: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_param(text)
    assert "\n" not in str(exc.value)


def test_grid_files_in_toml_and_yaml(tmp_path: Path) -> None:
    toml = tmp_path / "g.toml"
    toml.write_text('guests = [10, 100]\nmode = ["periodic", "periodic,nohz-full"]\nseed = 3\n')
    yaml = tmp_path / "g.yaml"
    yaml.write_text("guests: [10, 100]\nmode: [periodic, 'periodic,nohz-full']\nseed: 3\n")
    expected = {"guests": ["10", "100"], "mode": ["periodic", "periodic,nohz-full"], "seed": ["3"]}
    assert load_grid_file(toml) == expected == load_grid_file(yaml)
    bad = tmp_path / "bad.toml"
    bad.write_text("guests = [\n")
    with pytest.raises(InputError, match="grid file"):
        load_grid_file(bad)


def test_params_mean_what_the_options_mean() -> None:
    points = _points(["sim", "fleet", "--duration", "2s"], ["slop=0,50us", "guests=3"])
    assert [p.settings["slop_ns"] for p in points] == [0, 50_000]
    assert {p.spec.duration_ns for p in points} == {2_000_000_000}
    assert points[1].swept == ("slop_ns", "guests") and not points[0].timing
    assert points[0].key != points[1].key
    again = _points(["sim", "fleet", "--duration", "2000ms"], ["slop=0ns,50000ns", "guests=3"])
    assert [p.key for p in again] == [p.key for p in points]  # same settings, same points


@pytest.mark.parametrize(
    ("args", "params", "message"),
    [
        (["sim", "fleet"], ["planets=1,2"], "has no option --planets"),
        (["sim", "fleet"], ["slop=5parsecs"], "point slop=5parsecs: .*--slop"),
        (["sim", "fleet", "--slop", "1us"], ["slop=0,1ms"], "both swept"),
        (["sim", "fleet", "--json", "x.json"], ["guests=1"], "--json writes a file"),
        (["sim", "fleet", "--guests", "many"], [], "tickless sweep sim fleet: .*--guests"),
        (["sim", "fleet"], ["mode=periodic,sometimes"], "point mode=sometimes"),
        (["measure"], ["json=a.json"], "cannot be swept"),
        (["sim", "fleets"], [], "cannot sweep 'sim fleets'"),
    ],
)
def test_bad_settings_are_one_line_before_anything_runs(
    args: list[str], params: list[str], message: str
) -> None:
    with pytest.raises(InputError, match=message) as exc:
        _points(args, params)
    assert "\n" not in str(exc.value)


def test_the_store_keeps_each_point_once_and_knows_what_is_done(tmp_path: Path) -> None:
    points = _points(["sim", "fleet"], ["guests=1,2,3"])
    store = SweepStore(tmp_path / "s.parquet")
    store.add(points[0].row(Outcome({"wakeups_per_s": 1.5, "guests": 1}, None, 0.1, "h")))
    store.add(points[1].row(Outcome(None, "RuntimeError: boom", None, None)))
    store.add(points[0].row(Outcome({"wakeups_per_s": 2.5, "guests": 1}, None, 0.1, "h")))
    again = SweepStore(tmp_path / "s.parquet")
    assert again.finished() == {points[0].key}  # a failed point is retried
    rows = read_rows(tmp_path / "s.parquet")
    assert [r[KEY] for r in rows] == [points[0].key, points[1].key]
    assert rows[0]["wakeups_per_s"] == 2.5 and rows[0]["result.guests"] == 1
    assert rows[1]["sweep_error"] == "RuntimeError: boom"
    assert (tmp_path / "s.csv").read_text().count("\n") == 3  # header and two rows
    (tmp_path / "other.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="not a readable Parquet"):
        SweepStore(tmp_path / "other.parquet")


def test_records_flatten_to_scalar_columns() -> None:
    row = flatten({"a": {"b": 1, "c": [1.0, 2.0]}, "notes": ["x", "y"], "samples": list(range(9))})
    assert row == {"a.b": 1, "a.c.0": 1.0, "a.c.1": 2.0, "notes": "x; y"}


def _sweep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tickless", "sweep", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_sim_sweep_on_a_local_cluster_gives_the_serial_numbers(tmp_path: Path) -> None:
    from tickless.sim.fleet import FleetSpec, run_fleet

    out = tmp_path / "fleet.parquet"
    done = _sweep("sim", "fleet", "--param", "mode=periodic,nohz-full", "--param",
                  "slop=0,1ms", "--duration", "1s", "--guests", "20", "--workers", "2",
                  "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = read_rows(out)
    assert len(rows) == 4 and len({r[KEY] for r in rows}) == 4
    assert {r["sweep_status"] for r in rows} == {"ok"}
    for row in rows:
        spec = FleetSpec(guests=20, mode=str(row["mode"]), slop_ns=int(str(row["slop_ns"])),
                         duration_ns=1_000_000_000)  # fmt: skip
        serial = flatten(run_fleet(spec)[0].to_json_dict())
        assert row["host_timer_wakeups"] == serial["host_timer_wakeups"]
        assert row["process_cpu_s"] == serial["process_cpu_s"]
    assert "4 points of sim fleet: 0 already" in done.stderr
    rerun = _sweep("sim", "fleet", "--param", "mode=periodic,nohz-full", "--param",
                   "slop=0,1ms", "--duration", "1s", "--guests", "20", "--workers", "2",
                   "--out", str(out))  # fmt: skip
    assert rerun.returncode == 0 and "4 already in" in rerun.stderr and "0 to run" in rerun.stderr


@pytest.mark.kvm
def test_a_mixed_sweep_killed_half_way_resumes_with_each_point_once(tmp_path: Path) -> None:
    """Simulated and real KVM points: interrupted once the first point is written, then
    run again: every point is there exactly once, and none finished before was rerun."""
    out = tmp_path / "mixed.parquet"
    args = ["sweep", "measure", "--param", "backend=sim,kvm", "--param", "timer=pv,lapic",
            "--param", "interval=200us,300us", "--count", "2000", "--workers", "2",
            "--out", str(out)]  # fmt: skip
    status, stderr = interrupt_once_under_way(args, signal.SIGINT)
    assert status == 130, stderr
    assert "run the same command again to resume" in stderr
    first = {r[KEY]: r for r in read_rows(out)}
    assert 1 <= len(first) < 8, stderr  # the four KVM points take seconds, one at a time

    resumed = _sweep(*args[1:])
    assert resumed.returncode == 0, resumed.stderr
    assert f"8 points of measure: {len(first)} already in" in resumed.stderr
    rows = read_rows(out)
    assert len(rows) == 8 and len({r[KEY] for r in rows}) == 8
    assert {r["sweep_status"] for r in rows} == {"ok"}
    combos = {(r["backend"], r["timer"], r["interval_ns"]) for r in rows}
    assert len(combos) == 8
    for key, row in first.items():  # kept as written, not run again (later rows add columns)
        now = next(r for r in rows if r[KEY] == key)
        assert {k: now[k] for k in row} == row
    kvm_rows = [r for r in rows if r["backend"] == "kvm"]
    assert all(r["count"] == 2000 and r["lateness.early_count"] == 0 for r in kvm_rows)
    assert json.loads(json.dumps(rows[0]))  # plain values, as a CSV or a report reads them


def test_report_draws_a_sweeps_figures(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tickless.cli import main

    points = _points(["sim", "fleet"], ["guests=10,100", "mode=periodic,nohz-full"])
    store = SweepStore(tmp_path / "s.parquet")
    for p in points:
        record = {"wakeups_per_s": float(p.spec.guests), "cpu_percent_of_core": 1.0}
        store.add(p.row(Outcome(record, None, 0.1, "h")))
    args = ["report", str(tmp_path / "s.parquet"), "--out", str(tmp_path / "r.html")]
    result = CliRunner().invoke(main, [*args, "--figures", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == [
        "cpu-vs-guests.png",
        "wakeups-vs-guests.png",
    ]
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "4 (4 finished, 0 failed)" in page
