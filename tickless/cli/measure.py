"""tickless measure: N timer events every d, the paper's way."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tickless.axes import (
    Advance,
    Backend,
    GuestKind,
    IoCpu,
    LinuxDrivers,
    Load,
    Method,
    TimerPath,
    Wait,
    choices,
)
from tickless.cli.common import (
    DURATION_OR_ZERO,
    SEED,
    FiniteFloatRange,
    console,
    console_option,
    count_option,
    err_console,
    exit_interrupted,
    guest_hz,
    guest_options,
    hz_option,
    json_option,
    mode_option,
    progress_bar,
    require_kvm,
    rtc_epoch_option,
    settings_of,
    slop_option,
    time_options,
)
from tickless.errors import InputError
from tickless.guest.abi import MAX_DELTA_NS
from tickless.report.console import render_compare_paper, render_result
from tickless.results.paper import PAPER_IO_RATE_PER_S
from tickless.results.schema import to_json_dict, write_json_atomic
from tickless.results.spec import MAX_MEASURE_GUESTS, default_timer
from tickless.units import DurationParam, format_duration_ns

if TYPE_CHECKING:
    from tickless.results.schema import ResultRecord
    from tickless.results.spec import MeasureSpec

BACKEND_CHOICES = ["auto", Backend.KVM.value, Backend.SIM.value]  # host: --timer host


@click.command()
@click.option(
    "--timer",
    type=click.Choice(choices(TimerPath)),
    default=None,
    help="pv (default): our PV deadline device (absolute deadlines in a shared page, "
    "exitless re-arming, adaptive early wake-up, guest spins the rest); lguest: lguest's "
    "relative clock-event device, one exit per re-arm (the default of --guest linux); "
    "lapic: KVM's in-kernel LAPIC TSC-deadline timer; precise: the dedicated precise "
    "channel (other interrupts held back); host: the same method on the host (the floor).",
)
@click.option(
    "--advance",
    type=click.Choice([*choices(Advance), "0"]),
    default=Advance.OFF.value,
    show_default=True,
    help="lapic: auto arms the TSC deadline early by the PV device's adaptive advance and "
    "spins the rest, as pv does (the control experiment: what the spin gives, not the "
    "device); off or 0: the paper's KVM row.",
)
@click.option(
    "--explain",
    is_flag=True,
    help="pv: break each event's time down (host wake-up lateness, injection, guest entry, "
    "residual spin, clock gaps the guest saw) and say which part dominates the mean, p99 "
    "and max; the breakdown goes into the JSON record. precise: each late event's cause "
    "(an I/O interrupt, a preemption of the spinning vCPU, the loop waking late) and the "
    "sd and p99 of the events the platform did not disturb.",
)
@click.option(
    "--guests",
    type=click.IntRange(1, MAX_MEASURE_GUESTS),
    default=1,
    show_default=True,
    help="Run the measurement in this many guests at once: a row per guest, the spread "
    "across them, and the host CPU in total and per guest.",
)
@click.option(
    "--interval",
    "interval_ns",
    type=DurationParam(max_ns=MAX_DELTA_NS),
    default="50us",
    show_default=True,
    help="Time d between events (ns, us, ms, s).",
)
@count_option("Number of timer events N.")
@mode_option
@hz_option(
    "Tick rate for --mode periodic (default 1000); --guest linux: the kernel's HZ (default 100)."
)
@guest_options
@console_option
@click.option(
    "--method",
    type=click.Choice(choices(Method)),
    default=Method.RELATIVE.value,
    show_default=True,
    help="relative: next event d after the last (the paper's); absolute: a fixed "
    "grid t0 + i*d (cyclictest's).",
)
@click.option(
    "--wait",
    type=click.Choice(choices(Wait)),
    default=Wait.HALT.value,
    show_default=True,
    help="How the guest waits for its interrupt: HLT (an idle guest) or spinning.",
)
@slop_option("Host timer slop: timers within it are coalesced (Xen's timer_slop).")
@time_options
@rtc_epoch_option
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
@json_option("Write the result record (schema: tickless/results/schema.py) here.")
@click.option(
    "--load",
    "loads",
    multiple=True,
    type=click.Choice(choices(Load)),
    default=(Load.IDLE.value,),
    show_default=True,
    help="idle; cpu: stress-ng on every host CPU and a busy second vCPU; io: device "
    "interrupts into the timer's vCPU. Repeat to combine (--load cpu --load io).",
)
@click.option(
    "--io-rate",
    "io_rate_per_s",
    type=FiniteFloatRange(1, 100_000),
    default=PAPER_IO_RATE_PER_S,
    show_default=True,
    help=f"I/O interrupts per second with --load io (the paper measured {PAPER_IO_RATE_PER_S:g}).",
)
@click.option(
    "--io-handler",
    "io_handler_ns",
    type=DURATION_OR_ZERO,
    default="20us",
    show_default=True,
    help="How long the guest's I/O interrupt handler stays busy (interrupts off).",
)
@click.option(
    "--hold-back",
    "hold_back_ns",
    type=DURATION_OR_ZERO,
    default=None,
    help="precise: hold I/O interrupts back this long before each deadline (default: as "
    "long as one costs the guest, measured per interrupt; 0: none).",
)
@click.option(
    "--io-cpu",
    type=click.Choice(choices(IoCpu)),
    default=IoCpu.SAME.value,
    show_default=True,
    help="The vCPU that takes the I/O interrupts: the timer's (same), or the small guest's "
    "second vCPU (other: the timer's vCPU sees none, as irqaffinity= does).",
)
@click.option(
    "--spin-threshold",
    "spin_threshold_ns",
    type=DURATION_OR_ZERO,
    default="200us",
    show_default=True,
    help="precise: deadlines nearer than this are spun to without an interrupt.",
)
@click.option(
    "--backend",
    type=click.Choice(BACKEND_CHOICES),
    default="auto",
    show_default=True,
    help="kvm: a real guest; sim: the simulator; auto: KVM where /dev/kvm is usable.",
)
@click.option(
    "--platform",
    default="KVM",
    show_default=True,
    help="Simulator platform profile (a name, or a profile JSON file from 'tickless sim fit').",
)
@click.option(
    "--seed",
    type=SEED,
    default=0,
    show_default=True,
    help="Simulator seed: a simulated run is deterministic for a given seed.",
)
@click.option(
    "--compare-paper",
    is_flag=True,
    help="Print our row beside the paper's Table 1 rows for this interval.",
)
def measure(
    timer: str | None,
    advance: str,
    explain: bool,
    guests: int,
    interval_ns: int,
    count: int,
    mode: str,
    hz: int | None,
    guest: str,
    kernel_path: Path | None,
    linux_drivers: str,
    console_path: Path | None,
    method: str,
    wait: str,
    slop_ns: int,
    rate: Fraction,
    warp_idle: bool,
    rtc_epoch_ns: int | None,
    halt_poll_ns: int | None,
    no_rt: bool,
    json_path: Path | None,
    loads: tuple[str, ...],
    io_rate_per_s: float,
    io_handler_ns: int,
    hold_back_ns: int | None,
    io_cpu: str,
    spin_threshold_ns: int,
    backend: str,
    platform: str,
    seed: int,
    compare_paper: bool,
) -> None:
    """Measure N timer events every d, the paper's way: mean, sd, 99% CI, percentiles."""
    from tickless.backends import backend_for, resolve_backend

    resolved, fallback_note = resolve_backend(backend)
    if fallback_note:
        err_console.print(fallback_note)
    spec = spec_from_options(resolved, click.get_current_context().params)
    if backend_for(spec) is Backend.KVM:
        require_kvm()
    record = _run(spec, json_path)
    render_result(record, console)
    if compare_paper:
        render_compare_paper(record, console)
    if json_path:
        write_json_atomic(json_path, to_json_dict(record))
        err_console.print(f"result written to {json_path}")
    if record.lateness.early_count:
        raise click.ClickException(f"{record.lateness.early_count} events fired early")


