"""Our Table 1 printed the paper's way: per setting, the paper's rows (dim) then ours, with
the paper's columns (mean measured time, standard deviation, 99% confidence interval)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tickless.results.paper import paper_rows
from tickless.results.schema import ResultRecord
from tickless.results.table1 import LOADS


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
