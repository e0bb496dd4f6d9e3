"""cyclictest histogram text: parses back to the right counts, trailer values and overflows."""

from __future__ import annotations

import re
from typing import Any

import pytest
from records import record_from

from tickless.report.cyclictest import cyclictest_histogram, latency_column
from tickless.results.schema import ResultRecord

BUCKET_LINE = re.compile(r"^(\d{6}) (\d{6}(?:\t\d{6})*)$")


def make_record(lateness_ns: list[int], interval_ns: int = 50_000) -> ResultRecord:
    intervals = [interval_ns + max(late, 0) for late in lateness_ns] or [interval_ns]
    return record_from(
        intervals,
        lateness_ns or [0],
        backend="sim",
        method="absolute",
        interval_ns=interval_ns,
        lateness_ns=lateness_ns,
        platform="KVM",
    )


def parse(text: str) -> dict[str, Any]:
    """An independent reader of the format, the way rteval-style scripts read it."""
    lines = text.split("\n")
    assert lines[0] == "# Histogram"
    assert text.endswith("\n\n"), "cyclictest ends the block with an empty line"
    buckets: list[list[int]] = []
    trailer: dict[str, list[int]] = {}
    cycles: dict[int, str] = {}
    for line in lines[1:]:
        if match := BUCKET_LINE.match(line):
            assert int(match[1]) == len(buckets), "buckets numbered 0, 1, 2, ..."
            buckets.append([int(c) for c in match[2].split("\t")])
        elif match := re.match(r"^# Thread (\d+):(.*)$", line):
            cycles[int(match[1])] = match[2]
        elif line.startswith("# ") and ": " in line:
            key, values = line[2:].split(": ", 1)
            trailer[key] = [int(v) for v in values.split(" ")]
    columns = list(zip(*buckets, strict=True))
    return {"columns": columns, "trailer": trailer, "cycles": cycles}


def test_golden_single_run() -> None:
    # µs: 0, 1, 2, 5 (overflow at -h 3), 0  -> truncated like cyclictest's calcdiff
    text = cyclictest_histogram([make_record([0, 1500, 2999, 5000, 999])], 3)
    assert text == (
        "# Histogram\n"
        "000000 000002\n"
        "000001 000001\n"
        "000002 000001\n"
        "# Total: 000000004\n"
        "# Min Latencies: 00000\n"
        "# Avg Latencies: 00001\n"
        "# Max Latencies: 00005\n"
        "# Histogram Overflows: 00001\n"
        "# Histogram Overflow at cycle number:\n"
        "# Thread 0: 00003\n"
        "\n"
    )


def test_counts_and_trailer_parse_back_per_column() -> None:
    a = [15_200, 15_900, 16_100, 17_999, 250_000, 1_000_000, 15_000]
    b = [100, 200, 900, 1_100]
    parsed = parse(cyclictest_histogram([make_record(a), make_record(b)], 100))
    col_a, col_b = parsed["columns"]
    assert len(col_a) == 100
    assert col_a[15] == 3 and col_a[16] == 1 and col_a[17] == 1 and sum(col_a) == 5
    assert col_b[0] == 3 and col_b[1] == 1 and sum(col_b) == 4
    t = parsed["trailer"]
    assert t["Total"] == [5, 4]
    assert t["Min Latencies"] == [15, 0]
    assert t["Avg Latencies"] == [(15 + 15 + 16 + 17 + 250 + 1000 + 15) // 7, 0]
    assert t["Max Latencies"] == [1000, 1]
    assert t["Histogram Overflows"] == [2, 0]
    assert parsed["cycles"] == {0: " 00004 00005", 1: ""}


def test_bucket_lines_have_cyclictest_widths_and_tabs() -> None:
    text = cyclictest_histogram([make_record([1_000]), make_record([2_000])], 4)
    assert "000001 000001\t000000\n" in text
    assert "# Total: 000000001 000000001\n" in text


def test_overflow_list_is_capped_at_the_histogram_size() -> None:
    column = latency_column([10_000] * 5 + [0], histogram_us=2)
    assert column.overflows == 5 and column.overflow_events == (0, 1)
    text = cyclictest_histogram([make_record([10_000] * 5 + [0])], 2)
    assert "# Thread 0: 00000 00001 # 00003 others\n" in text
    assert "# Histogram Overflows: 00005\n" in text


def test_early_events_bucket_at_zero_but_show_in_min() -> None:
    column = latency_column([-1_500, -999, 2_000], histogram_us=10)
    assert column.buckets[0] == 2 and column.buckets[2] == 1
    assert column.min_us == -1  # truncated toward zero, as C does
    assert column.avg_us == 0  # (-1 + 0 + 2) / 3 truncated
    text = cyclictest_histogram([make_record([-1_500, -999, 2_000])], 10)
    assert "# Min Latencies: -0001\n" in text


def test_run_without_raw_lateness_prints_cyclictest_initial_values() -> None:
    text = cyclictest_histogram([make_record([])], 2)
    assert "# Total: 000000000\n# Min Latencies: 1000000\n# Avg Latencies: 00000\n" in text


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="histogram size"):
        latency_column([1], 0)
    with pytest.raises(ValueError, match="no records"):
        cyclictest_histogram([], 10)
