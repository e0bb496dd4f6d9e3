"""Time that bends, in the simulator: dilation scales what the host sees per wall second,
idle warp runs guest time with no host timer at all, and the records say how time ran."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from records import idle_record

from tickless.cli import main
from tickless.guest.abi import MIN_DELTA_NS
from tickless.report.fleet import fleet_rows
from tickless.results.idle import IDLE_SCHEMA_VERSION, GuestIdleCounts, IdleResult
from tickless.results.spec import MeasureSpec
from tickless.sim import fleet, layout
from tickless.sim import guest_model as gm
from tickless.sim.cost import box_model
from tickless.sim.guest_run import SimulatedGuest
from tickless.sim.interference import irq_rate_for_load
from tickless.sim.platforms import bare_disk_handler, builtin_profiles

SECOND_NS = 1_000_000_000
BOX = box_model()
EVENT_WALL_NS = BOX.per_interrupt_ns + BOX.per_hypercall_ns  # injection + handler + BLOCK


def _run(**kwargs: Any) -> tuple[fleet.FleetResult, layout.FleetArrays]:
    return fleet.run_fleet(fleet.FleetSpec(**kwargs))


# --- dilation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [Fraction(1, 10), Fraction(10)], ids=["0.1", "10"])
def test_dilation_scales_host_wakeups_per_wall_second(rate: Fraction) -> None:
    """Guest timers are in guest time: at R the same guest-time run takes 1/R of the wall
    time, so the host's wake-ups and the guests' interrupts per wall second scale by R;
    the host CPU per wall second too, but for the cost model's per-second terms."""
    spec = fleet.FleetSpec(guests=200, mode="nohz-full", duration_ns=20 * SECOND_NS)
    base, _ = fleet.run_fleet(spec)
    bent, _ = fleet.run_fleet(dataclasses.replace(spec, rate=rate))
    assert base.host_timer_wakeups == bent.host_timer_wakeups > 0
    assert bent.wakeups_per_s == pytest.approx(float(rate) * base.wakeups_per_s, rel=1e-9)
    assert bent.wakeups_per_s == pytest.approx(float(rate) * 200, rel=0.01)  # 1 s timer
    assert bent.interrupts_per_guest_per_s == pytest.approx(float(rate), rel=0.01)
    per_s = 100 * (BOX.fixed_ns_per_s + 200 * BOX.baseline_ns_per_s) / SECOND_NS
    per_event = base.cpu_percent_of_core - per_s
    assert bent.cpu_percent_of_core - per_s == pytest.approx(float(rate) * per_event)
    d = bent.to_json_dict()
    assert d["dilation"] == str(rate) and d["warped_s"] == 0.0
    assert d["guest_time_s"] == 20.0
    assert d["wall_time_s"] == pytest.approx(20.0 / float(rate)) == d["duration_s"]


def test_dilation_leaves_host_time_in_wall_time() -> None:
    """Host I/O keeps its rate per wall second and its handler time, and --slop stays a
    wall-time window: at R = 10 a 10 ms slop spans 100 ms of guest timers and coalesces
    more of them than at R = 1."""
    spec = fleet.FleetSpec(
        guests=100,
        mode="nohz-full",
        duration_ns=20 * SECOND_NS,
        slop_ns=10_000_000,
        io=(fleet.IoSource(1000.0, 20_000, 0),),
    )
    for rate in (Fraction(1, 10), Fraction(1), Fraction(10)):
        r, _ = fleet.run_fleet(dataclasses.replace(spec, rate=rate))
        io = r.per_cpu[0]
        assert io.io_interrupts / r.wall_time_s == pytest.approx(1000.0, rel=0.05)
        assert io.io_busy_s == pytest.approx(io.io_interrupts * 20e-6, rel=1e-6)
    fast, _ = fleet.run_fleet(dataclasses.replace(spec, rate=Fraction(10)))
    plain, _ = fleet.run_fleet(spec)
    assert fast.host_timer_wakeups < plain.host_timer_wakeups
    # the same guest timers (a wider window defers the last few past the end)
    assert fast.host_timer_expiries == pytest.approx(plain.host_timer_expiries, rel=0.01)


