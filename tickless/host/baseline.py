"""The host-userspace baseline: the guests' timer measurement, run on the host itself.

The C program ``src/hostbench.c`` sleeps to N deadlines d apart and records each wake-up
(Adamczyk & Chydzinski's method), so its intervals are the floor a KVM guest can reach on
this box. It is a separate C process, not a Python thread, so interpreter wake-up cost
(30-43 us here) does not pollute the floor.
"""

from __future__ import annotations

import os
import select
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tickless.axes import Method, choices
from tickless.buildcache import cached_build, require_tool, run_tool, tool_version
from tickless.errors import TicklessError
from tickless.host.realtime import RealtimePolicy

SRC = Path(__file__).parent / "src" / "hostbench.c"
CFLAGS = ("-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror")
MAX_COUNT = 10_000_000
_PROGRESS_PERIOD_S = 0.1


class HostBaselineError(TicklessError):
    """hostbench exited with an error; the message carries its stderr."""


@dataclass(frozen=True)
class HostBaselineRun:
    interval_ns: int
    method: str
    timestamps_ns: npt.NDArray[np.int64]  # count + 1 wake-up times, CLOCK_MONOTONIC
    cpu_s: float  # the child's user + system CPU time
    wall_s: float  # spawn to exit, including start-up
    problems: list[str]  # settings hostbench could not apply (its stderr lines)
    scheduling: str  # the policy hostbench ran under: a refused SCHED_FIFO is SCHED_OTHER

    @property
    def intervals_ns(self) -> npt.NDArray[np.int64]:
        """The measured intervals, the quantity the paper reports."""
        return np.diff(self.timestamps_ns)


def build_hostbench(force: bool = False) -> Path:
    """Path of the hostbench binary, rebuilt when its source, flags or gcc change."""
    gcc = require_tool("gcc")
    inputs = [SRC.name.encode(), SRC.read_bytes(), " ".join(CFLAGS).encode(), tool_version(gcc)]

    def build(work: Path) -> None:
        run_tool([gcc, *CFLAGS, "-o", str(work / "hostbench"), str(SRC)])

    return cached_build("hostbench", inputs, build, ("hostbench",), force=force) / "hostbench"


def run_host_baseline(
    interval_ns: int,
    count: int,
    method: str = "relative",
    policy: RealtimePolicy | None = None,
    progress: Callable[[int], None] | None = None,
) -> HostBaselineRun:
    """Run ``count`` timer events ``interval_ns`` apart on the host and return the wake-ups.

    ``policy`` defaults to ``RealtimePolicy()`` (SCHED_FIFO 90, PM QoS held), like the host
    timer thread. ``progress`` gets an estimated number of events done, about 10 times a
    second, estimated from elapsed time because the child reports nothing until it exits.
    """
    _validate(interval_ns, count, method)
    policy = policy or RealtimePolicy()
    binary = build_hostbench()
    with tempfile.TemporaryDirectory(prefix="tickless-hostbench-") as tmp_name:
        out_path, err_path = Path(tmp_name) / "timestamps.bin", Path(tmp_name) / "stderr.txt"
        cmd = [str(binary), f"--interval-ns={interval_ns}", f"--count={count}"]
        cmd += [f"--method={method}", f"--out={out_path}", *_policy_args(policy)]
        with open(err_path, "wb") as err:
            start_s = time.monotonic()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        status, cpu_s = _wait(proc, interval_ns, count, start_s, progress)
        wall_s = time.monotonic() - start_s
        stderr_lines = err_path.read_text(errors="replace").splitlines()
        if status != 0:
            detail = "; ".join(stderr_lines) or f"exit status {status}"
            raise HostBaselineError(f"hostbench failed: {detail}")
        timestamps_ns = np.fromfile(out_path, dtype="<u8").astype(np.int64)
    if timestamps_ns.size != count + 1:
        raise HostBaselineError(f"hostbench wrote {timestamps_ns.size} of {count + 1} timestamps")
    if progress is not None:
        progress(count)
    refused = any("no SCHED_FIFO" in line for line in stderr_lines)
    fifo = policy.fifo_priority
    scheduling = f"SCHED_FIFO {fifo}" if fifo is not None and not refused else "SCHED_OTHER"
    return HostBaselineRun(
        interval_ns, method, timestamps_ns, cpu_s, wall_s, stderr_lines, scheduling
    )


def _validate(interval_ns: int, count: int, method: str) -> None:
    if interval_ns <= 0:
        raise ValueError(f"interval_ns must be positive, got {interval_ns}")
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be between 1 and {MAX_COUNT}, got {count}")
    if method not in choices(Method):
        raise ValueError(f"method must be {' or '.join(choices(Method))}, got {method!r}")
    if interval_ns * count > 2**62:
        raise ValueError(f"interval_ns * count = {interval_ns * count} ns is absurdly long")


def _policy_args(policy: RealtimePolicy) -> list[str]:
    args = []
    if policy.fifo_priority is not None:
        args.append(f"--fifo={policy.fifo_priority}")
    if policy.cpu is not None:
        args.append(f"--cpu={policy.cpu}")
    if not policy.hold_cpu_dma_latency:
        args.append("--no-dma-latency")
    return args


def _wait(
    proc: subprocess.Popen[bytes],
    interval_ns: int,
    count: int,
    start_s: float,
    progress: Callable[[int], None] | None,
) -> tuple[int, float]:
    """Reap the child with wait4, for its own CPU time (RUSAGE_CHILDREN would mix in any
    other child this process reaps meanwhile); return (exit status, CPU seconds).

    A pidfd wakes us the moment the child exits, so wall time is not rounded up to the
    progress period. On KeyboardInterrupt (or any error) the child is terminated first.
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
        try:
            while not select.select([pidfd], [], [], _PROGRESS_PERIOD_S)[0]:
                if progress is not None:
                    elapsed_ns = (time.monotonic() - start_s) * 1e9
                    progress(min(count, int(elapsed_ns / interval_ns)))
        finally:
            os.close(pidfd)
        _, wait_status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(wait_status)  # so Popen does not reap again
    return proc.returncode, usage.ru_utime + usage.ru_stime
