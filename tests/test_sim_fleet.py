"""Fleets: the engine against the real classes, the seed figures, the cost model, the
command line and its refusals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from records import idle_record

from tickless.cli import main
from tickless.results.idle import GuestIdleCounts
from tickless.sim import cost, fleet, layout
from tickless.sim import guest_model as gm

pytest.importorskip("simpy")
from sim_reference import Reference, run_reference

SECOND_NS = 1_000_000_000
MIXED = fleet.FleetSpec(
    guests=20,
    mode="periodic,nohz-idle,nohz-full",
    workload="idle,cpu,measure,idle",
    hz=1000,
    duration_ns=300_000_000,
    cpus=2,
    slop_ns=50_000,
    housekeeping_ns=(70_000_000, 110_000_000),
    measure_count=200,
    measure_interval_ns=350_000,
    io=(fleet.IoSource(2000, 20_000, 0), fleet.IoSource(30, 2_500_000, 1)),
    seed=3,
)
GUEST_FIELDS = (gm.IRQS, gm.USEFUL, gm.HK_RUNS, gm.HYPERCALLS, gm.MEAS_EVENTS)
GUEST_FIELDS += (gm.LATE_SUM_NS, gm.LATE_MAX_NS)


def _engine_view(spec: fleet.FleetSpec, sorted_runs: bool) -> dict[str, Any]:
    _, a = fleet.run_fleet(spec, trace_capacity=100_000, sorted_runs=sorted_runs)
    view: dict[str, Any] = {"cpu": [], "guest": []}
    for c in range(spec.cpus):
        n = int(a.cpu[c, layout.C_TRACE_N])
        assert n < 100_000, "trace truncated"
        counters = [
            int(a.cpu[c, f])
            for f in (layout.C_WAKEUPS, layout.C_EXPIRIES, layout.C_IO_IRQS, layout.C_DELAYED)
        ]
        trace = list(zip(a.trace_ns[c, :n].tolist(), a.trace_count[c, :n].tolist(), strict=True))
        view["cpu"].append((counters, trace))
    for g in range(spec.guests):
        device = [
            int(a.dev[g, f]) for f in (layout.D_EXPIRIES, layout.D_OVERRUNS, layout.D_REJECTED)
        ]
        view["guest"].append((device, [int(a.rows[g, f]) for f in GUEST_FIELDS]))
    return view


def _reference_view(ref: Reference) -> dict[str, Any]:
    view: dict[str, Any] = {"cpu": [], "guest": []}
    for c in ref.cpus:
        view["cpu"].append(([c.wakeups, c.expiries, c.io_irqs, c.delayed], c.trace))
    for dev, g in zip(ref.devices, ref.guests, strict=True):
        device = [dev.stats.expiries, dev.stats.overruns, dev.stats.rejected]
        guest = [g.irqs, g.useful, g.housekeeping_runs, g.hypercalls, g.meas_events]
        view["guest"].append((device, [*guest, g.late_sum_ns, g.late_max_ns]))
    return view


@pytest.mark.parametrize(
    "spec",
    [
        MIXED,
        dataclasses.replace(MIXED, slop_ns=0, seed=4),
        dataclasses.replace(MIXED, hz=4000, slop_ns=300_000, cpus=3, placement="block"),
    ],
    ids=["slop-50us", "slop-0", "slop-over-period"],
)
@pytest.mark.parametrize("sorted_runs", [True, False], ids=["fast-path", "heap-only"])
def test_engine_equals_real_classes(spec: fleet.FleetSpec, sorted_runs: bool) -> None:
    """A mixed fleet (every mode with every workload, slop, I/O that delays wake-ups and
    makes periodic ticks overrun) gives, in the engine and in the real TimerQueue +
    ClockEventDevice under SimPy: the same host wake-up times, timers expired at each,
    device expiries, overruns and rejections, and per-guest interrupt counts."""
    mine, ref = _engine_view(spec, sorted_runs), _reference_view(run_reference(spec))
    for c, (engine_cpu, ref_cpu) in enumerate(zip(mine["cpu"], ref["cpu"], strict=True)):
        assert engine_cpu[0] == ref_cpu[0], f"cpu {c} counters"
        assert engine_cpu[1] == ref_cpu[1], f"cpu {c} wake-up trace"
    assert mine["guest"] == ref["guest"]
    # the run exercised what it is meant to: coalescing, I/O delays, overruns, measurement
    wakeups = sum(cpu[0][0] for cpu in mine["cpu"])
    expiries = sum(cpu[0][1] for cpu in mine["cpu"])
    assert expiries > 1000
    assert spec.slop_ns == 0 or wakeups < expiries
    assert sum(cpu[0][3] for cpu in mine["cpu"]) > 0
    assert sum(g[0][1] for g in mine["guest"]) > 0
    assert sum(g[1][4] for g in mine["guest"]) > 0


# --- seed figures ----------------------------------------------------------------------------


def _fleet(**kwargs: Any) -> fleet.FleetResult:
    spec = fleet.FleetSpec(**{"duration_ns": 8 * SECOND_NS, **kwargs})
    return fleet.run_fleet(spec)[0]


def test_ten_periodic_guests_make_ten_thousand_events() -> None:
    """10 guests at 1000 HZ: 10,000 host timer events/s, one injection each."""
    r = _fleet(guests=10, mode="periodic", hz=1000)
    assert r.expiries_per_s == 10_000
    assert r.injections_per_s == 10_000
    assert r.interrupts_per_guest_per_s == 1000


@pytest.mark.parametrize("mode", ["nohz-full", "nohz-idle"])
def test_tickless_idle_guests_take_one_or_two_interrupts(mode: str) -> None:
    """Tickless idle guests take 1-2 timer interrupts/s, one per housekeeping run (their
    1 s and 4 s timers coincide every fourth second, as in the real guest)."""
    r = _fleet(guests=10, mode=mode)
    assert 1.0 <= r.interrupts_per_guest_per_s <= 2.0
    for g in r.per_guest:
        assert g.useful_interrupts == g.timer_interrupts
        assert g.hypercalls == g.timer_interrupts


def test_nohz_idle_wakes_on_the_tick_grid() -> None:
    """nohz-idle guests' events fall on their jiffy grid; nohz-full ones at timer times."""
    spec = fleet.FleetSpec(guests=6, mode="nohz-idle,nohz-full", duration_ns=5 * SECOND_NS)
    _, a = fleet.run_fleet(spec, trace_capacity=1000)
    anchors = {int(a.rows[g, gm.ANCHOR]) % spec.period_ns for g in range(spec.guests)}
    for c in range(spec.cpus):  # round-robin on 2 CPUs: CPU 0 holds the nohz-idle guests
        times = a.trace_ns[c, : a.cpu[c, layout.C_TRACE_N]]
        on_grid = {int(t) % spec.period_ns in anchors for t in times}
        assert on_grid == ({True} if c == 0 else {False})


