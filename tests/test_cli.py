"""The command line: help that teaches, one-line errors, results written as promised."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from tickless.cli import main
from tickless.results.schema import SCHEMA_VERSION, load_results


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "measure" in result.output and "idle" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["measure", "--interval", "50"], "unit"),
        (["measure", "--interval", "-5us"], "--interval"),
        (["measure", "--count", "0"], "--count"),
        (["measure", "--timer", "acpi_pm"], "--timer"),
        (["measure", "--timer", "lapic", "--mode", "periodic"], "--timer lguest"),
        (["measure", "--dilation", "zero"], "--dilation"),
        (["idle", "--guests", "0"], "--guests"),
    ],
)
def test_bad_input_is_one_clear_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.kvm
def test_measure_writes_a_loadable_json_record(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    result = CliRunner().invoke(
        main, ["measure", "--interval", "100us", "--count", "200", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "mean measured interval" in result.output
    (record,) = load_results(out)
    assert record.backend == "kvm" and record.timer == "pv"
    assert record.stats.count == 200
    raw = json.loads(out.read_text())
    assert raw["schema_version"] == SCHEMA_VERSION
    assert raw["host"]["hypercalls"] == 1  # DONE: pv re-arms through its page, no call


@pytest.mark.kvm
def test_compare_paper_prints_the_papers_rows() -> None:
    result = CliRunner().invoke(
        main, ["measure", "--interval", "50us", "--count", "100", "--compare-paper"]
    )
    assert result.exit_code == 0, result.output
    assert "65.310" in result.output  # the paper's KVM row at 50 us
    assert "tickless pv" in result.output


@pytest.mark.kvm
def test_idle_counts_host_wakeups(tmp_path: Path) -> None:
    out = tmp_path / "idle.json"
    result = CliRunner().invoke(
        main,
        [
            "idle",
            "--guests",
            "3",
            "--mode",
            "periodic",
            "--hz",
            "250",
            "--duration",
            "400ms",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["kind"] == "idle"
    # Up to 3 guests x 250 HZ (a loaded host's ramp may stop before the third): at most
    # one host timer expiry a period each (+1 at the window's edge), more than tickless
    # guests' 1 s and 4 s timers could ask for, each expiry one injection, and no guest
    # interrupt without one (+1 a guest: one in flight as the window closes). How close
    # to 750 a second it gets is a figure (benchmarks/host_figures.py).
    n, window_s, expiries = data["guests"], data["duration_s"], data["host_timer_expiries"]
    assert 1 <= n <= 3 and len(data["per_guest"]) == n, data
    assert n * 2 * window_s + n < expiries <= n * 250 * window_s * 1.005 + n, data
    # Each expiry is one injection; the two counters are read one after the other at each
    # edge of the window, so an expiry in between is counted on one side only (one a guest).
    assert abs(data["injections"] - expiries) <= n, data
    assert sum(g["timer_interrupts"] for g in data["per_guest"]) <= expiries + n, data


@pytest.mark.kvm
def test_tickless_idle_guests_wake_rarely(tmp_path: Path) -> None:
    """With a 1 s and a 4 s housekeeping timer, an idle tickless guest takes <= 2 IRQ/s."""
    out = tmp_path / "idle.json"
    result = CliRunner().invoke(
        main,
        ["idle", "--guests", "3", "--mode", "tickless", "--duration", "2s", "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    window_s = data["duration_s"]
    most = math.ceil(window_s) + math.ceil(window_s / 4) + 1  # +1: one already pending
    assert all(1 <= g["timer_interrupts"] <= most for g in data["per_guest"]), data
    assert data["host_timer_wakeups"] <= 3 * most, data


def test_auto_backend_falls_back_to_the_simulator_without_kvm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The README's main command on a machine without KVM: one line, then the simulator."""
    import tickless.backends
    import tickless.cli.common

    missing = "/dev/kvm does not exist: this machine has no KVM (load the kvm module)"
    monkeypatch.setattr(tickless.backends, "kvm_problem", lambda: missing)
    monkeypatch.setattr(tickless.cli.common, "kvm_problem", lambda: missing)
    out = tmp_path / "sim.json"
    result = CliRunner().invoke(
        main, ["measure", "--interval", "50us", "--count", "500", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "running the simulator instead" in result.output
    (record,) = load_results(out)
    assert record.backend == "sim" and record.platform == "KVM"
    assert min(record.intervals_ns) >= 50_000


def test_kvm_backend_without_kvm_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import tickless.cli.common

    missing = "/dev/kvm does not exist: this machine has no KVM"
    monkeypatch.setattr(tickless.cli.common, "kvm_problem", lambda: missing)
    result = CliRunner().invoke(main, ["measure", "--backend", "kvm", "--count", "10"])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {missing}"


def test_table1_keeps_finished_rows_on_ctrl_c(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Rows finished before Ctrl-C are printed and kept in --json; exit 130."""
    import tickless.backends
    import tickless.cli.table1
    from tickless.backends import measure as real_measure
    from tickless.results.spec import MeasurementInterrupted, MeasureSpec

    calls = []

    def measure_then_interrupt(spec: MeasureSpec) -> object:
        calls.append(spec)
        if len(calls) == 3:
            raise MeasurementInterrupted(None)
        sim = MeasureSpec(timer="pv", interval_ns=spec.interval_ns, count=50, backend="sim")
        return real_measure(sim)

    monkeypatch.setattr(tickless.backends, "measure", measure_then_interrupt)
    monkeypatch.setattr(tickless.cli.table1, "require_kvm", lambda: None)
    out = tmp_path / "t1.json"
    result = CliRunner().invoke(main, ["table1", "--quick", "--json", str(out)])
    assert result.exit_code == 130, result.output
    assert "interrupted after 2 of" in result.output
    assert len(load_results(out)) == 2
