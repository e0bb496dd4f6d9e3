"""The simulator predicts a fleet size it never saw: fit on small real fleets, predict a big
one, run the big one, print both and the error.

    ./run bench sim_predicts [--fit-sizes 10,100] [--fit-duration 20s]
                                      [--size 1000] [--duration 30s] [--ship]

1. ``tickless idle --guests N --duration D --json`` for each fit size (real KVM guests, the
   steady window after every guest booted);
2. ``tickless sim fit`` on those records: the fleet cost model (CPU per interrupt,
   hypercall, host wake-up, guest and second, least squares; ``tickless.sim.cost_fit``);
3. ``tickless sim fleet --cost-model MODEL.json --guests SIZE --mode nohz-full``: the
   prediction (the simulator counts the events, the fitted model prices them);
4. ``tickless idle --guests SIZE --duration D``: the real run;
5. prints the fitted parameters, the prediction beside the measurement and the relative
   error. Nothing is asserted. ``--ship`` writes the model and its input records as the
   simulator's ``box`` model (``tickless/sim/data``). Run it under the timing lock.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "tickless" / "sim" / "data"
ROWS = (  # label, key, format
    ("steady host CPU, % of a core", "steady_cpu_percent_of_core", "{:.2f}"),
    ("host timer wake-ups/s", "host_wakeups_per_s", "{:,.1f}"),
    ("guest timer interrupts/s (all)", "guest_timer_irqs_per_s", "{:,.1f}"),
    ("host timer thread, % of a core", "timer_thread_percent", "{:.2f}"),
    ("vCPU threads, % of a core", "vcpu_percent", "{:.2f}"),
)


def _tickless(args: list[str], out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "tickless", *args, "--json", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    data: dict[str, Any] = json.loads(out.read_text())
    window = data["duration_s"]
    data["timer_thread_percent"] = 100 * data["timer_thread_cpu_s"] / window
    data["vcpu_percent"] = 100 * data["vcpu_cpu_s"] / window
    return data


def _error(predicted: float, measured: float) -> str:
    return f"{100 * (predicted - measured) / measured:+.1f} %" if measured else "-"


def _print_model(model: dict[str, Any]) -> None:
    print(f"\nfitted cost model ({model['source']}):")
    for key, label in (
        ("per_interrupt_ns", "per guest timer interrupt (vCPU thread)"),
        ("per_hypercall_ns", "per exiting hypercall"),
        ("per_wakeup_ns", "per host timer wake-up (timer thread)"),
        ("baseline_ns_per_s", "per guest, per second"),
        ("fixed_ns_per_s", "the VMM, per second"),
    ):
        print(f"  {label:42} {model[key] / 1000:10.2f} µs")
    for note in model["fit"]["notes"]:
        print(f"  ({note})")
    print("  in-sample:", end="")
    for r in model["fit"]["in_sample"]:
        print(
            f"  {r['file']}: model {r['model_cpu_s']:.4f} s, measured {r['measured_cpu_s']:.4f} s;",
            end="",
        )
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit-sizes", default="10,100", help="guests of each fitted run")
    parser.add_argument("--fit-duration", default="20s", help="window of each fitted run")
    parser.add_argument("--size", type=int, default=1000, help="guests to predict, then run")
    parser.add_argument("--duration", default="30s", help="window of the predicted run")
    parser.add_argument("--ship", action="store_true", help="ship the fit as the box model")
    opts = parser.parse_args()
    sizes = [int(s) for s in opts.fit_sizes.split(",")]
    if opts.size in sizes:
        parser.error("--size must be a size the fit never saw")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        fitted = []
        for n in sizes:
            path = tmp / f"box-fit-idle-{n}.json"
            _tickless(["idle", "--guests", str(n), "--duration", opts.fit_duration], path)
            fitted.append(path)
        model_path = tmp / "cost.json"
        name = "box" if opts.ship else "fitted"
        fit_cmd = ["sim", "fit", *map(str, fitted), "--name", name, "--out", str(model_path)]
        subprocess.run([sys.executable, "-m", "tickless", *fit_cmd], check=True)
        model = json.loads(model_path.read_text())
        common = ["--guests", str(opts.size), "--duration", opts.duration]
        sim_args = ["sim", "fleet", *common, "--mode", "nohz-full", "--cost-model", str(model_path)]
        sim = _tickless(sim_args, tmp / "sim.json")
        real = _tickless(["idle", *common], tmp / "real.json")
        if opts.ship:
            for path in fitted:
                shutil.copy(path, DATA / path.name)
            model["source"] = (
                f"fitted on this host ({real.get('machine', {}).get('cpu_model', 'this machine')}) "
                f"by benchmarks/sim_predicts.py from real `tickless idle` runs of "
                f"{' and '.join(map(str, sizes))} guests ({opts.fit_duration} windows, "
                f"records box-fit-idle-*.json beside this file)"
            )
            (DATA / "box-cost.json").write_text(json.dumps(model, indent=2) + "\n")
    _print_model(model)
    print(
        f"\n{opts.size:,} idle tickless guests, {opts.duration}: predicted from "
        f"{' and '.join(map(str, sizes))} guests vs a real run"
    )
    print(f"{'':34} {'predicted':>11} {'measured':>11} {'error':>9}")
    for label, key, fmt in ROWS:
        p, m = float(sim[key]), float(real[key])
        print(f"{label:34} {fmt.format(p):>11} {fmt.format(m):>11} {_error(p, m):>9}")
    print(f"(real run: {real['guests']:,} of {real['guests_requested']:,} guests booted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
