"""Figures are valid, deterministic PNGs drawn without touching pyplot's global state."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread
from records import kvm_like_record

from tickless.report.figures import (
    FIGURE_DPI,
    FIGURE_SIZE_IN,
    _unit_for,
    difference_png,
    figure_stem,
    latency_histogram_png,
    record_figures,
    record_title,
    write_bytes_atomic,
    write_record_figures,
)
from tickless.results.schema import ResultRecord

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXPECTED_SHAPE = (
    round(FIGURE_SIZE_IN[1] * FIGURE_DPI),
    round(FIGURE_SIZE_IN[0] * FIGURE_DPI),
)


def make_record(n: int = 300, seed: int = 1, **overrides: Any) -> ResultRecord:
    """A KVM-like run: ~15 µs late with a gamma tail, never early."""
    return kvm_like_record(n, seed, overrides.pop("interval_ns", 50_000), 800.0, **overrides)


def decode(png: bytes) -> Any:
    assert png.startswith(PNG_SIGNATURE)
    return imread(io.BytesIO(png), format="png")


@pytest.mark.parametrize("draw", [difference_png, latency_histogram_png])
def test_figures_are_valid_pngs_of_the_documented_size(draw: Any) -> None:
    image = decode(draw(make_record()))
    assert image.shape[:2] == EXPECTED_SHAPE
    assert image.shape[2] in (3, 4)
    # Something was drawn: not a blank canvas.
    assert float(np.std(image[..., :3])) > 0.01


@pytest.mark.parametrize("draw", [difference_png, latency_histogram_png])
def test_same_record_gives_the_same_bytes(draw: Any) -> None:
    assert draw(make_record(seed=3)) == draw(make_record(seed=3))
    assert draw(make_record(seed=3)) != draw(make_record(seed=4))


def test_png_carries_no_software_or_time_metadata() -> None:
    for png in record_figures(make_record()).values():
        assert b"Software" not in png and b"matplotlib" not in png.lower()
        assert b"tIME" not in png  # PNG's last-modification chunk


def test_record_without_raw_samples_still_renders() -> None:
    record = make_record(intervals_ns=[], lateness_ns=[])
    for png in record_figures(record).values():
        assert decode(png).shape[:2] == EXPECTED_SHAPE


def test_ns_scale_runs_use_ns_and_others_us() -> None:
    assert _unit_for(np.array([-150.0, 80.0, 1_999.0])) == ("ns", 1.0)
    assert _unit_for(np.array([15_000.0, 16_000.0])) == ("µs", 1_000.0)
    # A sub-µs precise timer renders too.
    precise = make_record(
        intervals_ns=[50_000 + k % 7 * 30 for k in range(200)],
        lateness_ns=[k % 7 * 30 for k in range(200)],
    )
    assert decode(difference_png(precise)).shape[:2] == EXPECTED_SHAPE


def test_title_names_timer_backend_platform_load_and_interval() -> None:
    title = record_title(make_record(backend="sim", platform="Xen", load="io"))
    for part in ("timer lapic", "backend sim", "platform Xen", "load io", "d = 50 µs"):
        assert part in title
    assert "platform real" in record_title(make_record())


def test_figure_stem_is_a_safe_file_name() -> None:
    assert figure_stem(make_record(), 3) == "03-lapic-kvm-50us-idle"
    stem = figure_stem(make_record(timer="../a b", load="cpu+io", interval_ns=12_345), 1)
    assert "/" not in stem and " " not in stem and not stem.startswith(".")
    assert "12345ns" in stem


def test_write_bytes_atomic_replaces_keeps_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "f.png"
    write_bytes_atomic(path, b"one")
    assert path.read_bytes() == b"one"
    assert path.stat().st_mode & 0o777 == 0o644
    os.chmod(path, 0o600)
    write_bytes_atomic(path, b"two")
    assert path.read_bytes() == b"two"
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]


def test_write_record_figures_names_both_kinds(tmp_path: Path) -> None:
    figs = {"difference": b"a", "latency": b"b"}
    paths = write_record_figures(figs, tmp_path, "01-x")
    assert [p.name for p in paths] == ["01-x-difference.png", "01-x-latency.png"]
    assert paths[1].read_bytes() == b"b"


def test_rendering_does_not_import_pyplot() -> None:
    """pyplot would pick a global backend and keep a figure registry in the caller's process."""
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from records import record_from
from tickless.report.figures import record_figures
late = [15_000 + k for k in range(50)]
record = record_from([50_000 + x for x in late], late)
assert len(record_figures(record)) == 2
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