def test_busy_guests() -> None:
    """A busy guest needs its tick: nohz-idle keeps HZ, nohz-full keeps the 1 Hz residual."""
    ticking = _fleet(guests=4, mode="nohz-idle", workload="cpu")
    assert ticking.interrupts_per_guest_per_s == 1000
    full = _fleet(guests=4, mode="nohz-full", workload="cpu")
    assert 1.0 < full.interrupts_per_guest_per_s <= 2.25


def _per_guest_cost_ratio(model: str) -> float:
    periodic = _fleet(guests=10, mode="periodic", cost_model=model)
    tickless = _fleet(guests=10, mode="nohz-full", cost_model=model)
    return periodic.vcpu_cpu_s / tickless.vcpu_cpu_s


def test_cost_ratio_kvm_2007_in_molnars_range() -> None:
    """KVM as of early 2007 (a few % CPU per idle guest at HZ=1000, 2.5 ms/s baseline):
    periodic / tickless host work of an idle guest is within the reported 10-15x."""
    assert 10 <= _per_guest_cost_ratio("kvm-2007") <= 15


def test_box_model_prices_a_tick_like_any_interrupt() -> None:
    """The box model (fitted here; tests/test_sim_cost_fit.py) prices each interrupt the
    same whatever sent it: a periodic fleet costs its interrupts more than a tickless one."""
    box = cost.box_model()
    periodic = _fleet(guests=10, mode="periodic")
    tickless = _fleet(guests=10, mode="nohz-full")
    irqs = sum(g.timer_interrupts for g in periodic.per_guest)
    calls = sum(g.hypercalls for g in periodic.per_guest)
    expected_ns = irqs * box.per_interrupt_ns + calls * box.per_hypercall_ns
    expected_ns += 10 * box.baseline_ns_per_s * periodic.duration_s
    assert periodic.vcpu_cpu_s == pytest.approx(expected_ns / SECOND_NS)
    assert periodic.vcpu_cpu_s > tickless.vcpu_cpu_s


# --- runs and results --------------------------------------------------------------------------


