"""A Linux guest's clocks as table rows (``measure/linux_clocks.py`` says what each is)."""

from __future__ import annotations


def clock_rows(
    agreement_ppm: dict[str, float | None] | None,
    unstable: list[str] | None,
    console_time_ratio: float | None,
) -> list[tuple[str, str]]:
    """(label, value) rows; none for a guest that reported nothing of its clocks."""
    rows: list[tuple[str, str]] = []
    if agreement_ppm is not None:
        for name, ppm in agreement_ppm.items():
            rows.append((f"clock {name} vs timeline", "-" if ppm is None else f"{ppm:+.1f} ppm"))
    if unstable is not None:
        rows.append(("clocksources marked unstable", ", ".join(unstable) or "none"))
    if console_time_ratio is not None:
        rows.append(("printk s per wall s", f"{console_time_ratio:.4f}"))
    return rows