def spec_from_options(backend: Backend, options: dict[str, Any]) -> MeasureSpec:
    """The spec the options ask for; a setting that cannot run is a usage error."""
    from tickless.results.spec import MeasureSpec

    advance = Advance.OFF if options["advance"] == "0" else Advance(options["advance"])
    try:
        spec = MeasureSpec(
            **{
                **settings_of(MeasureSpec, options),
                "timer": options["timer"]
                or default_timer(
                    GuestKind(options["guest"]), LinuxDrivers(options["linux_drivers"])
                ),
                "hz": guest_hz(options["guest"], options["hz"], 1000),
                "realtime": not options["no_rt"],
                "backend": backend,
                "advance": advance,
            }
        )
    except InputError as exc:
        raise click.UsageError(str(exc)) from None
    from tickless.sim.platforms import resolve_platform

    try:  # on any backend: a mistyped profile is refused even where it would not be used
        resolve_platform(spec.platform)
    except InputError as exc:
        raise click.UsageError(f"--platform: {exc}") from None
    return spec


def _run(spec: MeasureSpec, json_path: Path | None) -> ResultRecord:
    """Run with a progress bar; on Ctrl-C show and keep what was measured, exit 130."""
    from tickless.backends import measure as run
    from tickless.results.spec import MeasurementInterrupted

    label = f"{spec.timer} {format_duration_ns(spec.interval_ns)} x {spec.count}"
    try:
        with progress_bar(label, spec.count, spec.expected_duration_s > 1.0) as update:
            return run(spec, progress=update)
    except MeasurementInterrupted as stop:
        if stop.partial is not None:
            render_result(stop.partial, console)
            if json_path:
                write_json_atomic(json_path, to_json_dict(stop.partial))
                err_console.print(f"partial result written to {json_path}")
        err_console.print("interrupted")
        exit_interrupted()
