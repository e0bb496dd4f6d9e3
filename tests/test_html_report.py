"""The HTML report: one self-contained page with our table beside the paper's, and figures.
Also ``tickless report`` end to end."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from records import kvm_like_record

from tickless.cli import main
from tickless.report.html_report import build_report
from tickless.results.schema import (
    HostCounts,
    ResultRecord,
    to_json_dict,
    write_json_atomic,
)
from tickless.results.stats import summarize_lateness

DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def make_record(n: int = 200, seed: int = 0, **overrides: Any) -> ResultRecord:
    overrides.setdefault("created_utc", "2025-01-01T00:00:00+00:00")
    overrides.setdefault("tool_version", "0.1.0")
    overrides.setdefault(
        "host",
        HostCounts(
            exits=n,
            hypercalls=0,
            injections=n,
            wakeups=n,
            timer_events=n,
            duration_s=2.0,
            cpu_s=0.5,
        ),
    )
    return kvm_like_record(n, seed, overrides.pop("interval_ns", 50_000), 700.0, **overrides)


def without_images(page: str) -> str:
    return DATA_URI.sub('src="data:"', page)


def row_of(page: str, anchor: str) -> str:
    (row,) = [line for line in page.splitlines() if f'href="#{anchor}"' in line]
    return row


@pytest.fixture(scope="module")
def records() -> list[ResultRecord]:
    return [
        make_record(seed=1),  # 50 µs idle: the paper's KVM row is 65.310
        make_record(seed=2, timer="pv", backend="sim", platform="KVM", load="io"),
        make_record(seed=3, timer="host", backend="host", load="cpu"),
        make_record(seed=4, interval_ns=10_000),
    ]


@pytest.fixture(scope="module")
def page(records: list[ResultRecord]) -> str:
    return build_report(records, "Our Table 1")


def test_every_record_has_its_row_with_paper_formatted_numbers(
    page: str, records: list[ResultRecord]
) -> None:
    for i, record in enumerate(records, start=1):
        row = row_of(page, f"run-{i}")
        s = record.stats
        assert f"{s.mean_ns / 1000:.3f}" in row
        assert f"{s.sd_ns / 1000:.3f}" in row
        assert f"[{s.ci99_low_ns / 1000:.3f}, {s.ci99_high_ns / 1000:.3f}]" in row
        assert f"<td>{record.timer}</td>" in row and f"<td>{record.load}</td>" in row
        assert f'<td class="num">{s.count}</td>' in row
        assert "25.0 % of a core" in row


def test_paper_rows_sit_beside_ours_for_the_same_interval_and_load(page: str) -> None:
    assert "65.310" in page  # paper: KVM, 50 µs, idle
    assert "paper: new timers" in page
    # cpu load: the paper has no such rows, and says so.
    assert "the paper has no rows for d = 50 µs, load &quot;cpu&quot;" in page


def test_groups_follow_interval_then_the_papers_load_order(page: str) -> None:
    headers = re.findall(r'<tr class="group"><th colspan="\d+">([^<]+)</th>', page)
    assert headers == [
        "d = 10 µs, load idle",
        "d = 50 µs, load idle",
        "d = 50 µs, load io",
        "d = 50 µs, load cpu",
    ]


def test_page_is_self_contained(page: str) -> None:
    text = without_images(page)
    assert "http" not in text.lower()
    for external in ("<script", "<link", "<iframe", "url(", "@import"):
        assert external not in text.lower()
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text


def test_figures_are_embedded_pngs(page: str, records: list[ResultRecord]) -> None:
    images = DATA_URI.findall(page)
    assert len(images) == 2 * len(records)
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    for i in range(1, len(records) + 1):
        assert f'<section id="run-{i}">' in page


def test_text_from_records_is_escaped() -> None:
    evil = make_record(
        timer="<script>alert(1)</script>",
        notes=["a & b <i>"],
        machine={"cpu": '"quoted" <b>'},
    )
    page = build_report([evil], "<Title> & co", figures=[{"difference": b"x"}])
    assert "<script>" not in page and "<i>" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &amp; b &lt;i&gt;" in page and "&quot;quoted&quot;" in page
    assert "<title>&lt;Title&gt; &amp; co</title>" in page


def test_real_and_simulated_runs_render_alike() -> None:
    figs = [{"difference": b"png", "latency": b"png"}]
    real = build_report([make_record(seed=5)], "t", figures=figs)
    sim = build_report([make_record(seed=5, backend="sim", platform="laptop")], "t", figures=figs)
    normalised = (
        sim.replace("backend sim", "backend kvm")
        .replace("platform laptop", "platform real")
        .replace("<td>sim</td>", "<td>kvm</td>")
        .replace("<td>laptop</td>", "<td>real</td>")
    )
    assert normalised == real


def test_early_events_are_flagged_and_the_page_is_deterministic() -> None:
    figs = [{"latency": b"png"}]
    early = make_record(lateness=summarize_lateness([-5, 10, 20]))
    page = build_report([early], "t", figures=figs)
    assert '<tr class="early">' in row_of(page, "run-1")
    assert build_report([early], "t", figures=figs) == page


def test_figure_count_must_match_records() -> None:
    with pytest.raises(ValueError, match="figure sets"):
        build_report([make_record()], "t", figures=[])


# --- tickless report -------------------------------------------------------------------------


@pytest.fixture()
def result_files(tmp_path: Path) -> list[Path]:
    single = tmp_path / "one.json"
    several = tmp_path / "many.json"
    write_json_atomic(single, to_json_dict(make_record(seed=7)))
    write_json_atomic(
        several,
        [
            to_json_dict(make_record(seed=8, backend="sim", platform="Xen")),
            to_json_dict(make_record(seed=9, load="io", timer="pv")),
        ],
    )
    return [single, several]


def test_report_writes_page_figures_and_histogram(tmp_path: Path, result_files: list[Path]) -> None:
    out = tmp_path / "report.html"
    figs = tmp_path / "figs"
    hist = tmp_path / "run.hist"
    result = CliRunner().invoke(
        main,
        [
            "report",
            *map(str, result_files),
            "--out",
            str(out),
            "--figures",
            str(figs),
            "--cyclictest-histogram",
            str(hist),
            "--max-us",
            "20",
            "--title",
            "T1",
        ],
    )
    assert result.exit_code == 0, result.output
    for path in (out, figs, hist):
        assert str(path) in result.output
    page = out.read_text(encoding="utf-8")
    assert "<title>T1</title>" in page and len(DATA_URI.findall(page)) == 6
    pngs = sorted(p.name for p in figs.iterdir())
    assert len(pngs) == 6 and pngs[0] == "01-lapic-kvm-50us-idle-difference.png"
    assert (figs / pngs[0]).read_bytes().startswith(b"\x89PNG")
    text = hist.read_text()
    assert re.search(r"^000019 \d{6}\t\d{6}\t\d{6}$", text, re.M)  # 20 buckets, 3 columns
    assert "\n000020 " not in text
    assert text.count("# Thread ") == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["figs", "many.json", "one.json", "report.html", "run.hist"]
    ), "no temp files left behind"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "invalid JSON at line 1"),
        ("[]", "empty list"),
        ('{"schema_version": 1}', "is missing"),
        ("42", "expected a result object"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, result_files: list[Path], content: str | None, message: str
) -> None:
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    out = tmp_path / "report.html"
    hist = tmp_path / "h.txt"
    result = CliRunner().invoke(
        main,
        [
            "report",
            str(result_files[0]),
            str(bad),
            "--out",
            str(out),
            "--figures",
            str(tmp_path / "figs"),
            "--cyclictest-histogram",
            str(hist),
        ],
    )
    assert result.exit_code == 1
    assert message in result.output and str(bad) in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not hist.exists() and not (tmp_path / "figs").exists()


def test_unwritable_output_is_a_clear_error(tmp_path: Path, result_files: list[Path]) -> None:
    out = tmp_path / "missing-dir" / "report.html"
    result = CliRunner().invoke(main, ["report", str(result_files[0]), "--out", str(out)])
    assert result.exit_code == 2  # refused as the command line is read, before any work
    assert f"directory {out.parent} does not exist" in result.output
    assert "Traceback" not in result.output


def test_report_needs_results_and_is_listed_in_help() -> None:
    result = CliRunner().invoke(main, ["report"])
    assert result.exit_code == 2 and "RESULTS" in result.output
    assert "report" in CliRunner().invoke(main, ["--help"]).output
    help_text = CliRunner().invoke(main, ["report", "--help"]).output
    for option in ("--out", "--figures", "--cyclictest-histogram", "--max-us"):
        assert option in help_text
