"""Our Table 1: every timer path we have, at the paper's intervals, idle and loaded.

The rows are independent runs of ``tickless measure``; the table keeps the paper's columns
(mean measured time, standard deviation, 99% confidence interval of the mean) and puts the
paper's rows for the same setting beside ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from tickless.axes import Backend, GuestKind, Load, TimerPath
from tickless.backends import measure
from tickless.guest.abi import LINUX_MAX_EVENTS
from tickless.results.paper import INTERVALS_US, PAPER_EVENTS, paper_rows
from tickless.results.schema import ResultRecord
from tickless.results.spec import MeasureSpec

# Row order within a setting: the floor first, then the paper's KVM, then ours.
TIMERS = (TimerPath.HOST, TimerPath.LAPIC, TimerPath.LGUEST, TimerPath.PV, TimerPath.PRECISE)
LOADS = (Load.IDLE, Load.CPU, Load.IO)
QUICK_COUNT = 300
LINUX_HZ = 100  # the kernel the Linux rows boot (see ../shared/notes: 1000 HZ cannot keep up)


def _offered(guest: GuestKind, timer: TimerPath, load: Load) -> bool:
    if timer is TimerPath.HOST:  # the floor has no guest: one row, with the small guest's
        return guest is GuestKind.SMALL and load is not Load.IO
    if guest is GuestKind.LINUX:
        return timer in (TimerPath.LGUEST, TimerPath.LAPIC) and load is Load.IDLE
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
        and a Linux guest runs the rows its workload offers (lguest and lapic, idle)."""
        for interval_us in self.intervals_us:
            for load in self.loads:
                for guest in self.guests:
                    for timer in self.timers:
                        if _offered(guest, timer, load):
                            yield self._spec(guest, timer, interval_us, load)

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


def run_table1(
    plan: Table1Plan,
    on_record: Callable[[ResultRecord], None],
    on_run_start: Callable[[MeasureSpec], None] | None = None,
) -> list[ResultRecord]:
    """Run the plan; each record goes to ``on_record`` as soon as it exists (so Ctrl-C
    loses at most the run in progress)."""
    records = []
    for spec in plan.specs():
        if on_run_start is not None:
            on_run_start(spec)
        record = measure(spec)
        records.append(record)
        on_record(record)
    return records


def _label(record: ResultRecord) -> str:
    if record.backend == "sim":
        return f"{record.timer} (sim {record.platform})"
    return record.path_label


def render_table1(records: list[ResultRecord], console: Console) -> None:
    """The paper's Table 1 layout: per setting, the paper's rows then ours."""
    settings = sorted({(r.interval_ns, r.load) for r in records}, key=_setting_order)
    for interval_ns, load in settings:
        table = Table(title=f"timer setting = {interval_ns / 1000:g} µs, {load} system")
        for column in ("timer", "mean µs", "sd µs", "99% CI µs", "mean-d", "CPU"):
            table.add_column(column, justify="left" if column == "timer" else "right")
        for row in paper_rows(interval_us=int(interval_ns // 1000), load=load):
            table.add_row(
                f"[dim]{row.platform}[/dim]",
                f"[dim]{row.mean_us:.3f}[/dim]",
                f"[dim]{row.sd_us:.3f}[/dim]",
                f"[dim]{row.ci99_low_us:.3f}-{row.ci99_high_us:.3f}[/dim]",
                f"[dim]{row.mean_us - interval_ns / 1000:+.3f}[/dim]",
                "",
            )
        table.add_section()
        for r in records:
            if (r.interval_ns, r.load) != (interval_ns, load):
                continue
            cpu = 100 * r.host.cpu_s / r.host.duration_s if r.host.duration_s else 0.0
            table.add_row(
                _label(r),
                f"{r.stats.mean_ns / 1000:.3f}",
                f"{r.stats.sd_ns / 1000:.3f}",
                f"{r.stats.ci99_low_ns / 1000:.3f}-{r.stats.ci99_high_ns / 1000:.3f}",
                f"{(r.stats.mean_ns - r.interval_ns) / 1000:+.3f}",
                f"{cpu:.0f}%",
            )
        console.print(table)
    early = sum(r.lateness.early_count for r in records)
    console.print(f"events fired early, all rows: {early}")
    console.print(
        'The paper\'s "99%" intervals are ~95% normal intervals; ours are Student-t 99%. '
        "Paper rows are dim. CPU: the VMM's (or host program's) CPU time over the run, % of a core."
    )


def _setting_order(setting: tuple[int, str]) -> tuple[int, int]:
    interval_ns, load = setting
    return (-interval_ns, LOADS.index(load) if load in LOADS else len(LOADS))
