"""Fleets of idle guests: the host's limits refused in one line before anything runs, the
record's fleet fields (and older records still read), and a real fleet that boots, keeps
~1 timer interrupt a second per guest at its own phase, and reports what it cost."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from records import idle_record

from tickless.axes import GuestKind, TickMode
from tickless.cli import main
from tickless.errors import GuestStopped, InputError
from tickless.measure.fleet_limits import FDS_PER_GUEST, HostLimits, check_fleet
from tickless.measure.idle import run_idle
from tickless.results.idle import IdleResult, IdleSpec, RampStep
from tickless.vmm.host import VmmHost
from tickless.vmm.machine import GuestMachine

GIB = 2**30
ROOMY = HostLimits(
    available_bytes=20 * GIB,
    fd_hard=1 << 20,
    fds_open=10,
    threads_max=1 << 20,
    threads_now=100,
    max_map_count=1 << 20,
    maps_now=100,
)


def test_a_thousand_small_guests_fit_and_a_thousand_linux_guests_do_not() -> None:
    small = 4 << 20
    assert check_fleet(1000, small, ROOMY, "small") >= 1000 * FDS_PER_GUEST
    with pytest.raises(InputError) as err:
        check_fleet(1000, 128 << 20, ROOMY, "linux")
    message = str(err.value)
    assert "\n" not in message and "of memory" in message
    # 80 % of 20 GiB over 130 MiB a guest: 126 fit, and the line says so.
    assert "at most ~126 fit" in message


@pytest.mark.parametrize(
    ("limits", "what"),
    [
        (HostLimits(20 * GIB, 1024, 10, 1 << 20, 100, 1 << 20, 100), "file descriptors"),
        (HostLimits(20 * GIB, 1 << 20, 10, 600, 100, 1 << 20, 100), "threads"),
        (HostLimits(20 * GIB, 1 << 20, 10, 1 << 20, 100, 4000, 100), "memory mappings"),
    ],
)
def test_each_limit_is_refused_in_one_line(limits: HostLimits, what: str) -> None:
    with pytest.raises(InputError, match=what) as err:
        check_fleet(1000, 4 << 20, limits, "small")
    assert str(err.value).startswith("--guests 1,000:")


def test_the_cli_refuses_a_fleet_beyond_memory_before_running() -> None:
    result = CliRunner().invoke(main, ["idle", "--guests", "10000000"])
    assert result.exit_code == 2
    assert "at most" in result.output and "Traceback" not in result.output


def test_step_needs_periodic_guests() -> None:
    with pytest.raises(InputError, match="--step"):
        IdleSpec(guests=10, ramp_step=2)
    assert IdleSpec(guests=95, mode=TickMode.PERIODIC).step == 10
    assert IdleSpec(guests=95).step == 95  # tickless guests boot at once


def test_ramp_step_counts_missed_ticks() -> None:
    step = RampStep(
        guests=10, window_s=0.5, ticks_expected=5000.0, ticks_delivered=4000, cpu_percent_of_core=1
    )
    assert step.missed_fraction == pytest.approx(0.2)
    assert RampStep(1, 0.5, 500.0, 510, 1.0).missed_fraction == 0.0


def test_fleet_fields_of_the_record() -> None:
    d = idle_record(boot_s=0.5, ticks_expected=400.0, guests_requested=3).to_json_dict()
    assert d["schema_version"] == 5
    assert d["boot_rate_guests_per_s"] == 4.0
    assert d["host_wakeups_per_s"] == 150.0 and d["guest_timer_irqs_per_s"] == 190.0
    assert d["steady_cpu_percent_of_core"] == pytest.approx(20.0)
    assert d["ticks_missed_fraction"] == pytest.approx(0.05)
    assert d["guests_requested"] == 3
    json.dumps(d, allow_nan=False)


def test_older_records_still_read() -> None:
    """A version 1 record (no fleet fields) reads back with them unset; a new one round-trips."""
    new = idle_record(ramp=[RampStep(1, 0.5, 50.0, 49, 2.0)], saturation_guests=2)
    back = IdleResult.from_json_dict(json.loads(json.dumps(new.to_json_dict())))
    assert back.to_json_dict() == new.to_json_dict()
    old = new.to_json_dict()
    for key in ("ramp", "saturation_guests", "guests_requested", "rss_per_guest_mib", "partial"):
        del old[key]
    old["schema_version"] = 1
    v1 = IdleResult.from_json_dict(old)
    assert v1.ramp == [] and v1.saturation_guests is None and v1.guests == 2
    with pytest.raises(ValueError):
        IdleResult.from_json_dict({**old, "schema_version": 99})


@pytest.mark.kvm
def test_a_hundred_tickless_guests_boot_and_wake_about_once_a_second(tmp_path: Path) -> None:
    """100 guests at their own phases: every one booted and took its 1 s timer, none took
    more interrupts than its 1 s and 4 s timers can ask for in the window (a guest that
    ticked would), and the slop coalesced their timers into fewer host wake-ups than
    guest interrupts. (The rates themselves are figures: ``benchmarks/idle_fleet.py``.)"""
    out = tmp_path / "idle.json"
    args = ["idle", "--guests", "100", "--duration", "3s", "--slop", "20ms", "--json", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    d = json.loads(out.read_text())
    assert d["guests"] == 100 and len(d["per_guest"]) == 100
    window_s = d["duration_s"]
    most = math.ceil(window_s) + math.ceil(window_s / 4) + 1  # +1: one already pending
    counts = [g["timer_interrupts"] for g in d["per_guest"]]
    assert min(counts) >= 1 and max(counts) <= most, (counts, window_s)
    assert d["host_wakeups_per_s"] < d["guest_timer_irqs_per_s"]  # one window: counts
    assert d["boot_rate_guests_per_s"] > 0 and 0 < d["rss_per_guest_mib"] < 4
    assert d["steady_cpu_percent_of_core"] > 0


@pytest.mark.kvm
def test_a_periodic_ramp_finds_where_ticks_are_missed(tmp_path: Path) -> None:
    """A ramp of 5000 HZ guests, 4 more a step, up to 40 (200,000 ticks/s): whether and
    where this host saturates depends on how fast and loaded it is (a figure), but the
    ramp's rule does not: it stops at the first step that misses more than the
    threshold, and does not boot the rest; a host that keeps up boots all 40."""
    out = tmp_path / "idle.json"
    args = ["idle", "--guests", "40", "--mode", "periodic", "--hz", "5000", "--step", "4"]
    result = CliRunner().invoke(main, [*args, "--duration", "500ms", "--json", str(out)])
    assert result.exit_code == 0, result.output
    d = json.loads(out.read_text())
    sat, ramp = d["saturation_guests"], d["ramp"]
    assert ramp and [s["guests"] for s in ramp] == [4 * (i + 1) for i in range(len(ramp))]
    assert all(s["missed_fraction"] <= 0.05 for s in ramp[:-1])
    if ramp[-1]["missed_fraction"] > 0.05:  # the ramp found it
        assert sat == d["guests"] == ramp[-1]["guests"]
        assert "ramp stopped" in result.output
    else:  # it kept up through the ramp: all 40 booted
        assert d["guests"] == 40 and "ramp stopped" not in result.output
        assert sat in (None, 40)  # 40 if the whole fleet's own window missed


def test_linux_spec_is_refused_by_memory_not_by_a_cap() -> None:
    spec = IdleSpec(guests=100_000, guest=GuestKind.LINUX, hz=100)
    from tickless.measure.idle import check_host

    with pytest.raises(InputError, match="linux guests need"):
        check_host(spec)


@pytest.mark.kvm
def test_a_guest_that_stops_mid_window_ends_the_idle_run_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The window sleeps until a guest stops or progress is due: a guest stopped during it
    (here by the test, as the watchdog would) ends the run with its name and reason."""
    booted: list[GuestMachine] = []
    boot = VmmHost.boot

    def keep(self: VmmHost, *args: object, **kwargs: object) -> GuestMachine:
        machine = boot(self, *args, **kwargs)  # type: ignore[arg-type]
        booted.append(machine)
        return machine

    monkeypatch.setattr(VmmHost, "boot", keep)

    def progress(phase: str, done: float) -> None:
        if phase == "measuring" and booted[1].running:
            booted[1].request_stop("stopped by the test")

    spec = IdleSpec(guests=3, duration_ns=600 * 10**9)
    with pytest.raises(GuestStopped, match="guest1 stopped: stopped by the test"):
        run_idle(spec, progress)
