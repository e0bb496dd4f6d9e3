"""The result file must round-trip exactly and refuse anything it cannot read faithfully."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from records import record_from

from tickless.atomicfile import OutputError
from tickless.results import schema
from tickless.results.schema import (
    SCHEMA_VERSION,
    HostCounts,
    ResultRecord,
    SchemaError,
    from_json_dict,
    load_results,
    to_json_dict,
    write_json_atomic,
)

REQUIRED_TOP_KEYS = [
    "schema_version",
    "backend",
    "timer",
    "mode",
    "method",
    "hz",
    "load",
    "interval_ns",
    "count",
    "mean_ns",
    "sd_ns",
    "ci99_ns",
    "min_ns",
    "p50_ns",
    "p99_ns",
    "p999_ns",
    "max_ns",
    "lateness",
    "host",
    "platform",
    "machine",
    "notes",
    "created_utc",
    "tool_version",
    "intervals_ns",
    "lateness_ns",
    "guest",
    "guest_kernel",
    "guest_clockevent",
    "guest_clocksource",
    "assists",
    "explain",
    "guest_rows",
    "advance",
    "interrupt_lateness",
    "interrupt_lateness_ns",
    "spin",
    "pit",
    "io",
    "late_causes",
    "guest_realtime_at_boot",
    "clock_agreement_ppm",
    "clocksource_unstable",
    "console_time_ratio",
]
VERSION_2_KEYS = REQUIRED_TOP_KEYS[-18:-13]
VERSION_3_KEYS = REQUIRED_TOP_KEYS[-13:-11]
VERSION_4_KEYS = REQUIRED_TOP_KEYS[-11:-7]
VERSION_5_KEYS = REQUIRED_TOP_KEYS[-7:]
LATENESS_KEYS = ["mean_ns", "sd_ns", "p99_ns", "max_ns", "early_count"]
HOST_KEYS = [
    "exits",
    "hypercalls",
    "injections",
    "wakeups",
    "timer_events",
    "duration_s",
    "cpu_s",
    "wakeups_per_s",
    "timer_events_per_s",
    "injections_per_s",
]


def make_record(**overrides: Any) -> ResultRecord:
    intervals = [50_120, 50_080, 49_990, 50_310, 50_045, 50_101]
    lateness = [120, 200, 190, 500, 545, 646]
    host = HostCounts(
        exits=40,
        hypercalls=7,
        injections=7,
        wakeups=7,
        timer_events=7,
        duration_s=0.35,
        cpu_s=0.01,
    )
    defaults: dict[str, Any] = {
        "method": "absolute",
        "host": host,
        "machine": {"kernel": "6.8.0", "tsc_khz": "2400000"},
        "notes": ["synthetic record for tests"],
    }
    return record_from(intervals, lateness, **(defaults | overrides))


def test_json_dict_has_the_documented_shape() -> None:
    d = to_json_dict(make_record())
    assert set(d) == set(REQUIRED_TOP_KEYS)
    assert set(d["lateness"]) == set(LATENESS_KEYS)
    assert set(d["host"]) == set(HOST_KEYS)
    assert d["schema_version"] == SCHEMA_VERSION == 5
    assert d["ci99_ns"][0] < d["mean_ns"] < d["ci99_ns"][1]
    assert d["host"]["wakeups_per_s"] == pytest.approx(20.0)
    assert d["load"] == "idle"
    assert d["platform"] is None
    json.dumps(d, allow_nan=False)  # plain JSON, no numpy scalars


@pytest.mark.parametrize("key", REQUIRED_TOP_KEYS)
def test_every_top_level_key_is_documented(key: str) -> None:
    assert key in (schema.__doc__ or "")


def test_round_trip_through_dict_and_file(tmp_path: Path) -> None:
    record = make_record(platform="xeon-e5645", hz=250, mode="periodic", load="io")
    assert from_json_dict(json.loads(json.dumps(to_json_dict(record)))) == record
    path = tmp_path / "run.json"
    write_json_atomic(path, to_json_dict(record))
    assert load_results(path) == [record]


def test_list_of_records_round_trips(tmp_path: Path) -> None:
    records = [make_record(), make_record(timer="lapic", method="relative")]
    path = tmp_path / "runs.json"
    write_json_atomic(path, [to_json_dict(r) for r in records])
    assert load_results(path) == records


def test_zero_duration_gives_zero_rates() -> None:
    host = HostCounts(1, 2, 3, 4, 5, duration_s=0.0, cpu_s=0.0)
    assert (host.wakeups_per_s, host.timer_events_per_s, host.injections_per_s) == (0, 0, 0)
    assert HostCounts(1, 2, 30, 40, 50, duration_s=10.0, cpu_s=0.0).timer_events_per_s == 5.0


def test_defaults_are_filled() -> None:
    record = make_record()
    assert record.load == "idle"
    assert record.tool_version  # package version, or "unknown"
    assert "T" in record.created_utc and record.created_utc.endswith("+00:00")


def test_bad_choice_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="mode"):
        make_record(mode="tick-less")


def _good() -> dict[str, Any]:
    return to_json_dict(make_record())


@pytest.mark.parametrize("key", REQUIRED_TOP_KEYS)
def test_missing_top_level_key(key: str) -> None:
    d = _good()
    del d[key]
    with pytest.raises(SchemaError, match=f"'{key}'"):
        from_json_dict(d)


@pytest.mark.parametrize(
    ("section", "key"),
    [("lateness", k) for k in LATENESS_KEYS] + [("host", k) for k in HOST_KEYS],
)
def test_missing_nested_key(section: str, key: str) -> None:
    d = _good()
    del d[section][key]
    with pytest.raises(SchemaError, match=f"'{section}.{key}' is missing"):
        from_json_dict(d)


@pytest.mark.parametrize("version", [0, 6, "1", 1.0, None])
def test_wrong_schema_version(version: object) -> None:
    d = _good()
    d["schema_version"] = version
    with pytest.raises(SchemaError, match="'schema_version'"):
        from_json_dict(d)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["backend"], "qemu"),
        (["mode"], "tickles"),
        (["method"], 1),
        (["timer"], ""),
        (["hz"], "100"),
        (["hz"], 0),
        (["interval_ns"], 50_000.0),
        (["interval_ns"], 0),
        (["count"], 1.5),
        (["count"], True),
        (["mean_ns"], "65.3"),
        (["mean_ns"], True),
        (["sd_ns"], None),
        (["sd_ns"], float("nan")),
        (["ci99_ns"], [1.0]),
        (["ci99_ns"], [1.0, "2"]),
        (["ci99_ns"], {"low": 1, "high": 2}),
        (["lateness"], []),
        (["lateness", "early_count"], -1),
        (["lateness", "p99_ns"], "x"),
        (["host"], None),
        (["host", "exits"], 3.0),
        (["host", "wakeups_per_s"], 999.0),
        (["machine"], {"tsc_khz": 2400000}),
        (["machine"], ["kernel"]),
        (["notes"], "one note"),
        (["notes"], ["ok", 3]),
        (["created_utc"], "yesterday"),
        (["tool_version"], None),
        (["platform"], 3),
        (["intervals_ns"], [50_000, 50_000.5]),
        (["lateness_ns"], None),
    ],
)
def test_wrong_type_names_the_key(path: list[str], value: object) -> None:
    d = _good()
    target = d
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(SchemaError, match=f"'{'.'.join(path)}'") as info:
        from_json_dict(d)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("section", [None, "host", "lateness"])
def test_unknown_key_rejected(section: str | None) -> None:
    d = _good()
    target = d if section is None else d[section]
    target["surprise"] = 1
    with pytest.raises(SchemaError, match="surprise"):
        from_json_dict(d)


def test_stats_are_taken_as_stored_not_recomputed() -> None:
    d = _good()
    d["mean_ns"] = 12_345.0  # disagrees with intervals_ns; we report what the file says
    assert from_json_dict(d).stats.mean_ns == 12_345.0


def test_atomic_write_keeps_old_file_when_serialisation_fails(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    write_json_atomic(path, {"old": True})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_json_atomic(path, {"new": object()})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["result.json"]


def test_atomic_write_refuses_nan(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    with pytest.raises(ValueError):
        write_json_atomic(path, {"mean_ns": float("nan")})
    assert os.listdir(tmp_path) == []


def test_atomic_write_removes_temp_file_when_replace_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "result.json"
    write_json_atomic(path, [1, 2])

    def fail_replace(src: object, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(OutputError, match=r"cannot write .*result\.json: disk on fire"):
        write_json_atomic(path, [3, 4])
    assert json.loads(path.read_text()) == [1, 2]
    assert os.listdir(tmp_path) == ["result.json"]


def test_atomic_write_replaces_and_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    write_json_atomic(path, {"a": 1})
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o640)
    write_json_atomic(path, {"a": 2, "µ": "ok"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": 2, "µ": "ok"}
    assert path.stat().st_mode & 0o777 == 0o640
    assert path.read_text(encoding="utf-8").endswith("\n")


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="no such file") as info:
        load_results(tmp_path / "nope.json")
    assert "nope.json" in str(info.value)


def test_load_bad_json_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "backend": "kvm",\n  oops\n}\n')
    with pytest.raises(SchemaError, match=r"bad\.json: invalid JSON at line 3 column 3"):
        load_results(path)


def test_load_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SchemaError, match="UTF-8"):
        load_results(path)


@pytest.mark.parametrize("payload", [3, "text", None])
def test_load_wrong_top_level_type(tmp_path: Path, payload: object) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(SchemaError, match="expected a result object or a list"):
        load_results(path)


def test_load_names_the_bad_record_in_a_list(tmp_path: Path) -> None:
    good = _good()
    bad = copy.deepcopy(good)
    del bad["host"]["cpu_s"]
    path = tmp_path / "runs.json"
    path.write_text(json.dumps([good, bad]))
    with pytest.raises(SchemaError, match=r"runs\.json: record 1: key 'host\.cpu_s' is missing"):
        load_results(path)


def test_load_empty_list(tmp_path: Path) -> None:
    path = tmp_path / "none.json"
    path.write_text("[]")
    assert load_results(path) == []


def test_a_version_1_file_still_loads() -> None:
    """Records written before the Linux guest: no guest keys; a kvm one ran the small guest."""
    d = _good()
    for key in (*VERSION_2_KEYS, *VERSION_3_KEYS, *VERSION_4_KEYS, *VERSION_5_KEYS):
        del d[key]
    d["schema_version"] = 1
    record = from_json_dict(d)
    assert record.guest == ("small" if record.backend == "kvm" else None)
    assert record.guest_clockevent is None
    assert record.assists == {}
    d["guest"] = "linux"  # a version 1 file cannot carry version 2 keys
    with pytest.raises(SchemaError, match="'guest'"):
        from_json_dict(d)


def test_which_pit_ran_round_trips_and_is_checked() -> None:
    record = make_record()
    record.pit = "tickless-i8254"
    assert from_json_dict(json.loads(json.dumps(to_json_dict(record)))) == record
    bad = to_json_dict(record)
    bad["pit"] = "8259"
    with pytest.raises(SchemaError, match="'pit'"):
        from_json_dict(bad)


def test_a_version_4_file_does_not_know_its_pit() -> None:
    d = _good()
    for key in VERSION_5_KEYS:
        del d[key]
    d["schema_version"] = 4
    assert from_json_dict(d).pit is None
    assert from_json_dict(d).guest_realtime_at_boot is None
    d["pit"] = "kvm-pit2"  # a version 4 file cannot carry version 5 keys
    with pytest.raises(SchemaError, match="'pit'"):
        from_json_dict(d)


def test_linux_guest_fields_round_trip() -> None:
    record = make_record()
    record.guest_realtime_at_boot = 978_307_200_000_000_000  # 2001-01-01T00:00:00Z
    record.guest, record.guest_kernel = "linux", "6.12.117"
    record.guest_clockevent, record.guest_clocksource = "tickless", "tickless"
    record.assists = {"int3": 1}
    assert from_json_dict(json.loads(json.dumps(to_json_dict(record)))) == record
    bad = to_json_dict(record)
    bad["assists"] = {"int3": -1}
    with pytest.raises(SchemaError, match="'assists'"):
        from_json_dict(bad)


def test_a_version_2_pv_record_reads_as_lguest() -> None:
    """Until version 3, "pv" named lguest's relative device; the name moved to the PV
    deadline device, so an old pv row must not pass for the new one."""
    d = _good()
    for key in (*VERSION_3_KEYS, *VERSION_4_KEYS, *VERSION_5_KEYS):
        del d[key]
    d["schema_version"], d["timer"] = 2, "pv"
    record = from_json_dict(d)
    assert record.timer == "lguest" and record.explain is None and record.guest_rows == []
    assert record.advance == "off"  # lguest's device never spun
    d["schema_version"] = 3
    with pytest.raises(SchemaError, match="'explain'"):
        from_json_dict(d)


def test_explain_and_guest_rows_round_trip() -> None:
    from tickless.results.breakdown import PARTS, Breakdown, GuestRow

    record = make_record()
    record.explain = Breakdown(
        event_index=[1, 3],
        parts_ns={part: [10, 20] for part in PARTS},
        spun_events=1,
        advance_ns=40_000,
        dominant={"mean": "guest_entry", "p99": "host_wake_late", "max": "clock_gap"},
    )
    record.guest_rows = [GuestRow("guest0", 3, 1e6, 10.0, 5.0, 9.0, 12.0, 0, 0.5)]
    d = json.loads(json.dumps(to_json_dict(record)))
    assert d["explain"]["summary_ns"]["spin"]["max"] == 20.0
    assert from_json_dict(d) == record
    d["explain"]["parts_ns"]["spin"] = [1]
    with pytest.raises(SchemaError, match="every part"):
        from_json_dict(d)
