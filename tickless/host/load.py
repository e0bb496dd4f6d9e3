"""Real CPU load on the host: stress-ng on every CPU, for the paper's CPU-load scenario."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from types import TracebackType

from tickless.errors import TicklessError


class LoadError(TicklessError):
    """The load generator is missing or failed."""


@dataclass
class CpuLoadReport:
    workers: int
    wall_s: float
    cpu_s: float  # CPU time stress-ng and its workers used

    @property
    def cores_busy(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class HostCpuLoad:
    """Runs ``stress-ng --cpu N`` (N = all CPUs by default) while the context is open."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.report: CpuLoadReport | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._t0 = 0.0

    def __enter__(self) -> HostCpuLoad:
        exe = shutil.which("stress-ng")
        if exe is None:
            raise LoadError("stress-ng not found: install it with 'apt-get install stress-ng'")
        self._t0 = time.monotonic()
        self._proc = subprocess.Popen(
            [exe, "--cpu", str(self.workers), "--cpu-method", "matrixprod", "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(0.2)  # let the workers spin up before the measurement starts
        if self._proc.poll() is not None:
            raise LoadError(f"stress-ng exited at once with status {self._proc.returncode}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        wall_s = time.monotonic() - self._t0
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            _, _, usage = os.wait4(proc.pid, 0)
        except ChildProcessError:
            usage = None
        proc.returncode = 0
        cpu_s = usage.ru_utime + usage.ru_stime if usage is not None else 0.0
        self.report = CpuLoadReport(self.workers, wall_s, cpu_s)
