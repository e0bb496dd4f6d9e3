"""tickless idle: what idle guests' timers cost the host."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from tickless.axes import STOCK_TIMERS, TickMode, TimerPath
from tickless.cli.common import (
    DURATION_OR_ZERO,
    RUN_DURATION,
    SEED,
    FiniteFloatRange,
    console,
    err_console,
    exit_interrupted,
    guest_hz,
    guest_options,
    hz_option,
    json_option,
    mode_option,
    require_kvm,
    settings_of,
    slop_option,
    time_options,
)
from tickless.errors import InputError
from tickless.guest.abi import PV_IDLE_WAYS
from tickless.report.clocks import clock_rows
from tickless.report.fleet import fleet_table, ramp_table
from tickless.results.idle import DEFAULT_MISS_THRESHOLD, IdleResult, IdleSpec
from tickless.results.schema import write_json_atomic
from tickless.units import format_duration_ns


def idle_spec(params: dict[str, Any]) -> IdleSpec:
    """The spec the options ask for (the command's and a sweep point's: one path); ``hz``
    gets the guest's default as the command gives it."""
    return IdleSpec(
        **{**settings_of(IdleSpec, params), "hz": guest_hz(params["guest"], params["hz"], 1000)}
    )


@click.command()
@click.option(
    "--guests",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Idle guests to run at once; the limit is this host's memory, descriptors and "
    "threads, checked before anything starts.",
)
@mode_option
@hz_option(
    "Tick rate of periodic guests (default 1000; --guest linux: the kernel's HZ, default 100).",
    maximum=10_000,
)
@guest_options
@click.option(
    "--duration",
    "duration_ns",
    type=RUN_DURATION,
    default="2s",
    show_default=True,
    help="The measured window, in guest time, which starts once every guest has booted "
    "(at --dilation R it takes duration / R of wall time; with --warp-idle far less).",
)
@time_options
@slop_option("Host timer slop: coalesces timers of different guests into fewer wake-ups.")
@click.option(
    "--halt-poll",
    "halt_poll_ns",
    type=DURATION_OR_ZERO,
    default=None,
    help="Cap KVM halt polling per guest (0ns turns it off). Default: host's.",
)
@click.option(
    "--step",
    "ramp_step",
    type=click.IntRange(min=1),
    default=None,
    help="--mode periodic: guests added per ramp step (default: a tenth of --guests). After "
    "each step the host counts every guest's ticks for max(0.5 s, 50 ticks); the first step "
    "that misses more than --miss-threshold is where the host saturates, and no more "
    "guests boot.",
)
@click.option(
    "--miss-threshold",
    type=FiniteFloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=DEFAULT_MISS_THRESHOLD,
    show_default=True,
    help="--mode periodic: share of ticks missed that counts as saturated.",
)
@click.option(
    "--seed",
    type=SEED,
    default=0,
    show_default=True,
    help="Each guest's housekeeping timers start at a phase drawn from it.",
)
@click.option(
    "--timer",
    type=click.Choice([t.value for t in (TimerPath.PV, TimerPath.LGUEST, *STOCK_TIMERS)]),
    default=None,
    help="How tickless guests re-arm: pv (default; the PV deadline device, no exit "
    "per re-arm) or lguest (a hypercall per re-arm). Linux guests default to pv too; "
    "periodic guests use lguest. --linux-drivers stock: lapic (default: what Linux "
    "chooses) or hpet (its HPET steered in).",
)
@click.option(
    "--pv-idle",
    type=click.Choice(list(PV_IDLE_WAYS)),
    default=None,
    help="How a small guest on --timer pv idles until its deadline (default: lapic, the "
    "cheapest here; halt with --warp-idle or --slop): halt (HLT; the loop's "
    "interrupt wakes it), block (PV idle, lguest's LHCALL_HALT: its vCPU thread waits in "
    "the host, which resumes it at the deadline with no interrupt entry) or lapic (HLT with "
    "KVM's LAPIC timer armed for the deadline in the same trap: the host kernel wakes it, "
    "no host thread does).",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Split the fleet over this many VMM processes (tickless small guests): KVM hangs "
    "one MMU notifier per VM off its process, so a host that scans pages (DAMON, reclaim) "
    "pays for every VM of a process on each of its pages. The record sums their CPU and "
    "counts over one window; the whole host's busy time is beside it.",
)
@json_option("Write the idle result (kind 'idle') here.")
def idle(
    guests: int,
    mode: str,
    hz: int | None,
    guest: str,
    kernel_path: Path | None,
    linux_drivers: str,
    duration_ns: int,
    rate: Fraction,
    warp_idle: bool,
    slop_ns: int,
    halt_poll_ns: int | None,
    ramp_step: int | None,
    miss_threshold: float,
    seed: int,
    timer: str | None,
    pv_idle: str | None,
    processes: int,
    json_path: Path | None,
) -> None:
    """Run idle guests, ticking or tickless, and count what their timers cost the host.

    Guests boot concurrently; the rates (host timer wake-ups against the guests' timer
    interrupts, host CPU) are measured over --duration once every guest has booted, and
    the boot rate and resident memory per guest are reported beside them. Each guest keeps
    a 1 s and a 4 s housekeeping timer at its own phase. Periodic guests ramp up step by
    step (see --step) and the report says where ticks start to be missed. Ctrl-C in the
    measured window keeps what was measured.
    """
    from tickless.measure.idle import check_host, run_idle
    from tickless.measure.idle_processes import run_idle_processes

    try:
        spec = idle_spec(click.get_current_context().params)
        check_host(spec)
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    require_kvm()
    try:
        with _staged_progress() as update:
            run = run_idle if spec.processes == 1 else run_idle_processes
            result = run(spec, progress=update)
    except KeyboardInterrupt:
        err_console.print("interrupted while booting: nothing was measured yet")
        exit_interrupted()
    _print(spec, result)
    if json_path:
        write_json_atomic(json_path, result.to_json_dict())
        kept = "partial result" if result.partial else "result"
        err_console.print(f"{kept} written to {json_path}")
    if result.partial:
        exit_interrupted()


