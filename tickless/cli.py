"""The ``tickless`` command line."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from tickless.kvm.errors import KvmError
from tickless.kvm.system import kvm_problem
from tickless.measure.report import render_compare_paper, render_result
from tickless.measure.schema import to_json_dict, write_json_atomic
from tickless.units import DURATION, DurationParam, format_duration_ns

DURATION_OR_ZERO = DurationParam(allow_zero=True)

console = Console()
err_console = Console(stderr=True)
EXIT_INTERRUPTED = 130


class DilationParam(click.ParamType):  # type: ignore[type-arg]
    """Guest seconds per host second, as a decimal or a fraction ("0.5", "1/3", "2")."""

    name = "rate"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Fraction):
            return value
        try:
            rate = Fraction(str(value)).limit_denominator(1_000_000)
        except (ValueError, ZeroDivisionError):
            self.fail(f"{value!r} is not a number like 0.5, 2 or 1/3", param, ctx)
        if not Fraction(1, 1000) <= rate <= 1000:
            self.fail("dilation must be between 1/1000 and 1000", param, ctx)
        return rate


@contextmanager
def progress_bar(label: str, total: float, show: bool) -> Iterator[Callable[[float], None]]:
    """A rich progress bar for runs expected to take over a second; a no-op otherwise."""
    if not show:
        yield lambda done: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


def require_kvm() -> None:
    problem = kvm_problem()
    if problem is not None:
        raise click.ClickException(problem)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tickless")
def main() -> None:
    """tickless: tickless, high-resolution paravirtual timers for KVM guests, measured.

    \b
    Start here:
      tickless measure                      4500 PV timer events every 50 us in a real guest
      tickless measure --timer lapic        the same through KVM's LAPIC timer (the paper's KVM)
      tickless measure --timer host         the same method on the host itself (the floor)
      tickless idle --mode periodic         what 10 idle 1000 HZ guests cost the host
    """


@main.command()
@click.option(
    "--timer",
    type=click.Choice(["pv", "lapic", "host"]),
    default="pv",
    show_default=True,
    help="pv: our paravirtual clock-event device; lapic: KVM's in-kernel LAPIC "
    "TSC-deadline timer; host: the same method on the host (the floor).",
)
@click.option(
    "--interval",
    "interval_ns",
    type=DURATION,
    default="50us",
    show_default=True,
    help="Time d between events (ns, us, ms, s).",
)
@click.option(
    "--count",
    type=click.IntRange(1, 10_000_000),
    default=4500,
    show_default=True,
    help="Number of timer events N.",
)
@click.option(
    "--mode",
    type=click.Choice(["tickless", "periodic"]),
    default="tickless",
    show_default=True,
    help="tickless: one-shot events; periodic: a HZ tick drives the guest's timers.",
)
@click.option(
    "--hz",
    type=click.IntRange(1, 100_000),
    default=1000,
    show_default=True,
    help="Tick rate for --mode periodic.",
)
@click.option(
    "--method",
    type=click.Choice(["relative", "absolute"]),
    default="relative",
    show_default=True,
    help="relative: next event d after the last (the paper's); absolute: a fixed "
    "grid t0 + i*d (cyclictest's).",
)
@click.option(
    "--wait",
    type=click.Choice(["halt", "spin"]),
    default="halt",
    show_default=True,
    help="How the guest waits for its interrupt: HLT (an idle guest) or spinning.",
)
@click.option(
    "--slop",
    "slop_ns",
    type=DURATION_OR_ZERO,
    default="0ns",
    show_default=True,
    help="Host timer slop: timers within it are coalesced (Xen's timer_slop).",
)
@click.option(
    "--dilation",
    "rate",
    type=DilationParam(),
    default="1",
    show_default=True,
    help="Guest time per host time (0.5: guest clock at half speed).",
)
@click.option(
    "--halt-poll",
    "halt_poll_ns",
    type=DURATION_OR_ZERO,
    default=None,
    help="Cap KVM halt polling for the guest (0ns turns it off). Default: host's.",
)
@click.option(
    "--no-rt", is_flag=True, help="Run the host timer thread as a normal thread, not SCHED_FIFO."
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the result record (schema: tickless/measure/schema.py) here.",
)
@click.option(
    "--compare-paper",
    is_flag=True,
    help="Print our row beside the paper's Table 1 rows for this interval.",
)
def measure(
    timer: str,
    interval_ns: int,
    count: int,
    mode: str,
    hz: int,
    method: str,
    wait: str,
    slop_ns: int,
    rate: Fraction,
    halt_poll_ns: int | None,
    no_rt: bool,
    json_path: Path | None,
    compare_paper: bool,
) -> None:
    """Measure N timer events every d, the paper's way: mean, sd, 99% CI, percentiles."""
    from tickless.measure.runner import MeasurementInterrupted, MeasureSpec
    from tickless.measure.runner import measure as run
    from tickless.vmm.machine import GuestStopped

    try:
        spec = MeasureSpec(
            timer=timer,
            interval_ns=interval_ns,
            count=count,
            mode=mode,
            hz=hz,
            method=method,
            wait=wait,
            slop_ns=slop_ns,
            realtime=not no_rt,
            rate=rate,
            halt_poll_ns=halt_poll_ns,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if timer != "host":
        require_kvm()
    label = f"{timer} {format_duration_ns(interval_ns)} x {count}"
    try:
        with progress_bar(label, count, spec.expected_duration_s > 1.0) as update:
            record = run(spec, progress=update)
    except MeasurementInterrupted as stop:
        if stop.partial is not None:
            render_result(stop.partial, console)
            if json_path:
                write_json_atomic(json_path, to_json_dict(stop.partial))
                err_console.print(f"partial result written to {json_path}")
        err_console.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except (GuestStopped, KvmError, OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    render_result(record, console)
    if compare_paper:
        render_compare_paper(record, console)
    if json_path:
        write_json_atomic(json_path, to_json_dict(record))
        err_console.print(f"result written to {json_path}")
    if record.lateness.early_count:
        raise click.ClickException(f"{record.lateness.early_count} events fired early")


@main.command()
@click.option(
    "--guests",
    type=click.IntRange(1, 64),
    default=10,
    show_default=True,
    help="Idle guests to run at once.",
)
@click.option(
    "--mode", type=click.Choice(["tickless", "periodic"]), default="tickless", show_default=True
)
@click.option(
    "--hz",
    type=click.IntRange(1, 10_000),
    default=1000,
    show_default=True,
    help="Tick rate of periodic guests.",
)
@click.option("--duration", "duration_ns", type=DURATION, default="2s", show_default=True)
@click.option(
    "--slop",
    "slop_ns",
    type=DURATION_OR_ZERO,
    default="0ns",
    show_default=True,
    help="Host timer slop (coalesces timers of different guests).",
)
@click.option(
    "--halt-poll",
    "halt_poll_ns",
    type=DURATION_OR_ZERO,
    default=None,
    help="Cap KVM halt polling per guest (0ns turns it off). Default: host's.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the idle result (kind 'idle') here.",
)
def idle(
    guests: int,
    mode: str,
    hz: int,
    duration_ns: int,
    slop_ns: int,
    halt_poll_ns: int | None,
    json_path: Path | None,
) -> None:
    """Run idle guests, ticking or tickless, and count what their timers cost the host."""
    from tickless.measure.idle import IdleSpec, run_idle
    from tickless.vmm.machine import GuestStopped

    try:
        spec = IdleSpec(
            guests=guests,
            mode=mode,
            hz=hz,
            duration_ns=duration_ns,
            slop_ns=slop_ns,
            halt_poll_ns=halt_poll_ns,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    require_kvm()
    try:
        with progress_bar(f"{guests} {mode} guests", 1.0, True) as update:
            result = run_idle(spec, progress=update)
    except KeyboardInterrupt:
        err_console.print("interrupted: an idle run has no partial result")
        sys.exit(EXIT_INTERRUPTED)
    except (GuestStopped, KvmError, OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    table = Table(
        title=f"{guests} idle guests, {mode}"
        + (f" at {hz} HZ" if mode == "periodic" else "")
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
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}")
    if json_path:
        write_json_atomic(json_path, result.to_json_dict())
        err_console.print(f"result written to {json_path}")
