"""The watchdog: a guest that burns its vCPU without making any progress is stopped.

Progress is anything the host can see the guest do: an exit (a hypercall, port I/O, MMIO) or
a change in the counters it writes in the shared page (an interrupt the host injects is not
the guest's doing: a guest looping with interrupts off still gets them injected). A
guest that idles in HLT shows none of that either, for as long as its next timer is far
off, but it costs no CPU; so the rule is both: no progress *and* its vCPU thread busy for
at least ``BUSY_FRACTION`` of ``bound_s``, busy meaning on a CPU or runnable, waiting for
one (a runaway on a loaded host gets less CPU, but never sleeps). That is a runaway loop,
in ring 3 or in ring 0 with interrupts off, and it is stopped within ``bound_s`` plus one
check period (a quarter of the bound). The host process and its other guests go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

DEFAULT_BOUND_S = 5.0
BUSY_FRACTION = 0.5  # of the bound: a halted guest's vCPU thread sleeps, ~never busy


class Watched(Protocol):
    """What the watchdog reads of a machine (``GuestMachine``)."""

    name: str

    @property
    def running(self) -> bool: ...

    @property
    def watchdog_s(self) -> float | None:
        """This guest's own bound (None: the watchdog's)."""

    def activity(self) -> bytes: ...

    def vcpu_busy_ns(self) -> int:
        """Time the vCPU thread was on a CPU or runnable (``thread_busy_ns``)."""

    def request_stop(self, reason: str) -> None: ...


@dataclass
class _Seen:
    activity: bytes
    since_s: float  # when that activity was first seen
    cpu_ns: int  # the vCPU thread's CPU time then


class Watchdog:
    """Checks every machine of a host every ``bound_s / 4``; ``check`` is the whole rule
    (tests call it with a fake clock)."""

    def __init__(
        self,
        machines: Callable[[], Iterable[Watched]],
        bound_s: float = DEFAULT_BOUND_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if bound_s <= 0:
            raise ValueError("the watchdog's bound must be positive")
        self.machines = machines
        self.bound_s = bound_s
        self.clock = clock
        self.stopped: list[str] = []  # one line per guest it stopped
        self.errors: list[str] = []  # its own failures (reported, the checks go on)
        self._seen: dict[int, _Seen] = {}
        self._quit = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._quit.set()
        if self._thread.ident is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._quit.wait(self.bound_s / 4):
            try:
                self.check()
            except Exception as exc:  # a bug here must not leave every guest unwatched
                self.errors.append(repr(exc))

    def check(self) -> None:
        now = self.clock()
        live = set()
        for machine in list(self.machines()):
            if not machine.running:
                continue
            live.add(id(machine))
            activity = machine.activity()
            seen = self._seen.get(id(machine))
            if seen is None or seen.activity != activity:
                # The vCPU's busy time is read only once it stops showing progress: with a
                # thousand guests, a system call per guest per check is most of the cost.
                self._seen[id(machine)] = _Seen(activity, now, -1)
                continue
            cpu_ns = machine.vcpu_busy_ns()
            if seen.cpu_ns < 0:
                seen.cpu_ns = cpu_ns
                continue
            quiet_s = now - seen.since_s
            busy_s = (cpu_ns - seen.cpu_ns) / 1e9
            bound_s = machine.watchdog_s or self.bound_s
            if quiet_s >= bound_s and busy_s >= BUSY_FRACTION * quiet_s:
                reason = (
                    f"watchdog: no progress for {quiet_s:.1f} s while its vCPU ran "
                    f"{100 * busy_s / quiet_s:.0f} % of the time (a runaway loop; bound "
                    f"{bound_s:g} s)"
                )
                self.stopped.append(f"{machine.name}: {reason}")
                machine.request_stop(reason)
                del self._seen[id(machine)]
        for key in set(self._seen) - live:
            del self._seen[key]
