"""The fleet report: the rows ``tickless idle`` and ``tickless sim fleet`` both print, from
their JSON records (the same keys), so a real fleet and a simulated one read side by side."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from rich.table import Table


def _opt(value: float | None, fmt: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{unit}"


def time_rows(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    """How time ran: the dilation, guest and wall time, and what idle warp skipped; a
    record older than these fields ran at dilation 1 without warp over ``duration_s``."""
    dilation = str(d.get("dilation") or "1")
    wall_s = d.get("wall_time_s")
    wall_s = d["duration_s"] if wall_s is None else wall_s
    guest_s = d.get("guest_time_s")
    guest_s = float(wall_s * Fraction(dilation)) if guest_s is None else guest_s
    warped_s = d.get("warped_s") or 0.0
    share = f" ({100 * warped_s / guest_s:.2f} %)" if guest_s > 0 else ""
    return [
        ("time dilation (guest s per wall s)", dilation),
        ("guest time / wall time", f"{guest_s:,.3f} s / {wall_s:,.3f} s"),
        ("guest time warped (idle)", f"{warped_s:,.3f} s{share}"),
    ]


def fleet_rows(d: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Label and value of every fleet row; '-' where a record cannot know (a simulated
    fleet does not boot, a tickless one misses no ticks). Rates are per wall second."""
    rows = [
        ("guests (asked for)", f"{d['guests']:,} ({d.get('guests_requested') or d['guests']:,})"),
        *time_rows(d),
        ("boot rate", _opt(d.get("boot_rate_guests_per_s"), ",.1f", " guests/s")),
        ("host memory per guest (RSS)", _opt(d.get("rss_per_guest_mib"), ".3f", " MiB")),
        ("host timer wake-ups/s", f"{d['host_wakeups_per_s']:,.1f}"),
        ("guest timer interrupts/s (all guests)", f"{d['guest_timer_irqs_per_s']:,.1f}"),
        ("timer interrupts/s per guest", f"{d['interrupts_per_guest_per_s']:,.2f}"),
        ("host timer expiries/s", f"{d['expiries_per_s']:,.1f}"),
        ("steady host CPU (after boot)", f"{d['steady_cpu_percent_of_core']:,.1f} % of a core"),
    ]
    missed = d.get("ticks_missed_fraction")
    if missed is not None:
        rows.append(("ticks missed", f"{100 * missed:.2f} %"))
        sat = d.get("saturation_guests")
        rows.append(("saturates at", "not reached" if sat is None else f"{sat:,} guests"))
    return rows


def fleet_table(title: str, d: Mapping[str, Any]) -> Table:
    table = Table(title=title)
    table.add_column("fleet")
    table.add_column("value", justify="right")
    for label, value in fleet_rows(d):
        table.add_row(label, value)
    return table


def ramp_table(d: Mapping[str, Any]) -> Table | None:
    """A periodic ramp, step by step (None when there was none)."""
    steps = d.get("ramp") or []
    if not steps:
        return None
    table = Table(title=f"ramp at {d.get('hz')} HZ")
    for name in ("guests", "ticks expected", "delivered", "missed", "host CPU"):
        table.add_column(name, justify="right")
    for s in steps:
        table.add_row(
            f"{s['guests']:,}",
            f"{s['ticks_expected']:,.0f}",
            f"{s['ticks_delivered']:,}",
            f"{100 * s['missed_fraction']:.2f} %",
            f"{s['cpu_percent_of_core']:.1f} %",
        )
    return table
