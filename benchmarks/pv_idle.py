"""PV idle against HLT: the same idle fleet of small guests on the PV deadline device, every
way, in one run (issue 21).

    flock /tmp/tickless-timing.lock ./run bench pv_idle [--guests 1000] [--duration 30s]
    flock /tmp/tickless-kbuild.lock flock /tmp/tickless-timing.lock \
        ./run bench pv_idle --linux [--guests 4] [--duration 30s]

It runs ``tickless idle --guests N --duration D --pv-idle halt``, then ``... block``, then
``... lapic`` (each in its own process, real KVM guests, the window measured once every
guest booted) and prints their records side by side: steady host CPU and where it went (the
vCPU threads, guest included; the deadline loop and the timer thread; the rest of the
process: Python), wake-ups and interrupts per guest per second, early timer runs. The
cheapest way is named; nothing is asserted. ``--linux``: Linux guests instead, on
``--timer pv`` and on ``--timer lguest`` (its idle is always HLT): host CPU per guest and
exits per second.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tickless.guest.abi import PV_IDLE_WAYS

WAYS = PV_IDLE_WAYS  # halt, block, lapic


def _run(args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, "-m", "tickless", *args, "--json", str(out)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        data: dict[str, Any] = json.loads(out.read_text())
        return data


def _rows(d: dict[str, Any]) -> dict[str, str]:
    window_s = d["duration_s"]
    guests = d["guests"]
    exits = sum(g["exits"] for g in d["per_guest"]) / guests / window_s
    vcpu = 100 * d["vcpu_cpu_s"] / window_s
    loop = 100 * d["timer_thread_cpu_s"] / window_s
    spin = 100 * d.get("guest_spin_s", 0.0) / window_s
    process = 100 * d["process_cpu_s"] / window_s
    wakeups = sum(g["wakeups"] for g in d["per_guest"]) / guests / window_s
    return {
        "guests": f"{guests:,}",
        "steady host CPU, % of a core": f"{d['steady_cpu_percent_of_core']:.2f}",
        "  vCPU threads (guest included), %": f"{vcpu:.2f}",
        "    of them: guests spinning to deadlines, %": f"{spin:.2f}",
        "  deadline loop + timer thread, %": f"{loop:.2f}",
        "  the rest: Python (watchdog, window, main), %": f"{process - vcpu - loop:.2f}",
        "host CPU per guest, us/s": f"{1e4 * d['steady_cpu_percent_of_core'] / guests:.1f}",
        "guest wake-ups per guest per s": f"{wakeups:.2f}",
        "timer interrupts per guest per s": f"{d['interrupts_per_guest_per_s']:.2f}",
        "exits per guest per s (kicks included)": f"{exits:.2f}",
        "early timer runs": f"{d['early_timer_runs']}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, default=1000)
    parser.add_argument("--duration", default="30s")
    parser.add_argument("--linux", action="store_true", help="Linux guests: pv against lguest")
    opts = parser.parse_args()
    common = ["idle", "--guests", str(opts.guests), "--duration", opts.duration]
    if opts.linux:
        common += ["--guest", "linux"]
        ways: dict[str, list[str]] = {w: ["--timer", w] for w in ("pv", "lguest")}
        title = f"{opts.guests:,} idle Linux guests, {opts.duration}"
    else:
        ways = {w: ["--pv-idle", w] for w in WAYS}
        title = f"{opts.guests:,} idle small guests on --timer pv, {opts.duration}"
    records = {way: _run([*common, *extra]) for way, extra in ways.items()}
    rows = {way: _rows(d) for way, d in records.items()}
    print(f"\n{title}")
    print(f"{'':52}" + "".join(f"{way:>12}" for way in rows))
    for label in next(iter(rows.values())):
        print(f"{label:52}" + "".join(f"{rows[way][label]:>12}" for way in rows))
    cost = {way: records[way]["steady_cpu_percent_of_core"] for way in rows}
    print(f"cheapest: {min(cost, key=lambda way: cost[way])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