@contextmanager
def _staged_progress() -> Iterator[Callable[[str, float], None]]:
    """One bar whose label follows the run (booting, ramping up, measuring); without a
    terminal, a line per 10 % of each stage (only the measuring lines end in "%")."""
    if not err_console.is_terminal:
        printed: dict[str, int] = {}

        def line(stage: str, done: float) -> None:
            tenth = min(10, int(10 * done))
            if tenth > printed.get(stage, 0):
                printed[stage] = tenth
                end = f"{10 * tenth} %" if stage == "measuring" else f"{10 * tenth} percent"
                err_console.print(f"{stage}: {end}", highlight=False)

        yield line
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("booting", total=1.0)
        yield lambda stage, done: bar.update(task, description=stage, completed=done)


def _whole_host_rows(result: IdleResult) -> list[tuple[str, str]]:
    """The host beyond the fleet's process: every task's busy time, the other tasks'."""
    if result.other_tasks_percent_of_core is None:
        return []
    busiest = list(result.other_tasks_top.items())[:3]
    top = ", ".join(f"{name} {pct:.1f} %" for name, pct in busiest if pct >= 0.05)
    return [
        (
            "whole host busy (/proc/stat, ticks)",
            f"{result.host_busy_percent_of_core:.1f} % of a core",
        ),
        ("  other tasks than the fleet's", f"{result.other_tasks_percent_of_core:.1f} % of a core"),
        ("    the busiest", top or "-"),
    ]


def _print(spec: IdleSpec, result: IdleResult) -> None:
    d = result.to_json_dict()
    title = (
        f"{result.guests:,} idle {spec.guest.value} guests, {spec.mode.value}"
        + (f" at {spec.hz} HZ" if spec.mode is TickMode.PERIODIC else "")
        + f", {result.duration_s:.2f} s after boot"
        + (f", slop {format_duration_ns(spec.slop_ns)}" if spec.slop_ns else "")
    )
    table = fleet_table(title, d)
    table.add_row("  of it: host timer thread", f"{result.timer_thread_cpu_s:.3f} s")
    table.add_row("  of it: vCPU threads (guest included)", f"{result.vcpu_cpu_s:.3f} s")
    if result.guest_spin_s:
        table.add_row("    of that: guests spinning to deadlines", f"{result.guest_spin_s:.3f} s")
    rest_s = result.process_cpu_s - result.vcpu_cpu_s - result.timer_thread_cpu_s
    table.add_row("  of it: the rest (Python: watchdog, window)", f"{rest_s:.3f} s")
    per_guest_ms = 1000 * result.process_cpu_s / result.guests / result.duration_s
    table.add_row("host CPU per guest", f"{per_guest_ms:.3f} ms/s")
    table.add_row(
        "boot (not in the rates)", f"{result.boot_s:.2f} s, {result.boot_cpu_s:.2f} s CPU"
    )
    for label, value in _whole_host_rows(result):
        table.add_row(label, value)
    if result.guest_kernel:
        table.add_row("guest kernel", result.guest_kernel)
        table.add_row("guest clock-event device", str(result.guest_clockevent))
        table.add_row("guest clocksource", str(result.guest_clocksource))
    for label, value in clock_rows(
        result.clock_agreement_ppm, result.clocksource_unstable, result.console_time_ratio
    ):
        table.add_row(label, value)
    console.print(table)
    ramp = ramp_table(d)
    if ramp is not None:
        console.print(ramp)
    for note in result.notes:
        console.print(f"note: {note}")
