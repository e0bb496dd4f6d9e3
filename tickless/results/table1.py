"""Our Table 1's plan: every timer path we have, at the paper's intervals, idle and loaded.

The rows are independent runs of ``tickless measure`` (``tickless table1`` runs them on
their backend, ``report/table1.py`` prints them beside the paper's rows).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tickless.axes import Backend, GuestKind, Load, TimerPath
from tickless.errors import InputError
from tickless.guest.abi import LINUX_MAX_EVENTS
from tickless.results.paper import INTERVALS_US, PAPER_EVENTS
from tickless.results.spec import LINUX_TIMERS, MeasureSpec

# Row order within a setting: the floor first, then the paper's KVM, then the chips a PC has,
# emulated on the timeline (the paper's QEMU row is such a path), then ours.
TIMERS = (
    TimerPath.HOST,
    TimerPath.LAPIC,
    TimerPath.HPET,
    TimerPath.PIT,
    TimerPath.RTC,
    TimerPath.LGUEST,
    TimerPath.PV,
    TimerPath.PRECISE,
)
LOADS = (Load.IDLE, Load.CPU, Load.IO)
QUICK_COUNT = 300
LINUX_HZ = 100  # the kernel the Linux rows boot (see ../shared/notes: 1000 HZ cannot keep up)


def _offered(guest: GuestKind, timer: TimerPath, load: Load) -> bool:
    if timer is TimerPath.HOST:  # the floor has no guest: one row, with the small guest's
        return guest is GuestKind.SMALL and load is not Load.IO
    if guest is GuestKind.LINUX:
        return timer in LINUX_TIMERS and load is Load.IDLE
    return True


@dataclass(frozen=True)
class Table1Plan:
    timers: tuple[TimerPath, ...] = TIMERS
    intervals_us: tuple[int, ...] = INTERVALS_US
    loads: tuple[Load, ...] = LOADS
    count: int = PAPER_EVENTS
    backend: Backend = Backend.KVM
    platform: str = "KVM"
    guests: tuple[GuestKind, ...] = (GuestKind.SMALL,)

    def specs(self) -> Iterator[MeasureSpec]:
        """Every run, in table order; host x io is skipped (io is a device in the guest),
        a Linux guest runs the rows its workload offers (idle), and a setting a timer
        cannot run (the RTC at 10 us: its fastest rate is 8192 Hz) is left out (``skipped``)."""
        for spec, _ in self._settings():
            if spec is not None:
                yield spec

    def skipped(self) -> list[str]:
        """One line per setting of the plan a timer path cannot run, saying why."""
        reasons = (reason for spec, reason in self._settings() if spec is None)
        return list(dict.fromkeys(reasons))  # once per setting, whatever the loads

    def _settings(self) -> Iterator[tuple[MeasureSpec | None, str]]:
        for interval_us in self.intervals_us:
            for load in self.loads:
                for guest in self.guests:
                    for timer in self.timers:
                        if not _offered(guest, timer, load):
                            continue
                        try:
                            yield self._spec(guest, timer, interval_us, load), ""
                        except InputError as exc:
                            where = f"{guest.value} --timer {timer.value} at {interval_us} us"
                            yield None, f"{where}: {exc}"

    def _spec(
        self, guest: GuestKind, timer: TimerPath, interval_us: int, load: Load
    ) -> MeasureSpec:
        linux = guest is GuestKind.LINUX
        return MeasureSpec(
            timer=timer,
            interval_ns=interval_us * 1000,
            count=min(self.count, LINUX_MAX_EVENTS) if linux else self.count,
            loads=frozenset({load}),
            backend=self.backend,
            platform=self.platform,
            guest=guest,
            hz=LINUX_HZ if linux else 1000,
        )

    @property
    def runs(self) -> int:
        return sum(1 for _ in self.specs())
