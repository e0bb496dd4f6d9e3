"""A profile fitted from a real KVM run, against a second real run it did not see.

    ./run bench sim_fit_kvm [--pairs 3]

Each pair: measure lguest 100 us x 1000 on KVM, fit a profile (``tickless sim fit``),
predict lguest 200 us x 1000 with the simulator, measure that run too, and print the
predicted and measured mean intervals, the error, and what a latency-free model (mean =
d) would be off by. The delivery latency of a nested host drifts between runs and with
load, so this is a figure, not a test (tests/test_sim_fit_kvm.py checks the fit's
properties); run it alone (``flock /tmp/tickless-timing.lock ...``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from tickless.backends import measure
from tickless.results.schema import ResultRecord, to_json_dict, write_json_atomic
from tickless.results.spec import MeasureSpec

FIT_NS, PREDICT_NS, EVENTS = 100_000, 200_000, 1000


def run(interval_ns: int, **kw: object) -> ResultRecord:
    spec = MeasureSpec(timer="lguest", interval_ns=interval_ns, count=EVENTS, **kw)  # type: ignore[arg-type]
    return measure(spec)


def pair(tmp: Path) -> tuple[float, float, float]:
    fitted = run(FIT_NS, backend="kvm")
    real = run(PREDICT_NS, backend="kvm")
    record, profile = tmp / "run.json", tmp / "kvm-here.json"
    write_json_atomic(record, to_json_dict(fitted))
    cmd = [sys.executable, "-m", "tickless", "sim", "fit", str(record), "--name", "kvm-here"]
    subprocess.run([*cmd, "--out", str(profile)], check=True, capture_output=True)
    predicted = run(PREDICT_NS, backend="sim", platform=str(profile))
    return fitted.stats.mean_ns, real.stats.mean_ns, predicted.stats.mean_ns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    head = ("pair", "fit 100us", "real 200us", "sim 200us", "error", "mean=d")
    print("{:>4} {:>10} {:>11} {:>10} {:>7} {:>7}".format(*head))
    for i in range(args.pairs):
        with tempfile.TemporaryDirectory() as tmp:
            fitted, real, sim = pair(Path(tmp))
        error, bare = (sim - real) / real, (PREDICT_NS - real) / real
        print(
            f"{i:4d} {fitted / 1e3:9.1f}u {real / 1e3:10.1f}u {sim / 1e3:9.1f}u "
            f"{100 * error:+6.1f}% {100 * bare:+6.1f}%"
        )


if __name__ == "__main__":
    main()
