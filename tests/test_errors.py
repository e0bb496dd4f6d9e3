"""One error hierarchy: what a user can cause is one line and a non-zero exit; anything else
is a bug in tickless and must keep its traceback."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import tickless.backends
from tickless.atomicfile import OutputError, write_bytes_atomic
from tickless.buildcache import BuildError
from tickless.cli import main
from tickless.errors import GuestStopped, InputError, KvmError, KvmUnavailable, TicklessError
from tickless.host.baseline import HostBaselineError
from tickless.host.load import LoadError
from tickless.results.schema import SchemaError
from tickless.results.spec import MeasureSpec
from tickless.sim.profile import ProfileError, SimInputError

SIM_RUN = ["measure", "--backend", "sim", "--count", "50"]


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ")
    return line


@pytest.mark.parametrize(
    "error",
    [
        *(KvmError, KvmUnavailable, BuildError, LoadError, HostBaselineError, SimInputError),
        *(ProfileError, SchemaError, OutputError, InputError, GuestStopped),
    ],
)
def test_every_user_error_is_a_tickless_error(error: type[Exception]) -> None:
    assert issubclass(error, TicklessError)


def test_bad_input_is_still_a_value_error_where_callers_expect_one() -> None:
    for error in (InputError, SimInputError, SchemaError):
        assert issubclass(error, ValueError)
    with pytest.raises(InputError, match="--timer must be one of pv, lguest, lapic, precise, host"):
        MeasureSpec(timer="acpi_pm", interval_ns=1000, count=10)  # type: ignore[arg-type]


def test_a_guest_that_misbehaves_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def stopped(spec: MeasureSpec, progress: object = None) -> object:
        raise GuestStopped("guest stopped: triple fault")

    monkeypatch.setattr(tickless.backends, "measure", stopped)
    line = one_line_error(CliRunner().invoke(main, SIM_RUN))
    assert line == "Error: guest stopped: triple fault"


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyError in a runner is not the user's fault: it must not become an "Error:" line."""

    def buggy(spec: MeasureSpec, progress: object = None) -> object:
        raise KeyError("timer_events")

    monkeypatch.setattr(tickless.backends, "measure", buggy)
    result = CliRunner().invoke(main, SIM_RUN)
    assert isinstance(result.exception, KeyError)
    assert "Error:" not in result.output


def test_a_bug_in_table1_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import tickless.backends
    import tickless.cli.table1

    def buggy(spec: MeasureSpec) -> object:
        raise RuntimeError("a bug, not a user error")

    monkeypatch.setattr(tickless.backends, "measure", buggy)
    monkeypatch.setattr(tickless.cli.table1, "require_kvm", lambda: None)
    result = CliRunner().invoke(main, ["table1", "--quick"])
    assert isinstance(result.exception, RuntimeError)


def test_a_user_error_in_table1_says_how_far_it_got(monkeypatch: pytest.MonkeyPatch) -> None:
    import tickless.backends
    import tickless.cli.table1

    def no_stress_ng(spec: MeasureSpec) -> object:
        raise LoadError("stress-ng is not installed")

    monkeypatch.setattr(tickless.backends, "measure", no_stress_ng)
    monkeypatch.setattr(tickless.cli.table1, "require_kvm", lambda: None)
    line = one_line_error(CliRunner().invoke(main, ["table1", "--quick"]))
    assert line.startswith("Error: stress-ng is not installed (after 0 of")


def test_an_unwritable_result_file_is_refused_before_the_run(tmp_path: Path) -> None:
    """A --json in a missing directory is refused as the command line is read: nothing
    runs (nothing on stdout), one Error line naming the option and the directory."""
    out = tmp_path / "no-such-dir" / "run.json"
    result = CliRunner().invoke(main, [*SIM_RUN, "--json", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: Invalid value for '--json'") and str(out.parent) in last


def test_a_write_that_fails_after_the_run_is_one_line_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path passed the check but the write fails (here: the disk fills up): the result
    is printed first, then one line naming the file and saying nothing was written."""

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "run.json"
    monkeypatch.setattr(os, "fsync", full)
    result = CliRunner().invoke(main, [*SIM_RUN, "--json", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "mean" in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"Error: cannot write {out}: No space left on device; no file was written"
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_result_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    line = one_line_error(CliRunner().invoke(main, ["report", str(missing)]))
    assert line == f"Error: {missing}: no such file"


def test_the_atomic_writer_names_the_path_and_keeps_the_cause(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "out.bin"
    with pytest.raises(OutputError, match=r"cannot write .*out\.bin") as info:
        write_bytes_atomic(path, b"x")
    assert isinstance(info.value.__cause__, OSError)


def test_run_bench_names_the_benchmarks_when_it_gets_none_it_knows() -> None:
    """``./run bench`` runs benchmarks/NAME.py in .venv; an unknown name is one line that
    lists what there is, and a nonzero exit."""
    run = Path(__file__).resolve().parent.parent / "run"
    done = subprocess.run([str(run), "bench", "no_such"], capture_output=True, text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pv_idle" in lines[0] and "timer_paths" in lines[0]
