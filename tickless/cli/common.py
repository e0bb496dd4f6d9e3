"""Shared pieces of the command line: consoles, progress, parameter types, output paths
checked before a run, and how an interrupted command exits."""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from tickless.axes import GuestKind, LinuxDrivers, TickMode, choices
from tickless.backends import kvm_problem
from tickless.guest.abi import MAX_EVENTS
from tickless.results.paper import PAPER_EVENTS
from tickless.units import DurationParam

SECOND_NS = 1_000_000_000
# Every zero-or-more duration option is a short setting (slop, halt polling, a handler's
# cost, hold-back, spin threshold): past a second none of them means anything.
DURATION_OR_ZERO = DurationParam(allow_zero=True, max_ns=SECOND_NS)
RUN_DURATION = DurationParam(max_ns=24 * 3600 * SECOND_NS)  # how long real guests run
SEED = click.IntRange(0, 2**63 - 1)  # numpy's generators and numba take an int64

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # a message stays one line in a log
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130: Ctrl-C, as a shell reports it
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143: SIGTERM (a service manager, kill, a CI timeout)


class _Interruption:
    """Which signal interrupted the command: SIGTERM sets it, Ctrl-C leaves it None."""

    signum: int | None = None


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C: a KeyboardInterrupt in the main thread, so every command keeps
    its partial result the way it does for Ctrl-C. A second SIGTERM while the first is
    being handled is ignored, so it cannot tear the partial result being saved."""
    if _Interruption.signum is None:
        _Interruption.signum = signum
        raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Install the SIGTERM handler for one command (the main thread only; restored after,
    so an in-process caller such as a test keeps its own handler)."""
    _Interruption.signum = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
    else:
        yield


def interrupted_status() -> int:
    """The exit status of an interrupted command: 143 after SIGTERM, else 130 (Ctrl-C)."""
    return EXIT_TERMINATED if _Interruption.signum == signal.SIGTERM else EXIT_INTERRUPTED


def exit_interrupted() -> NoReturn:
    """End an interrupted command (its partial result already kept) with 130 or 143."""
    sys.exit(interrupted_status())


def output_path_problem(path: Path, directory: bool = False) -> str | None:
    """Why ``path`` cannot take an output file (``directory``: a directory of them, created
    if missing), or None. Checked before a run, so that a result is never computed and then
    lost; writing a probe file catches what ``os.access`` misses (a read-only mount, root on
    a directory that accepts no files)."""
    path = Path(path)
    if path.exists():
        if directory and not path.is_dir():
            return f"{path} exists and is not a directory"
        if not directory and path.is_dir():
            return f"{path} is a directory, not a file"
        if not directory and not path.is_file():
            return f"{path} exists and is not a regular file"
        where = path if directory else path.parent
    else:
        where = path.parent
        if directory:  # created on use, with its parents: the nearest existing one counts
            while not where.exists() and where != where.parent:
                where = where.parent
        elif not where.exists():
            return f"directory {where} does not exist"
        if not where.is_dir():
            return f"{where} is not a directory"
    return _unwritable(where)


def _unwritable(directory: Path) -> str | None:
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"directory {directory} is not writable"
    try:
        fd, probe = tempfile.mkstemp(prefix=".tickless-probe-", dir=directory)
    except OSError as exc:
        return f"cannot create files in {directory} ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(probe)
    return None


def check_output_path(path: Path, option: str, directory: bool = False) -> None:
    """Refuse an output path before the run, as one line naming the option."""
    problem = output_path_problem(path, directory)
    if problem is not None:
        raise click.BadParameter(problem, param_hint=f"'{option}'")


class OutputPath(click.Path):
    """An output file (``directory=True``: a directory for output files) checked when the
    command line is parsed, before anything runs: see ``output_path_problem``."""

    def __init__(self, directory: bool = False) -> None:
        super().__init__(file_okay=not directory, dir_okay=directory, path_type=Path)
        self.directory = directory

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = Path(os.fsdecode(super().convert(value, param, ctx)))
        problem = output_path_problem(path, self.directory)
        if problem is not None:
            self.fail(problem, param, ctx)
        return path


