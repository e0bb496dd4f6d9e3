"""tickless idle: what idle guests' timers cost the host."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from tickless.axes import GuestKind, TickMode, choices
from tickless.cli.common import (
    DURATION_OR_ZERO,
    RUN_DURATION,
    console,
    err_console,
    exit_interrupted,
    guest_hz,
    guest_options,
    json_option,
    progress_bar,
    require_kvm,
    slop_option,
)
from tickless.errors import InputError
from tickless.results.idle import MAX_GUESTS, IdleSpec
from tickless.results.schema import write_json_atomic


@click.command()
@click.option(
    "--guests",
    type=click.IntRange(1, MAX_GUESTS),
    default=10,
    show_default=True,
    help="Idle guests to run at once.",
)
@click.option(
    "--mode",
    type=click.Choice(choices(TickMode)),
    default=TickMode.TICKLESS.value,
    show_default=True,
)
@click.option(
    "--hz",
    type=click.IntRange(1, 10_000),
    default=None,
    help="Tick rate of periodic guests (default 1000; --guest linux: the kernel's HZ, "
    "default 100).",
)
@guest_options
@click.option("--duration", "duration_ns", type=RUN_DURATION, default="2s", show_default=True)
@slop_option("Host timer slop (coalesces timers of different guests).")
@click.option(
    "--halt-poll",
    "halt_poll_ns",
    type=DURATION_OR_ZERO,
    default=None,
    help="Cap KVM halt polling per guest (0ns turns it off). Default: host's.",
)
@json_option("Write the idle result (kind 'idle') here.")
def idle(
    guests: int,
    mode: str,
    hz: int | None,
    guest: str,
    kernel_path: Path | None,
    duration_ns: int,
    slop_ns: int,
    halt_poll_ns: int | None,
    json_path: Path | None,
) -> None:
    """Run idle guests, ticking or tickless, and count what their timers cost the host."""
    from tickless.measure.idle import run_idle

    try:
        spec = IdleSpec(
            guests=guests,
            guest=GuestKind(guest),
            kernel_path=kernel_path,
            mode=TickMode(mode),
            hz=guest_hz(guest, hz, 1000),
            duration_ns=duration_ns,
            slop_ns=slop_ns,
            halt_poll_ns=halt_poll_ns,
        )
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    require_kvm()
    try:
        with progress_bar(f"{guests} {mode} guests", 1.0, True) as update:
            result = run_idle(spec, progress=update)
    except KeyboardInterrupt:
        err_console.print("interrupted: an idle run has no partial result")
        exit_interrupted()
    table = Table(
        title=f"{guests} idle {guest} guests, {mode}"
        + (f" at {spec.hz} HZ" if spec.mode is TickMode.PERIODIC else "")
        + f", {result.duration_s:.2f} s"
    )
    table.add_column("host-side count")
    table.add_column("value", justify="right")
    table.add_row("host timer wake-ups/s", f"{result.wakeups_per_s:,.1f}")
    table.add_row("host timer expiries/s (all guests)", f"{result.expiries_per_s:,.1f}")
    table.add_row("timer interrupts/s per guest", f"{result.interrupts_per_guest_per_s:,.2f}")
    table.add_row("host CPU, whole VMM", f"{result.cpu_percent_of_core:.1f} % of a core")
    table.add_row("  of it: host timer thread", f"{result.timer_thread_cpu_s:.3f} s")
    table.add_row("  of it: vCPU threads (guest included)", f"{result.vcpu_cpu_s:.3f} s")
    per_guest_ms = 1000 * result.process_cpu_s / guests / result.duration_s
    table.add_row("host CPU per guest", f"{per_guest_ms:.2f} ms/s")
    if result.guest_kernel:
        table.add_row("guest kernel", result.guest_kernel)
        table.add_row("guest clock-event device", str(result.guest_clockevent))
        table.add_row("guest clocksource", str(result.guest_clocksource))
        table.add_row("boot (not in the rates)", f"{result.boot_s:.1f} s")
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}")
    if json_path:
        write_json_atomic(json_path, result.to_json_dict())
        err_console.print(f"result written to {json_path}")
