"""The fleet cost model is fitted to idle records, not set to a result: the fit recovers the
parameters records were made with, its prediction moves the way its inputs do, and the
shipped ``box`` model is what refitting its shipped records gives. No KVM needed."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tickless.cli import main
from tickless.results.idle import GuestIdleCounts, IdleResult
from tickless.sim import fleet
from tickless.sim.cost import CostModel, box_model, load_cost_model
from tickless.sim.cost_fit import FitError, FitInput, fit_cost_model

SECOND_NS = 1_000_000_000
TRUE = {  # the costs the synthetic records are made with, ns
    "per_interrupt_ns": 90_000.0,
    "per_wakeup_ns": 30_000.0,
    "vmm_per_guest_ns_per_s": 40_000.0,
    "timer_fixed_ns_per_s": 300_000.0,
    "vcpu_fixed_ns_per_s": 3_000_000.0,
    "vmm_fixed_ns_per_s": 700_000.0,
}
FIXED_NS_PER_S = sum(v for k, v in TRUE.items() if k.endswith("fixed_ns_per_s"))


def _record(
    guests: int,
    window_s: float = 20.0,
    irq_per_s: float = 1.0,
    hypercalls_per_irq: int = 0,
    vcpu_baseline_ns_per_s: float = 0.0,
    seed: int = 0,
    costs: dict[str, float] = TRUE,
) -> IdleResult:
    """An idle record whose CPU is exactly what ``costs`` say for its counts; each guest's
    interrupts vary a little, as housekeeping phases make them."""
    rng = np.random.default_rng(seed)
    irqs = (irq_per_s * window_s + rng.integers(0, 6, guests)).astype(int)
    per_guest = [
        GuestIdleCounts(
            name=f"guest{g}",
            timer_interrupts=int(n),
            wakeups=int(n),
            housekeeping_runs=int(n),
            hypercalls=hypercalls_per_irq * int(n),
            exits=0,
            vcpu_cpu_s=(costs["per_interrupt_ns"] * n + vcpu_baseline_ns_per_s * window_s)
            / SECOND_NS,
        )
        for g, n in enumerate(irqs)
    ]
    # The vCPU threads' fixed cost, spread over the guests (the record has no other place).
    for g in per_guest:
        g.vcpu_cpu_s += costs["vcpu_fixed_ns_per_s"] * window_s / guests / SECOND_NS
    wakeups = int(irqs.sum() * 0.97) + 7
    timer_ns = costs["per_wakeup_ns"] * wakeups + costs["timer_fixed_ns_per_s"] * window_s
    timer_s = timer_ns / SECOND_NS
    vcpu_s = sum(g.vcpu_cpu_s for g in per_guest)
    vmm_ns = (costs["vmm_per_guest_ns_per_s"] * guests + costs["vmm_fixed_ns_per_s"]) * window_s
    return IdleResult(
        guests=guests,
        mode="tickless",
        hz=None,
        duration_s=window_s,
        host_timer_wakeups=wakeups,
        host_timer_expiries=int(irqs.sum()),
        injections=0,
        timer_thread_cpu_s=timer_s,
        vcpu_cpu_s=vcpu_s,
        process_cpu_s=timer_s + vcpu_s + vmm_ns / SECOND_NS,
        per_guest=per_guest,
    )


def _fit(*records: IdleResult) -> CostModel:
    return fit_cost_model([FitInput(r, f"idle-{r.guests}") for r in records], "test")


def test_the_fit_recovers_the_parameters_the_records_were_made_with() -> None:
    model = _fit(_record(10), _record(100, seed=1))
    assert model.per_interrupt_ns == pytest.approx(TRUE["per_interrupt_ns"], rel=1e-6)
    assert model.per_wakeup_ns == pytest.approx(TRUE["per_wakeup_ns"], rel=1e-6)
    assert model.baseline_ns_per_s == pytest.approx(TRUE["vmm_per_guest_ns_per_s"], rel=1e-6)
    assert model.fixed_ns_per_s == pytest.approx(FIXED_NS_PER_S, rel=1e-6)
    for part in ("timer_fixed_ns_per_s", "vcpu_fixed_ns_per_s", "vmm_fixed_ns_per_s"):
        assert model.fit["parts"][part] == pytest.approx(TRUE[part], rel=1e-6)
    assert model.per_hypercall_ns == 0.0
    assert any(n.startswith("per_hypercall_ns: never seen") for n in model.fit["notes"])
    for row in model.fit["in_sample"]:
        assert row["model_cpu_s"] == pytest.approx(row["measured_cpu_s"], rel=1e-4)


def test_a_periodic_run_separates_the_per_guest_baseline_from_the_interrupts() -> None:
    """Idle guests all take ~1 interrupt/s: their vCPU baseline cannot be told from their
    interrupts (folded, said so). A periodic run (1000/s) beside them splits the two."""
    idle = _record(10, vcpu_baseline_ns_per_s=200_000.0)
    alone = _fit(idle, _record(100, vcpu_baseline_ns_per_s=200_000.0, seed=1))
    assert alone.fit["parts"]["vcpu_baseline_ns_per_s"] == 0.0
    assert any("vcpu_baseline_ns_per_s: not separable" in n for n in alone.fit["notes"])
    periodic = _record(10, window_s=2.0, irq_per_s=1000.0, vcpu_baseline_ns_per_s=200_000.0)
    both = _fit(idle, _record(100, vcpu_baseline_ns_per_s=200_000.0, seed=1), periodic)
    assert both.fit["parts"]["vcpu_baseline_ns_per_s"] == pytest.approx(200_000.0, rel=1e-6)
    assert both.per_interrupt_ns == pytest.approx(TRUE["per_interrupt_ns"], rel=1e-6)


def test_one_hypercall_per_interrupt_is_folded_into_the_interrupt() -> None:
    model = _fit(_record(10, hypercalls_per_irq=1), _record(100, hypercalls_per_irq=1, seed=1))
    assert model.per_hypercall_ns == 0.0
    assert model.per_interrupt_ns == pytest.approx(TRUE["per_interrupt_ns"], rel=1e-6)
    assert any("per_hypercall_ns: not separable" in n for n in model.fit["notes"])


def test_one_fleet_size_cannot_split_the_vmm_cost() -> None:
    model = _fit(_record(100), _record(100, seed=1))
    assert model.fixed_ns_per_s == 0.0
    assert any(n.startswith("vmm_fixed_ns_per_s") for n in model.fit["notes"])


def _predict_1000(model: CostModel, tmp_path: Path) -> float:
    """The simulator's steady CPU (fraction of a core) for 1,000 idle guests, with ``model``."""
    path = tmp_path / f"{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(model.to_json_dict()))
    spec = fleet.FleetSpec(
        guests=1000, mode="nohz-full", duration_ns=8 * SECOND_NS, cost_model=str(path)
    )
    result, _ = fleet.run_fleet(spec)
    return result.process_cpu_s / result.duration_s