OUTPUT_FILE = OutputPath()
OUTPUT_DIRECTORY = OutputPath(directory=True)


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


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses nan and inf, which compare false with any
    bound and so pass it."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class KernelPath(click.Path):
    """``--kernel``: a vmlinux that ``LinuxBoot`` can load (an x86-64 ELF whose segments fit
    the guest's memory), checked as the command line is read, so that a wrong file is
    refused before KVM is opened."""

    def __init__(self) -> None:
        super().__init__(exists=True, dir_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from tickless.errors import InputError
        from tickless.vmm.linux_boot import LinuxBoot

        path = Path(os.fsdecode(super().convert(value, param, ctx)))
        try:
            LinuxBoot(path)
        except InputError as exc:
            self.fail(f"{path}: {exc}", param, ctx)
        return path


@contextmanager
def progress_bar(label: str, total: float, show: bool) -> Iterator[Callable[[float], None]]:
    """A rich progress bar for runs expected to take over a second; a no-op otherwise.

    When stderr is not a terminal (a log, CI, a service) a bar would print nothing, so a
    line per 10 % done is printed instead: the log shows the run is alive, and a caller
    waiting to interrupt it knows that something has been measured."""
    if not show:
        yield lambda done: None
        return
    if not err_console.is_terminal:
        yield _progress_lines(label, total)
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


def _progress_lines(label: str, total: float) -> Callable[[float], None]:
    printed = 0

    def update(done: float) -> None:
        nonlocal printed
        tenth = min(10, int(10 * done / total)) if total > 0 else 10
        if tenth > printed:
            printed = tenth
            err_console.print(f"{label}: {10 * tenth} %", highlight=False)

    return update


def require_kvm() -> None:
    problem = kvm_problem()
    if problem is not None:
        raise click.ClickException(problem)


def json_option(help_text: str) -> Callable[[F], F]:
    """``--json FILE``: where a command writes its result (atomically)."""
    return click.option("--json", "json_path", type=OUTPUT_FILE, help=help_text)


LINUX_DEFAULT_HZ = 100  # a tick costs ~2 ms of emulated ring 0 here: 1000 HZ cannot keep up
MAX_HZ = 100_000  # what a guest's configuration takes (idle fleets: at most 10,000)


def count_option(help_text: str, name: str = "count", minimum: int = 1) -> Callable[[F], F]:
    """``--count``: timer events N, the paper's 20,000 unless given."""
    return click.option(
        "--count",
        name,
        type=click.IntRange(minimum, MAX_EVENTS),
        default=PAPER_EVENTS,
        show_default=True,
        help=help_text,
    )


def mode_option(f: F) -> F:
    """``--mode``: how the guest ticks (``TickMode``)."""
    return click.option(
        "--mode",
        type=click.Choice(choices(TickMode)),
        default=TickMode.TICKLESS.value,
        show_default=True,
        help="tickless: one-shot events; periodic: a HZ tick drives the guest's timers.",
    )(f)


def hz_option(help_text: str, maximum: int = MAX_HZ) -> Callable[[F], F]:
    """``--hz``: a guest's tick rate; None when not given (``guest_hz`` picks the default)."""
    return click.option("--hz", type=click.IntRange(1, maximum), default=None, help=help_text)


def guest_options(f: F) -> F:
    """``--guest`` and ``--kernel``: what runs in the VM."""
    f = click.option(
        "--kernel",
        "kernel_path",
        type=KernelPath(),
        default=None,
        help="--guest linux: boot this vmlinux (an x86-64 ELF) instead of ours; idle and "
        "measure need our drivers/tickless (the workload) in it, console boots any kernel.",
    )(f)
    f = click.option(
        "--linux-drivers",
        type=click.Choice(choices(LinuxDrivers)),
        default=LinuxDrivers.TICKLESS.value,
        show_default=True,
        help="--guest linux: tickless (our PV clocksource, sched_clock and clock-event "
        "device) or stock (the same kernel without them: Linux runs on its own TSC, LAPIC "
        "timer and HPET, calibrated at boot against the dilated HPET; KVM's CPUID leaves "
        "hidden; constant dilation only).",
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
        type=OUTPUT_FILE,
        default=None,
        help="Save the guest's console output here (also shown when a guest fails).",
    )(f)


def settings_of(spec_type: type[Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A command's parsed options stored under a field name of ``spec_type`` (a
    dataclass): the one path from options to a spec, for the command and for a sweep of it
    (an option added under its field's name comes along; what differs is given by hand)."""
    names = {f.name for f in dataclasses.fields(spec_type)}
    return {name: value for name, value in params.items() if name in names}


def guest_hz(guest: str, hz: int | None, default: int) -> int:
    """--hz as given, else the guest's default: a Linux kernel is built for HZ=100 here."""
    if hz is not None:
        return hz
    return LINUX_DEFAULT_HZ if guest == GuestKind.LINUX.value else default


def time_options(f: F) -> F:
    """``--dilation`` and ``--warp-idle``: how the guests' clock bends (docs: README,
    "Bending time")."""
    f = click.option(
        "--warp-idle",
        is_flag=True,
        help="When every vCPU of the guests waits for a timer (a BLOCK call), jump their "
        "clock to the earliest deadline at once, as QEMU's -icount sleep=off does for TCG: "
        "idle stretches cost no wall time, computing ones run at the dilation. Timers never "
        "fire early in guest time. Needs --timer pv or lguest, tickless, no I/O load.",
    )(f)
    return click.option(
        "--dilation",
        "rate",
        type=DilationParam(),
        default="1",
        show_default=True,
        help="Guest seconds per wall second (0.1: the guest clock runs at a tenth of wall "
        "speed; 10: ten times faster). Every guest clock and timer follows it; --timer "
        "lapic (the TSC, unscalable here) and host refuse it.",
    )(f)


class RtcEpochParam(click.ParamType):  # type: ignore[type-arg]
    """``--rtc-epoch``: an ISO 8601 time (UTC unless it names its zone) or ``now``; the
    value is ns since the Unix epoch, None for ``now`` (the host's time at the start)."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, int):
            return value
        if str(value).strip().lower() == "now":
            return None
        try:
            when = datetime.datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(
                f"{value!r} is not an ISO 8601 time like 2026-12-04T21:00:00Z, or now", param, ctx
            )
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        if not 1 <= when.year <= 9999 or when.astimezone(datetime.UTC).year < 1970:
            self.fail(f"{value!r} is before 1970", param, ctx)
        delta = when - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
        return (delta.days * 86_400 + delta.seconds) * SECOND_NS + delta.microseconds * 1000


def rtc_epoch_option(f: F) -> F:
    """``--rtc-epoch``: the CMOS RTC's time of day when the guest starts."""
    return click.option(
        "--rtc-epoch",
        "rtc_epoch_ns",
        type=RtcEpochParam(),
        default=None,
        help="The timer zoo's CMOS RTC: its time of day when the guest starts (ISO 8601, "
        "UTC unless a zone is given, e.g. 2030-01-01T00:00:00Z), then it runs with guest "
        "time (dilated, frozen, warped with it). Default: now, the host's time.",
    )(f)


def slop_option(help_text: str) -> Callable[[F], F]:
    """``--slop``: host timer slop, Xen ``timer_slop`` style (0 keeps every timer apart)."""
    return click.option(
        "--slop", "slop_ns", type=DURATION_OR_ZERO, default="0ns", show_default=True, help=help_text
    )
