"""No result is ever lost: output paths are checked before a run, SIGTERM keeps a partial
result as Ctrl-C does (exit 143 instead of 130), and a disk that fills up while a result
is written leaves the old file as it was, and says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_signals import interrupt_once_under_way
from click.testing import CliRunner

import tickless.backends
from tickless.atomicfile import OutputError, write_bytes_atomic
from tickless.axes import Backend
from tickless.cli import main
from tickless.cli.common import output_path_problem
from tickless.results.schema import load_results
from tickless.results.spec import MeasurementInterrupted, MeasureSpec

UNWRITABLE_DIR = Path("/sys")  # no one, root included, may create files there


# --- output paths -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "directory", "problem"),
    [
        ("missing/run.json", False, "directory {tmp}/missing does not exist"),
        ("a-dir", False, "{tmp}/a-dir is a directory, not a file"),
        ("a-file/run.json", False, "{tmp}/a-file is not a directory"),
        ("a-file", True, "{tmp}/a-file exists and is not a directory"),
        ("a-file/figs", True, "{tmp}/a-file is not a directory"),
    ],
)
def test_an_output_path_that_cannot_be_written_is_named(
    tmp_path: Path, relative: str, directory: bool, problem: str
) -> None:
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-file").write_text("x")
    found = output_path_problem(tmp_path / relative, directory)
    assert found == problem.format(tmp=tmp_path)


def test_an_unwritable_directory_is_found_by_trying() -> None:
    """As root ``os.access`` says yes almost everywhere: a probe file tells the truth."""
    problem = output_path_problem(UNWRITABLE_DIR / "run.json")
    assert problem is not None and str(UNWRITABLE_DIR) in problem


def test_a_device_is_not_an_output_file() -> None:
    """Renaming a result over /dev/null would replace the device (as root)."""
    assert output_path_problem(Path("/dev/null")) == "/dev/null exists and is not a regular file"
    with pytest.raises(OutputError, match="not a regular file"):
        write_bytes_atomic(Path("/dev/null"), b"{}")


def test_writable_output_paths_pass_and_leave_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text("{}")
    assert output_path_problem(tmp_path / "old.json") is None
    assert output_path_problem(tmp_path / "new.json") is None
    assert output_path_problem(tmp_path / "figs" / "deeper", directory=True) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]


# --- a full disk --------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (needs root and mount(2)): fills up for real."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or 'mount failed'}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_disk_keeps_the_old_file_and_says_so(tiny_disk: Path) -> None:
    old = tiny_disk / "run.json"
    old.write_text('{"old": true}\n')
    with pytest.raises(OutputError) as info:
        write_bytes_atomic(old, b"x" * 200_000)
    assert str(info.value) == (
        f"cannot write {old}: No space left on device; the old {old} was kept"
    )
    assert old.read_text() == '{"old": true}\n'
    assert [p.name for p in tiny_disk.iterdir()] == ["run.json"]  # no temp file left


def test_a_result_too_big_for_the_disk_is_one_line_and_the_old_file_stays(
    tiny_disk: Path,
) -> None:
    """End to end: the result is shown, the write fails with one line, the file is intact."""
    old = tiny_disk / "run.json"
    old.write_text("[]\n")
    args = ["measure", "--backend", "sim", "--count", "20000", "--json", str(old)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "mean" in result.stdout
    lines = result.stderr.strip().splitlines()  # progress lines, then the error
    assert [line for line in lines if not line.endswith(" %")] == [
        f"Error: cannot write {old}: No space left on device; the old {old} was kept"
    ]
    assert old.read_text() == "[]\n"
    assert [p.name for p in tiny_disk.iterdir()] == ["run.json"]


# --- SIGTERM, in process ------------------------------------------------------------------


def _interrupting_runner(signum: int) -> object:
    """A backend that gets ``signum`` mid-run and keeps what it measured, as the real ones
    do on Ctrl-C: its partial record is a real simulated one."""

    def run(spec: MeasureSpec, progress: object = None) -> object:
        partial = tickless.backends.BACKENDS[Backend.SIM](spec, None)
        try:
            os.kill(os.getpid(), signum)
            time.sleep(10)  # the handler raises KeyboardInterrupt long before this ends
        except KeyboardInterrupt:
            raise MeasurementInterrupted(partial) from None
        raise AssertionError(f"signal {signum} did not interrupt the run")

    return run


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_keeps_the_partial_result_as_ctrl_c_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, signum: int, status: int
) -> None:
    monkeypatch.setattr(tickless.backends, "measure", _interrupting_runner(signum))
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "partial.json"
    args = ["measure", "--backend", "sim", "--count", "100", "--json", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == status, result.output
    assert f"partial result written to {out}" in result.stderr
    (record,) = load_results(out)
    assert record.backend == "sim"
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back


def test_sigterm_in_a_command_with_nothing_to_keep_exits_143(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No "Aborted!" and exit 1 (click's way): one line, and the status says SIGTERM."""
    import tickless.sim.platforms

    def terminated() -> object:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(tickless.sim.platforms, "builtin_profiles", terminated)
    result = CliRunner().invoke(main, ["sim", "profiles"])
    assert result.exit_code == 143, result.output
    assert result.stderr.strip() == "interrupted" and result.stdout == ""


# --- SIGTERM, a real process --------------------------------------------------------------


def test_sigterm_stops_a_simulated_run_and_keeps_its_events(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    args = ["measure", "--backend", "sim", "--count", "3000000", "--json", str(out)]
    status, stderr = interrupt_once_under_way(args)
    assert status == 143, stderr
    assert "Traceback" not in stderr and f"partial result written to {out}" in stderr
    (record,) = load_results(out)
    assert 0 < record.stats.count < 3_000_000
    assert record.notes[-1].startswith("interrupted after")


@pytest.mark.kvm
def test_sigterm_stops_a_guest_and_keeps_its_events(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    args = ["measure", "--backend", "kvm", "--interval", "100us", "--count", "200000"]
    status, stderr = interrupt_once_under_way([*args, "--json", str(out)])
    assert status == 143, stderr
    assert "Traceback" not in stderr and f"partial result written to {out}" in stderr
    (record,) = load_results(out)
    assert record.backend == "kvm" and 0 < record.stats.count < 200_000


@pytest.mark.kvm
def test_sigterm_keeps_what_idle_guests_measured(tmp_path: Path) -> None:
    """SIGTERM in the measured window (after every guest booted) keeps a partial record."""
    out = tmp_path / "idle.json"
    args = ["idle", "--guests", "2", "--duration", "20s", "--json", str(out)]
    status, stderr = interrupt_once_under_way(args)
    assert status == 143, stderr
    assert "Traceback" not in stderr and f"partial result written to {out}" in stderr
    data = json.loads(out.read_text())
    assert data["partial"] is True and 0 < data["duration_s"] < 20
    assert data["notes"][-1].startswith("interrupted: measured")
