"""The issue's sweep, serial and on a local Dask cluster: wall times, their ratio, and
whether the sweep's 27 rows hold the same numbers as the points run one by one.

    ./run bench sweep_parallel            # all three ways (~1 min on 2 cores)
    ./run bench sweep_parallel --no-cli   # skip the 27 separate commands

Three wall times, each of a whole process from start to exit:
- one by one: ``tickless sim fleet ... --json`` per point, as a shell loop would run them;
- serial loop: one Python process running the 27 points back to back (``run_fleet``),
  the floor for serial work (no process start or engine load per point);
- sweep: ``tickless sweep sim fleet ...`` on a LocalCluster of two workers.
Run it alone (``flock /tmp/tickless-timing.lock``): it measures time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GUESTS = (100, 1000, 10000)
SLOPS = ("0ns", "50us", "1ms")
MODES = ("periodic", "nohz-idle", "nohz-full")
DURATION = "10s"
TIMING_FIELDS = ("simulation.", "sweep_")  # wall-clock fields: differ run to run
TICKLESS = [sys.executable, "-m", "tickless"]


def _points() -> list[tuple[int, str, str]]:
    return list(itertools.product(GUESTS, SLOPS, MODES))


def _serial_loop(out: Path) -> None:
    """The child process of the serial loop: every point, one after another."""
    from tickless.sim.fleet import FleetSpec, compile_engine, run_fleet
    from tickless.units import parse_duration_ns

    compile_s = compile_engine()
    records = []
    for guests, slop, mode in _points():
        spec = FleetSpec(
            guests=guests,
            mode=mode,
            slop_ns=parse_duration_ns(slop, allow_zero=True),
            duration_ns=parse_duration_ns(DURATION),
        )
        records.append(run_fleet(spec, compile_s=compile_s)[0].to_json_dict())
    out.write_text(json.dumps(records))


def _timed(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _key(row: dict[str, Any]) -> tuple[int, int, str]:
    return (
        int(row["model.slop_ns"]),
        int(row.get("result.guests", row["guests"])),
        str(row.get("result.mode", row["mode"])),
    )


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith(TIMING_FIELDS)}


def _differences(reference: list[dict[str, Any]], sweep_rows: list[dict[str, Any]]) -> int:
    """Points whose numbers differ between ``reference`` and the sweep's table."""
    by_key = {_key(r): r for r in sweep_rows}
    bad = 0
    for ref in reference:
        row = by_key.get(_key(ref))
        mismatched = row is None or any(
            row.get(f"result.{k}", row.get(k)) != v  # result.X: the record's X (X: a setting)
            for k, v in _comparable(ref).items()
        )
        bad += mismatched
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cli", action="store_true", help="skip the one-by-one commands")
    parser.add_argument("--serial-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serial_child:
        _serial_loop(args.serial_child)
        return
    from tickless.sweep.runners import flatten
    from tickless.sweep.store import read_rows

    tmp = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    serial_json = tmp / "serial.json"
    serial_s = _timed([sys.executable, __file__, "--serial-child", str(serial_json)])
    serial = [flatten(r) for r in json.loads(serial_json.read_text())]
    sweep_s = _timed(
        [*TICKLESS, "sweep", "sim", "fleet", "--workers", "2", "--duration", DURATION,
         "--param", f"guests={','.join(map(str, GUESTS))}", "--param",
         f"slop={','.join(SLOPS)}", "--param", f"mode={','.join(MODES)}",
         "--out", str(tmp / "sweep.parquet")]
    )  # fmt: skip
    rows = read_rows(tmp / "sweep.parquet")
    print(f"sweep: {len(rows)} rows; points whose numbers differ from the serial loop's: "
          f"{_differences(serial, rows)}")  # fmt: skip
    print(f"serial loop (one process)      {serial_s:7.2f} s")
    print(f"sweep, LocalCluster, 2 workers {sweep_s:7.2f} s   ratio {sweep_s / serial_s:.2f}")
    if not args.no_cli:
        t0 = time.perf_counter()
        one_by_one = []
        for i, (guests, slop, mode) in enumerate(_points()):
            out = tmp / f"point-{i}.json"
            _timed([*TICKLESS, "sim", "fleet", "--guests", str(guests), "--slop", slop,
                    "--mode", mode, "--duration", DURATION, "--json", str(out)])  # fmt: skip
            one_by_one.append(flatten(json.loads(out.read_text())))
        cli_s = time.perf_counter() - t0
        print(f"one by one (27 commands)       {cli_s:7.2f} s   "
              f"sweep ratio {sweep_s / cli_s:.2f}; points that differ from the sweep's: "
              f"{_differences(one_by_one, rows)}")  # fmt: skip


if __name__ == "__main__":
    main()
