"""Console reports of a result record, with numbers in µs to 3 decimals like the paper's Table 1."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tickless.report.breakdown import render_explain, render_guest_rows, render_late_causes
from tickless.report.clocks import clock_rows
from tickless.results.paper import INTERVALS_US, LOADS, PAPER_EVENTS, nearest_setting_us, paper_rows
from tickless.results.schema import ResultRecord
from tickless.units import format_duration_ns

__all__ = ["render_compare_paper", "render_result"]


def _us(ns: float) -> str:
    return f"{ns / 1000:.3f}"


def _ci_us(low_ns: float, high_ns: float) -> str:
    return f"[{_us(low_ns)}, {_us(high_ns)}]"


def _title(record: ResultRecord) -> str:
    parts = [
        f"backend {record.backend}",
        f"timer {record.timer}",
        *([f"guest linux {record.guest_kernel or ''}".strip()] if record.guest == "linux" else []),
        record.mode if record.hz is None else f"{record.mode} ({record.hz} Hz)",
        f"{record.method} deadlines",
        f"interval {format_duration_ns(record.interval_ns)}",
        f"load {record.load}",
    ]
    if record.platform is not None:
        parts.append(f"platform {record.platform}")
    return " · ".join(parts)


def render_result(record: ResultRecord, console: Console) -> None:
    """Print one run: interval statistics, lateness, then what it cost the host."""
    s, late, host = record.stats, record.lateness, record.host
    console.print(_title(record), style="bold", highlight=False)
    table = Table()
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("unit")

    table.add_row("intervals measured", str(s.count), "")
    table.add_row("mean measured interval", _us(s.mean_ns), "µs")
    table.add_row("sd (uncorrected)", _us(s.sd_ns), "µs")
    table.add_row("99% CI of the mean", _ci_us(s.ci99_low_ns, s.ci99_high_ns), "µs")
    table.add_row("min", _us(s.min_ns), "µs")
    table.add_row("p50", _us(s.p50_ns), "µs")
    table.add_row("p99", _us(s.p99_ns), "µs")
    table.add_row("p99.9", _us(s.p999_ns), "µs")
    table.add_row("max", _us(s.max_ns), "µs")

    table.add_section()
    table.add_row("lateness mean", _us(late.mean_ns), "µs")
    table.add_row("lateness sd", _us(late.sd_ns), "µs")
    table.add_row("lateness p99", _us(late.p99_ns), "µs")
    table.add_row("lateness max", _us(late.max_ns), "µs")
    early_style = "bold red" if late.early_count else None
    table.add_row("events fired early", str(late.early_count), "", style=early_style)
    _interrupt_rows(record, table)

    table.add_section()
    table.add_row("VM exits", str(host.exits), "")
    table.add_row("hypercalls", str(host.hypercalls), "")
    table.add_row("interrupt injections", str(host.injections), "")
    table.add_row("host timer wake-ups/s", f"{host.wakeups_per_s:.1f}", "")
    table.add_row("timer events/s", f"{host.timer_events_per_s:.1f}", "")
    table.add_row("injections/s", f"{host.injections_per_s:.1f}", "")
    table.add_row("host CPU time", f"{host.cpu_s:.3f}", "s")
    cpu_pct = f"{100 * host.cpu_s / host.duration_s:.1f}" if host.duration_s > 0 else "n/a"
    table.add_row(f"host CPU over {host.duration_s:.3f} s", cpu_pct, "% of one core")
    rows = clock_rows(
        record.clock_agreement_ppm, record.clocksource_unstable, record.console_time_ratio
    )
    if rows:
        table.add_section()
        for label, value in rows:
            table.add_row(label, value, "")
    console.print(table)
    render_guest_rows(record, console)
    render_explain(record, console)
    render_late_causes(record, console)
    for note in record.notes:
        console.print(f"note: {note}", markup=False, highlight=False)


def _interrupt_rows(record: ResultRecord, table: Table) -> None:
    """When the interrupt arrived, before any spin, and what the spin cost: on a path that
    spins (advance auto) the delivered rows above are never early by construction."""
    irq, spin = record.interrupt_lateness, record.spin
    if irq is None and spin is None:
        return
    table.add_section()
    table.add_row("advance (spin to the deadline)", record.advance, "")
    if irq is not None:
        table.add_row("events reached by interrupt", str(irq.count), "")
        for name, value in (("mean", irq.mean_ns), ("p99", irq.p99_ns), ("max", irq.max_ns)):
            table.add_row(
                f"interrupt lateness {name}", "n/a" if value is None else _us(value), "µs"
            )
        early_style = "bold red" if irq.early_count and record.advance == "off" else None
        table.add_row("interrupts early", str(irq.early_count), "", style=early_style)
    if spin is not None:
        table.add_row("spin per event", _us(spin.mean_ns), "µs")
        table.add_row("spin CPU time", f"{spin.cpu_s:.3f}", "s")


def _our_label(record: ResultRecord) -> str:
    where = "this run" if record.backend == "kvm" else f"this run, {record.backend}"
    return f"tickless {record.path_label} ({where})"


def render_compare_paper(record: ResultRecord, console: Console) -> None:
    """Print our run beside the paper's 7 platforms for the same interval and load."""
    setting_us = nearest_setting_us(record.interval_ns)
    settings = ", ".join(f"{d} µs" for d in INTERVALS_US)
    if setting_us is None:
        console.print(
            f"No paper comparison: the interval {format_duration_ns(record.interval_ns)} "
            f"is not one of the paper's settings ({settings}).",
            highlight=False,
        )
        return
    if record.load not in LOADS:
        console.print(
            f"No paper comparison: the paper measured only idle and io load at {setting_us} µs, "
            f"not {record.load!r}.",
            highlight=False,
        )
        return

    rows = paper_rows(setting_us, record.load)
    table = Table(
        title=(f"Adamczyk & Chydzinski (2015), Table 1: d = {setting_us} µs, {record.load} load"),
        title_justify="left",
    )
    table.add_column("implementation")
    table.add_column("mean µs", justify="right")
    table.add_column("sd µs", justify="right")
    table.add_column("99% CI µs", justify="right")
    table.add_column("mean - d (µs)", justify="right")
    for r in rows:
        table.add_row(
            r.platform,
            f"{r.mean_us:.3f}",
            f"{r.sd_us:.3f}" if r.sd_us < 1000 else f"{r.sd_us:.0f}",  # as printed in the paper
            f"[{r.ci99_low_us:.3f}, {r.ci99_high_us:.3f}]",
            f"{r.mean_us - r.interval_us:+.3f}",
        )
    table.add_section()
    s = record.stats
    table.add_row(
        _our_label(record),
        _us(s.mean_ns),
        _us(s.sd_ns),
        _ci_us(s.ci99_low_ns, s.ci99_high_ns),
        f"{(s.mean_ns - record.interval_ns) / 1000:+.3f}",
        style="bold",
    )
    irq = record.interrupt_lateness
    if record.advance != "off" and irq is not None:
        label = f"tickless {record.path_label}: its interrupt, before the spin"
        if irq.mean_ns is None:  # nothing to compare: every event was reached by spinning
            table.add_row(label, "none", "", "every event spun to", "", style="bold")
        else:
            mean_us = _us(record.interval_ns + irq.mean_ns)
            table.add_row(label, mean_us, "", "", f"{irq.mean_ns / 1000:+.3f}", style="bold")
    console.print(table)
    if record.advance != "off":
        console.print(
            "Note: this path spins to the deadline after an early interrupt, so the first "
            "row is the delivered event (never early by construction); the second, when "
            "the interrupt reached the guest (d + its mean lateness; early on purpose).",
            highlight=False,
        )
    console.print(
        f'Note: the paper\'s "99%" CIs are about ±1.96·sd/√n wide (n = {PAPER_EVENTS}), i.e. '
        "95% normal intervals; ours is a true 99% Student-t interval, so it is ~1.3x wider.",
        highlight=False,
    )
