"""Terminal tables for ``measure --guests N`` (a row per guest, the spread) and
``measure --explain`` (where each event's time went, and what dominates)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tickless.results.breakdown import PART_HELP, PARTS
from tickless.results.schema import ResultRecord


def render_guest_rows(record: ResultRecord, console: Console) -> None:
    rows = record.guest_rows
    if not rows:
        return
    table = Table(title=f"{len(rows)} guests at once", title_style="bold")
    for name in (
        "guest",
        "events",
        "mean µs",
        "sd µs",
        "late mean µs",
        "late p99 µs",
        "late max µs",
        "early",
        "vCPU CPU s",
    ):
        table.add_column(name, justify="left" if name == "guest" else "right")
    for r in rows:
        table.add_row(
            r.name,
            str(r.events),
            f"{r.mean_ns / 1e3:.3f}",
            f"{r.sd_ns / 1e3:.3f}",
            f"{r.lateness_mean_ns / 1e3:.3f}",
            f"{r.lateness_p99_ns / 1e3:.3f}",
            f"{r.lateness_max_ns / 1e3:.1f}",
            str(r.early_count),
            f"{r.vcpu_cpu_s:.3f}",
        )
    means = [r.lateness_mean_ns / 1e3 for r in rows]
    table.add_section()
    table.add_row("spread", "", "", "", f"{min(means):.3f}-{max(means):.3f}", "", "", "", "")
    console.print(table)
    host = record.host
    if host.duration_s > 0:
        pct = 100 * host.cpu_s / host.duration_s
        console.print(
            f"host CPU: {pct:.1f} % of a core in total, {pct / len(rows):.2f} % per guest",
            highlight=False,
        )


def render_explain(record: ResultRecord, console: Console) -> None:
    b = record.explain
    if b is None:
        return
    summary = b.summary_ns()
    table = Table(
        title=f"where the time went: {len(b.event_index)} events by interrupt, "
        f"{b.spun_events} spun to (advance {b.advance_ns / 1e3:.1f} µs)",
        title_style="bold",
    )
    for name in ("part", "mean µs", "p99 µs", "max µs", "what it is"):
        table.add_column(name, justify="left" if name in ("part", "what it is") else "right")
    for part in PARTS:
        s = summary[part]
        table.add_row(
            part,
            f"{s['mean'] / 1e3:.2f}",
            f"{s['p99'] / 1e3:.2f}",
            f"{s['max'] / 1e3:.1f}",
            PART_HELP[part],
        )
    console.print(table)
    for tail in ("mean", "p99", "max"):
        cause = b.dominant.get(tail, "none")
        console.print(f"the {tail} lateness: dominated by {cause}", highlight=False)
    if "clock_gap" in b.dominant.values():
        console.print(
            "clock_gap: the guest's clock jumped while it spun, i.e. this host's own "
            "hypervisor took the CPU away (the platform, not the design)",
            highlight=False,
        )


def render_late_causes(record: ResultRecord, console: Console) -> None:
    """``--explain`` on the precise channel: each late event's cause, platform or design."""
    c = record.late_causes
    if c is None:
        return
    console.print(
        f"late events (> {c.late_threshold_ns / 1e3:g} µs): {c.late} of {c.events}: "
        f"{c.io} an I/O interrupt on the timer's vCPU (design), {c.preemption} a preemption "
        f"(a gap of >= {c.gap_threshold_ns / 1e3:g} µs in its clock reads, or a handler that "
        f"lost the CPU: platform), {c.loop_late} the loop's interrupt after the deadline, "
        f"{c.unexplained} unexplained",
        highlight=False,
    )
    console.print(
        f"lateness sd / p99: {c.sd_ns / 1e3:.3f} / {c.p99_ns / 1e3:.3f} µs over the run, "
        f"{c.undisturbed_sd_ns / 1e3:.3f} / {c.undisturbed_p99_ns / 1e3:.3f} µs over the "
        f"{c.undisturbed} events the platform did not disturb",
        highlight=False,
    )
