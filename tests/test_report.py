"""Reports show the numbers a reader needs, and degrade to one clear line when they can't."""

from __future__ import annotations

from typing import Any

from records import record_from
from rich.console import Console

from tickless.report.console import render_compare_paper, render_result
from tickless.results.schema import HostCounts, ResultRecord


def make_record(**overrides: Any) -> ResultRecord:
    intervals = [50_120, 50_080, 49_990, 50_310, 50_045, 50_101, 50_222, 49_870]
    lateness = [120, 200, 190, 500, 545, 646, 868, 738]
    host = HostCounts(
        exits=4321,
        hypercalls=1234,
        injections=8,
        wakeups=16,
        timer_events=8,
        duration_s=2.0,
        cpu_s=0.25,
    )
    defaults: dict[str, Any] = {
        "method": "absolute",
        "host": host,
        "notes": ["3 events merged by the host"],
    }
    return record_from(intervals, lateness, **(defaults | overrides))


def _line(text: str, label: str) -> str:
    """The one table row holding ``label``, so a number is checked where it belongs."""
    (line,) = [line for line in text.splitlines() if label in line]
    return line


def render(fn: Any, record: ResultRecord) -> str:
    console = Console(record=True, width=140, color_system=None)
    fn(record, console)
    return console.export_text()


def test_result_table_shows_stats_lateness_and_host_cost() -> None:
    record = make_record()
    s = record.stats
    text = render(render_result, record)
    for label in ("kvm", "timer pv", "tickless", "absolute", "interval 50 µs", "load idle"):
        assert label in text
    assert "50.092" in _line(text, "mean measured interval")  # 400738 ns / 8, in µs
    assert f"[{s.ci99_low_ns / 1000:.3f}, {s.ci99_high_ns / 1000:.3f}]" in text
    assert "49.870" in text and "50.310" in text  # min and max
    assert f"{s.sd_ns / 1000:.3f}" in text
    assert "0.868" in text  # lateness max
    assert "events fired early" in text
    assert "4321" in text and "1234" in text  # exits, hypercalls
    assert "8.0" in _line(text, "host timer wake-ups/s")  # 16 over 2 s
    assert "0.250" in _line(text, "host CPU time")
    assert "12.5" in _line(text, "host CPU over 2.000 s")  # % of one core
    assert "4.0" in _line(text, "injections/s")  # 8 over 2 s
    assert "note: 3 events merged by the host" in text


def test_result_table_handles_zero_duration() -> None:
    record = make_record(
        host=HostCounts(0, 0, 0, 0, 0, duration_s=0.0, cpu_s=0.0), notes=[], hz=250
    )
    text = render(render_result, record)
    assert "n/a" in text
    assert "tickless (250 Hz)" in text
    assert "note:" not in text


def test_compare_with_paper_50us_idle() -> None:
    record = make_record()
    text = render(render_compare_paper, record)
    assert "d = 50 µs, idle load" in text
    assert "tickless pv (this run)" in text
    for platform in ("VMware", "VirtualBox", "QEMU", "KVM", "Xen", "new timers", "Linux"):
        assert platform in text
    assert "65.310" in text and "1.526" in text and "[65.265, 65.355]" in text  # paper's KVM
    assert "+15.310" in text  # paper's KVM mean - d
    assert "+0.092" in text  # ours: 50.092 - 50
    assert "95%" in text  # the caption's warning about the paper's CIs
    assert "150.025" not in text  # another setting's rows must not leak in


def test_compare_with_paper_io_load_uses_io_rows() -> None:
    text = render(render_compare_paper, make_record(interval_ns=10_000, load="io"))
    assert "491.723" in text  # VMware, 10 µs, io
    assert "3960" in text and "3960.000" not in text  # sd printed as the paper prints it
    assert "24.497" not in text  # VMware, 10 µs, idle


def test_compare_sim_backend_is_labelled() -> None:
    text = render(render_compare_paper, make_record(backend="sim", platform="xeon-e5645"))
    assert "tickless pv (this run, sim)" in text


def test_compare_not_a_paper_setting() -> None:
    text = render(render_compare_paper, make_record(interval_ns=70_000))
    assert "70 µs is not one of the paper's settings (10 µs, 50 µs, 100 µs, 150 µs)" in text
    assert "VMware" not in text
    assert len(text.strip().splitlines()) == 1


def test_compare_load_not_in_paper() -> None:
    text = render(render_compare_paper, make_record(load="cpu"))
    assert "paper measured only idle and io load" in text
    assert "'cpu'" in text
    assert "VMware" not in text
