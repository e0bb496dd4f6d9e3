"""tickless console: boot a guest and stream what it prints."""

from __future__ import annotations

import sys
import time
from fractions import Fraction
from pathlib import Path

import click

from tickless.axes import GuestKind, LinuxDrivers, TickMode, TimerPath, check_dilation
from tickless.cli.common import (
    RUN_DURATION,
    DilationParam,
    console_option,
    err_console,
    exit_interrupted,
    guest_hz,
    guest_options,
    hz_option,
    mode_option,
    require_kvm,
)
from tickless.errors import InputError


def _write_through(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@click.command("console")
@guest_options
@click.option(
    "--timer",
    type=click.Choice(
        [t.value for t in (TimerPath.LGUEST, TimerPath.LAPIC, TimerPath.HPET, TimerPath.PIT)]
    ),
    default=None,
    help="lguest (default): the guest ticks on our lguest-style clock-event device (its "
    "Linux driver's); lapic: on KVM's LAPIC timer (the default with --linux-drivers "
    "stock); hpet, pit: Linux's own drivers on the timer zoo's chips (ACPI tables, CMOS "
    "RTC: --guest linux).",
)
@mode_option
@hz_option("The kernel's HZ.", maximum=10_000)
@click.option(
    "--dilation",
    "rate",
    type=DilationParam(),
    default="1",
    show_default=True,
    help="Guest seconds per wall second, constant (--duration stays wall time): printk's "
    "timestamps show it. Linux on its own clocks needs --linux-drivers stock.",
)
@click.option(
    "--duration",
    "duration_ns",
    type=RUN_DURATION,
    default="30s",
    show_default=True,
    help="Stop the guest after this long (Ctrl-C stops it sooner).",
)
@console_option
def console_command(
    guest: str,
    kernel_path: Path | None,
    linux_drivers: str,
    timer: str | None,
    mode: str,
    hz: int | None,
    rate: Fraction,
    duration_ns: int,
    console_path: Path | None,
) -> None:
    """Boot an idle guest and stream its console: watch a Linux guest come up tickless.

    \b
      tickless console --guest linux              boot messages, then the idle workload
      tickless console --guest linux --timer lapic the same kernel on KVM's LAPIC timer
      tickless console --guest linux --timer hpet  Linux finding the zoo's HPET in ACPI
      tickless console --guest linux --linux-drivers stock --dilation 10
                                                   Linux on its own clocks, 10x fast
    """
    from tickless.atomicfile import write_bytes_atomic
    from tickless.devices.config import GuestConfig
    from tickless.devices.console_buffer import Console
    from tickless.guest.abi import Scenario
    from tickless.vmm.host import VmmHost

    drivers = LinuxDrivers(linux_drivers)
    timer = timer or (TimerPath.LAPIC if drivers is LinuxDrivers.STOCK else TimerPath.LGUEST)
    if GuestKind(guest) is GuestKind.SMALL and TimerPath(timer) in (TimerPath.HPET, TimerPath.PIT):
        raise InputError("--timer hpet and pit are Linux's own drivers here: add --guest linux")
    check_dilation(TimerPath(timer), rate, stock=drivers is LinuxDrivers.STOCK)
    require_kvm()
    config = GuestConfig(
        guest=GuestKind(guest),
        kernel_path=kernel_path,
        linux_drivers=drivers,
        scenario=Scenario.IDLE,
        timer=TimerPath(timer),
        mode=TickMode(mode),
        hz=guest_hz(guest, hz, 1000),
        duration_ns=round(duration_ns * rate),  # the idle workload's, in guest time
        rate=rate,
    )
    stream = Console(echo=_write_through)
    interrupted = False
    with VmmHost() as host:
        machine = host.boot(config, console=stream)
        machine.start()
        end = time.monotonic() + duration_ns / 1e9
        try:
            while machine.running and time.monotonic() < end:
                machine.join(0.1)
        except KeyboardInterrupt:
            interrupted = True
        machine.request_stop("interrupted (Ctrl-C)" if interrupted else "end of the console run")
        machine.join(5)
    if console_path is not None:
        write_bytes_atomic(console_path, stream.text().encode("utf-8"))
        err_console.print(f"console written to {console_path}")
    outcome = machine.outcome
    err_console.print(f"guest stopped: {outcome.reason}")
    if config.guest is GuestKind.LINUX:
        from tickless.measure.linux_clocks import console_clocks

        for line in console_clocks(list(stream.lines)):
            err_console.print(line)
    if interrupted:
        exit_interrupted()