def test_ctrl_c_keeps_a_partial_result() -> None:
    """Interrupted after its first chunk, a run reports that chunk, says so, and its counts
    are those of a run that long."""
    spec = fleet.FleetSpec(guests=50, mode="periodic", duration_ns=100 * SECOND_NS)

    def interrupt(done: float) -> None:
        raise KeyboardInterrupt

    partial, arrays = fleet.run_fleet(spec, progress=interrupt)
    assert partial.partial
    assert 0 < partial.duration_s < 100
    assert partial.notes[0].startswith("interrupted: simulated")
    assert partial.to_json_dict()["partial"] is True
    short = dataclasses.replace(spec, duration_ns=arrays.now_ns)
    full = fleet.run_fleet(short)[0]
    assert not full.partial
    assert full.host_timer_expiries == partial.host_timer_expiries
    assert full.per_guest == partial.per_guest


def test_json_has_the_idle_result_fields() -> None:
    """A fleet result carries every field of a real idle result, plus the simulator's."""
    idle = idle_record().to_json_dict()
    d = _fleet(guests=3, mode="nohz-full", duration_ns=SECOND_NS).to_json_dict()
    assert set(idle) - {"kind"} <= set(d)
    assert set(idle["per_guest"][0]) <= set(d["per_guest"][0])
    assert (d["kind"], d["backend"], d["hz"]) == ("fleet", "sim", None)
    assert {"per_cpu", "model", "partial"} <= set(d)
    json.dumps(d, allow_nan=False)


def test_json_per_guest_and_per_cpu_keep_their_shape() -> None:
    """The per-guest and per-CPU dataclasses write the keys ``--json`` always wrote, in
    order: a real idle guest's first, then the simulation's."""
    d = _fleet(guests=2, mode="nohz-full,periodic", duration_ns=SECOND_NS).to_json_dict()
    idle_guest = [f.name for f in dataclasses.fields(GuestIdleCounts)]
    assert list(d["per_guest"][0]) == [
        *idle_guest,
        *("cpu", "mode", "workload", "useful_interrupts", "overruns", "measure_events"),
        *("mean_lateness_ns", "max_lateness_ns", "warped_s"),
    ]
    assert list(d["per_cpu"][0]) == [
        *("cpu", "guests", "host_timer_wakeups", "host_timer_expiries", "injections"),
        *("io_interrupts", "io_busy_s", "wakeups_delayed_by_io", "io_delay_s"),
        *("wakeups_per_s", "expiries_per_s", "timer_thread_cpu_s", "modelled_cpu_s"),
        "cpu_percent_of_core",
    ]
    assert d["per_guest"][1]["mode"] == "periodic" and d["per_guest"][0]["max_lateness_ns"] is None


def test_memory_estimate_refuses_what_does_not_fit() -> None:
    spec = fleet.FleetSpec(guests=1_000_000)
    with pytest.raises(MemoryError, match="at most ~"):
        fleet.check_memory(spec, available=100 * 2**20)
    fleet.check_memory(spec, available=64 * 2**30)


# --- the command line ----------------------------------------------------------------------------


def _cli(args: list[str]) -> Any:
    return CliRunner().invoke(main, ["sim", "fleet", *args])


def test_cli_writes_the_result(tmp_path: Path) -> None:
    out = tmp_path / "fleet.json"
    r = _cli(["--guests", "4", "--duration", "2s", "--mode", "nohz-full", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "host timer events/s" in r.output
    d = json.loads(out.read_text())
    assert d["kind"] == "fleet" and d["guests"] == 4 and d["duration_s"] == 2.0
    assert d["model"]["seed"] == 0 and len(d["per_cpu"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "0s"], "zero"),
        (["--duration", "-1s"], "negative"),
        (["--guests", "0"], "--guests must be at least 1"),
        (["--mode", "dynticks"], "unknown mode 'dynticks'"),
        (["--mode", "periodic,bogus"], "unknown mode 'bogus'"),
        (["--cpus", "0"], "--cpus"),
        (["--io", "1733/s,5us,7"], "cpu 7 does not exist"),
        (["--io", "900000/s,5us"], "busy"),
        (["--guests", "100000000000"], "available"),
    ],
)
def test_cli_refuses_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    """One clear error, exit code 2, nothing written."""
    out = tmp_path / "out.json"
    r = _cli([*args, "--json", str(out)])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_missing_json_directory(tmp_path: Path) -> None:
    r = _cli(["--guests", "2", "--json", str(tmp_path / "no" / "such.json")])
    assert r.exit_code == 2 and "does not exist" in r.output