def _costlier(**more: float) -> dict[str, float]:
    return {k: v * more.get(k, 1.0) for k, v in TRUE.items()}


def test_the_prediction_moves_with_the_fit_inputs(tmp_path: Path) -> None:
    """Costlier interrupts or wake-ups in the records: a costlier fleet. A dearer VMM at 10
    guests alone (same at 100): more of its cost is fixed, less grows with guests, so
    1,000 guests cost less."""
    small, big = _record(10), _record(100, seed=1)
    base = _predict_1000(_fit(small, big), tmp_path)
    assert base > 0
    dear_irq = _costlier(per_interrupt_ns=2.0)
    irq = _predict_1000(
        _fit(_record(10, costs=dear_irq), _record(100, seed=1, costs=dear_irq)), tmp_path
    )
    assert irq > base
    dear_wake = _costlier(per_wakeup_ns=2.0)
    wake = _predict_1000(
        _fit(_record(10, costs=dear_wake), _record(100, seed=1, costs=dear_wake)), tmp_path
    )
    assert wake > base
    heavier_small = dataclasses.replace(small, process_cpu_s=small.process_cpu_s + 0.05)
    assert _predict_1000(_fit(heavier_small, big), tmp_path) < base


def test_refused_records(tmp_path: Path) -> None:
    with pytest.raises(FitError, match="interrupted"):
        _fit(dataclasses.replace(_record(10), partial=True))
    with pytest.raises(FitError, match="warp"):
        _fit(dataclasses.replace(_record(10), warped_s=3.0))
    with pytest.raises(FitError, match="no records"):
        fit_cost_model([], "x")


def test_sim_fit_writes_a_model_sim_fleet_uses(tmp_path: Path) -> None:
    paths = []
    for r in (_record(10), _record(100, seed=1)):
        path = tmp_path / f"idle-{r.guests}.json"
        path.write_text(json.dumps(r.to_json_dict()))
        paths.append(str(path))
    model_path = tmp_path / "model.json"
    runner = CliRunner()
    out = runner.invoke(main, ["sim", "fit", *paths, "--name", "here", "--out", str(model_path)])
    assert out.exit_code == 0, out.output
    model = load_cost_model(model_path)
    assert model.name == "here" and "10, 100 guests" in model.source
    assert [i["guests"] for i in model.fit["inputs"]] == [10, 100]
    assert model.per_wakeup_ns == pytest.approx(TRUE["per_wakeup_ns"], rel=1e-6)
    args = ["sim", "fleet", "--guests", "50", "--duration", "2s", "--mode", "nohz-full"]
    out = runner.invoke(main, [*args, "--cost-model", str(model_path)])
    assert out.exit_code == 0, out.output
    assert "modelled host CPU (here)" in out.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "invalid JSON"),
        ('{"format": "x"}', "not a cost model"),
        (None, "no such file"),
    ],
)
def test_a_bad_cost_model_file_is_one_line(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content)
    out = CliRunner().invoke(main, ["sim", "fleet", "--cost-model", str(path), "--duration", "1s"])
    assert out.exit_code == 2 and message in out.output
    bad = dict(box_model().to_json_dict(), per_wakeup_ns=-1.0)
    path.write_text(json.dumps(bad))
    out = CliRunner().invoke(main, ["sim", "fleet", "--cost-model", str(path), "--duration", "1s"])
    assert out.exit_code == 2 and "per_wakeup_ns" in out.output


def test_the_shipped_box_model_is_the_fit_of_its_shipped_records() -> None:
    """``box`` is not a constant: refitting the records shipped beside it gives it back,
    and it says it was fitted here and on which fleet sizes."""
    box = box_model()
    data = resources.files("tickless.sim").joinpath("data")
    inputs = [
        FitInput(
            IdleResult.from_json_dict(json.loads(data.joinpath(i["file"]).read_text())), i["file"]
        )
        for i in box.fit["inputs"]
    ]
    assert len({i.record.guests for i in inputs}) >= 2
    refit = fit_cost_model(inputs, "box")
    for key in ("per_interrupt_ns", "per_hypercall_ns", "per_wakeup_ns", "baseline_ns_per_s"):
        assert getattr(refit, key) == pytest.approx(getattr(box, key), rel=1e-9)
    assert refit.fixed_ns_per_s == pytest.approx(box.fixed_ns_per_s, rel=1e-9)
    assert box.source.startswith("fitted on this host")
