"""Shared pieces of the command line: consoles, progress, parameter types."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from tickless.axes import GuestKind, choices
from tickless.backends import kvm_problem
from tickless.units import DurationParam

DURATION_OR_ZERO = DurationParam(allow_zero=True)

F = TypeVar("F", bound=Callable[..., Any])

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


def json_option(help_text: str) -> Callable[[F], F]:
    """``--json FILE``: where a command writes its result (atomically)."""
    return click.option(
        "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help=help_text
    )


LINUX_DEFAULT_HZ = 100  # a tick costs ~2 ms of emulated ring 0 here: 1000 HZ cannot keep up


def guest_options(f: F) -> F:
    """``--guest`` and ``--kernel``: what runs in the VM."""
    f = click.option(
        "--kernel",
        "kernel_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="--guest linux: boot this vmlinux (an x86-64 ELF with our drivers) instead of "
        "the one tickless builds from linux-source-6.12.",
    )(f)
    return click.option(
        "--guest",
        type=click.Choice(choices(GuestKind)),
        default=GuestKind.SMALL.value,
        show_default=True,
        help="small: tickless's own kernel; linux: a Linux 6.12 kernel running tickless on "
        "our PV clocksource and clock-event device (built on first use, ~2 min).",
    )(f)


def console_option(f: F) -> F:
    """``--console FILE``: keep what the guest printed."""
    return click.option(
        "--console",
        "console_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Save the guest's console output here (also shown when a guest fails).",
    )(f)


def guest_hz(guest: str, hz: int | None, default: int) -> int:
    """--hz as given, else the guest's default: a Linux kernel is built for HZ=100 here."""
    if hz is not None:
        return hz
    return LINUX_DEFAULT_HZ if guest == GuestKind.LINUX.value else default


def slop_option(help_text: str) -> Callable[[F], F]:
    """``--slop``: host timer slop, Xen ``timer_slop`` style (0 keeps every timer apart)."""
    return click.option(
        "--slop", "slop_ns", type=DURATION_OR_ZERO, default="0ns", show_default=True, help=help_text
    )