def test_dilation_one_without_warp_is_the_run_it_always_was() -> None:
    """An explicit dilation 1 changes nothing, and the record says time ran straight."""
    spec = fleet.FleetSpec(guests=30, mode="nohz-idle,periodic", duration_ns=3 * SECOND_NS)
    a = fleet.run_fleet(spec)[0].to_json_dict()
    b = fleet.run_fleet(dataclasses.replace(spec, rate=Fraction(1)))[0].to_json_dict()
    for d in (a, b):
        d.pop("simulation")
    assert a == b
    assert (a["dilation"], a["warped_s"], a["warp_idle"]) == ("1", 0.0, False)
    assert a["guest_time_s"] == a["wall_time_s"] == a["duration_s"] == 3.0


def test_sim_measure_dilation_puts_the_io_rate_in_guest_time() -> None:
    """The measurement's I/O device runs in guest time (its rate per guest second), the
    delivery in wall time: at R = 1/2 the guest still sees ~1733 interrupts per guest
    second, and the run takes twice its guest time of wall time."""
    spec = MeasureSpec(
        timer="lguest",  # type: ignore[arg-type]
        interval_ns=1_000_000,
        count=2000,
        backend="sim",  # type: ignore[arg-type]
        loads={"io"},  # type: ignore[arg-type]
        rate=Fraction(1, 2),
    )
    assert irq_rate_for_load("io") > 0
    run = SimulatedGuest(spec, builtin_profiles()["KVM"], spec.io_rate_per_s, bare_disk_handler())
    stamps = run.execute(None)
    guest_s = (stamps[-1] - stamps[0]) / SECOND_NS
    assert run.counts.io_irqs / guest_s == pytest.approx(spec.io_rate_per_s, rel=0.1)
    assert run.counts.end_ticks / SECOND_NS == pytest.approx(2 * guest_s, rel=0.01)


# --- idle warp ----------------------------------------------------------------------------------


def test_a_warped_idle_guest_runs_1000_s_with_no_host_timer() -> None:
    """1000 s of guest time of one idle guest: no host timer armed, no wake-up; its 1 s
    housekeeping timer ran 1000 times, each injected exactly at its deadline in guest time
    (never before); the wall time is its events' cost; almost all guest time is warped."""
    spec = fleet.FleetSpec(guests=1, mode="nohz-full", duration_ns=1000 * SECOND_NS)
    first_due_ns = int(fleet.build(spec)[0].rows[0, gm.TIMER0])
    r, a = fleet.run_fleet(dataclasses.replace(spec, warp_idle=True), trace_capacity=2000)
    assert r.host_timer_wakeups == r.host_timer_expiries == 0
    assert r.wakeups_per_s == 0.0
    events = int(a.warp[0, layout.W_EVENTS])
    assert events == r.injections == r.per_guest[0].timer_interrupts == 1000
    deadlines = a.warp_deadline_ns[0, :events]
    injected = a.warp_inject_ns[0, :events]
    assert (injected >= deadlines).all()  # nothing before its deadline
    assert (np.diff(injected) > 0).all()  # guest time never goes back
    assert deadlines.tolist() == [first_due_ns + k * SECOND_NS for k in range(1000)]
    assert (injected == deadlines).all()  # warped straight to each
    assert r.guest_time_s >= 1000
    assert r.warped_s == pytest.approx(r.guest_time_s - 1000 * BOX.per_interrupt_ns / 1e9)
    assert r.warped_s / r.guest_time_s > 0.999
    assert r.wall_time_s == pytest.approx(1000 * EVENT_WALL_NS / 1e9)
    assert r.wall_time_s < 5
    d = r.to_json_dict()
    assert d["warped_s"] == r.warped_s and d["per_guest"][0]["warped_s"] == r.warped_s
    assert d["per_guest"][0]["housekeeping_runs"] == 1250  # the 1 s and the 4 s timer


def test_warp_handler_stretch_runs_at_the_dilation_rate() -> None:
    """Guest time the guest computes is R x its wall time, the rest is warped; the wall
    time does not depend on R (it is the host's work)."""
    spec = fleet.FleetSpec(guests=3, mode="nohz-full", duration_ns=100 * SECOND_NS)
    for rate in (Fraction(1, 10), Fraction(10)):
        r, a = fleet.run_fleet(dataclasses.replace(spec, rate=rate, warp_idle=True))
        events = a.warp[:, layout.W_EVENTS]
        computed_s = events * float(rate) * BOX.per_interrupt_ns / 1e9
        warped_s = a.warp[:, layout.W_WARPED_NS] / 1e9
        clock_s = a.warp[:, layout.W_NOW_NS] / 1e9
        assert warped_s + computed_s == pytest.approx(clock_s, abs=1e-6)
        busiest = np.bincount(fleet.placement(r.spec), weights=events).max()  # 2 on cpu 0
        assert r.wall_time_s == pytest.approx(busiest * EVENT_WALL_NS / 1e9)


def test_warp_never_fires_early_and_a_passed_deadline_fires_at_once() -> None:
    """Measurement events 50 us apart in guest time, a handler of ~110 us: each deadline has
    passed when the guest blocks, so it fires at once (the device's minimum delta after),
    late, and nothing is warped between; at 1 ms apart every event is exactly on time."""
    base = fleet.FleetSpec(
        guests=1,
        mode="nohz-full",
        workload="measure",
        housekeeping_ns=(),
        measure_count=500,
        duration_ns=SECOND_NS,
        warp_idle=True,
    )
    tight, a = fleet.run_fleet(
        dataclasses.replace(base, measure_interval_ns=50_000), trace_capacity=1000
    )
    g = tight.per_guest[0]
    assert g.measure_events == 500
    handler_ns = round(BOX.per_interrupt_ns)
    assert g.max_lateness_ns == pytest.approx(handler_ns + MIN_DELTA_NS - 50_000, abs=2)
    n = int(a.warp[0, layout.W_TRACE_N])
    assert n == 500 and (a.warp_inject_ns[0, :n] >= a.warp_deadline_ns[0, :n]).all()
    gaps_ns = np.diff(a.warp_inject_ns[0, :n]) - tight.spec.guest_ns(BOX.per_interrupt_ns)
    assert (gaps_ns == MIN_DELTA_NS).all()  # BLOCK on a passed deadline: no warp to speak of
    loose, _ = fleet.run_fleet(dataclasses.replace(base, measure_interval_ns=1_000_000))
    assert loose.per_guest[0].measure_events == 500
    assert loose.per_guest[0].max_lateness_ns == 0


def test_a_warped_fleet_is_deterministic_and_chunking_invariant() -> None:
    """Each VM is its own timeline: same seed, same events; an interrupted run's counts
    are those of a run as long as it got."""
    spec = fleet.FleetSpec(
        guests=50, mode="nohz-idle,nohz-full", duration_ns=300 * SECOND_NS, warp_idle=True
    )
    one, a1 = fleet.run_fleet(spec)
    two, a2 = fleet.run_fleet(spec)
    assert (a1.warp == a2.warp).all() and one.per_guest == two.per_guest
    assert one.host_timer_wakeups == 0
    assert all(g.timer_interrupts >= 299 for g in one.per_guest)

    def interrupt(done: float) -> None:
        raise KeyboardInterrupt

    partial, arrays = fleet.run_fleet(spec, progress=interrupt)
    assert partial.partial and partial.guest_time_s < 300
    short = fleet.run_fleet(dataclasses.replace(spec, duration_ns=arrays.now_ns))[0]
    assert [g.timer_interrupts for g in short.per_guest] == [
        g.timer_interrupts for g in partial.per_guest
    ]


def test_a_thousand_warped_guests_keep_the_busiest_cpu_busy() -> None:
    """A warped host runs flat out: its wall time is the busiest CPU's work, whose
    modelled CPU is then a whole core of events (and its 500 guests' baseline, per wall
    second, beside them); no host timer, no saturation to report."""
    r, _ = _run(guests=1000, mode="nohz-full", duration_ns=100 * SECOND_NS, warp_idle=True)
    assert r.host_timer_wakeups == 0
    baseline = 100 * 500 * BOX.baseline_ns_per_s / SECOND_NS
    assert max(c.cpu_percent_of_core for c in r.per_cpu) == pytest.approx(100.0 + baseline)
    assert r.to_json_dict()["saturation_guests"] is None
    assert r.guest_time_s >= 100 and r.wall_time_s < 100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "periodic"], "--warp-idle needs tickless guests"),
        (["--mode", "nohz-full,periodic"], "--warp-idle needs tickless guests"),
        (["--workload", "cpu"], "never idle"),
        (["--io", "100/s,5us"], "--io"),
    ],
)
def test_cli_refuses_what_cannot_warp_in_one_line(args: list[str], message: str) -> None:
    r = CliRunner().invoke(main, ["sim", "fleet", "--warp-idle", "--duration", "1s", *args])
    assert r.exit_code == 2
    errors = [line for line in r.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message in errors[0], r.output


def test_cli_warps_tickless_guests_by_default(tmp_path: Path) -> None:
    out = tmp_path / "warp.json"
    args = ["sim", "fleet", "--guests", "2", "--duration", "100s", "--warp-idle"]
    r = CliRunner().invoke(main, [*args, "--dilation", "1/10", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "guest time warped" in r.output
    d = json.loads(out.read_text())
    assert d["mode"] == "nohz-full" and d["warp_idle"] is True and d["dilation"] == "1/10"
    assert d["guest_time_s"] >= 100 and d["host_wakeups_per_s"] == 0.0
    assert d["schema_version"] == IDLE_SCHEMA_VERSION


# --- records ------------------------------------------------------------------------------------


def _idle(**extra: Any) -> IdleResult:
    """One tickless guest over 4 s, four timer events."""
    counts = {"host_timer_wakeups": 4, "host_timer_expiries": 4, "injections": 4}
    cpu = {"timer_thread_cpu_s": 0.0, "vcpu_cpu_s": 0.0, "process_cpu_s": 0.0}
    return idle_record(
        guests=1,
        mode="tickless",
        hz=None,
        duration_s=4.0,
        per_guest=[GuestIdleCounts("g", 4, 4, 4, 4, 8, 0.0)],
        **counts,
        **cpu,
        **extra,
    )


def test_idle_record_time_fields_default_to_time_running_straight() -> None:
    """A run that does not fill the time fields ran unwarped at its dilation; older
    records (version 2, none of the fields) read as dilation 1."""
    d = _idle(dilation="1/10").to_json_dict()
    assert d["schema_version"] == IDLE_SCHEMA_VERSION == 5
    assert (d["wall_time_s"], d["guest_time_s"], d["warped_s"]) == (4.0, pytest.approx(0.4), 0)
    warped = _idle(dilation="2", wall_time_s=0.5, guest_time_s=1000.0, warped_s=999.0)
    back = IdleResult.from_json_dict(json.loads(json.dumps(warped.to_json_dict())))
    assert back.to_json_dict() == warped.to_json_dict()
    old = _idle().to_json_dict()
    for key in ("dilation", "wall_time_s", "guest_time_s", "warped_s"):
        del old[key]
    old["schema_version"] = 2
    v2 = IdleResult.from_json_dict(old)
    assert (v2.dilation, v2.wall_time_s, v2.guest_time_s, v2.warped_s) == ("1", 4.0, 4.0, 0.0)
    rows = dict(fleet_rows(old))
    assert rows["time dilation (guest s per wall s)"] == "1"
    assert rows["guest time / wall time"] == "4.000 s / 4.000 s"
    rows = dict(fleet_rows(warped.to_json_dict()))
    assert rows["guest time warped (idle)"] == "999.000 s (99.90 %)"
