"""The points of a sweep, read with the very options of the command they sweep.

A point's argv is the fixed options plus ``--NAME VALUE`` for each swept setting, parsed
by the command's own click options (types, ranges, defaults), so ``--param slop=50us``
means exactly what ``--slop 50us`` means; the parsed values then become the spec the
command's entry point takes, as the command itself builds it. Every point is built before
anything runs, so a bad value is one line and nothing has started.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from tickless.errors import InputError
from tickless.sweep.grid import MULTIPLE_SEPARATOR, Grid, grid_points
from tickless.sweep.point import Point
from tickless.sweep.runners import Scalar

__all__ = ["SWEEPABLE", "SweepCommand", "build_points", "find_command"]

Built = tuple[Any, bool, float]  # spec, whether it times hardware, expected cost
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass(frozen=True)
class SweepCommand:
    name: str  # as typed after 'tickless sweep'
    load: Callable[[], click.Command]  # the command itself, imported when used
    build: Callable[[dict[str, Any]], Built]  # its parsed options -> spec
    refused: tuple[str, ...] = ("json_path",)  # options that write a file per run
    display_only: tuple[str, ...] = ()  # options that change nothing measured


def _measure_command() -> click.Command:
    from tickless.cli.measure import measure

    return measure


def _build_measure(params: dict[str, Any]) -> Built:
    from tickless.axes import Backend
    from tickless.backends import backend_for, resolve_backend
    from tickless.cli.measure import spec_from_options

    backend, _ = resolve_backend(params["backend"])
    spec = spec_from_options(backend, params)
    return spec, backend_for(spec) is not Backend.SIM, spec.expected_duration_s


def _idle_command() -> click.Command:
    from tickless.cli.idle import idle

    return idle


def _build_idle(params: dict[str, Any]) -> Built:
    from tickless.cli.idle import idle_spec

    spec = idle_spec(params)
    return spec, True, spec.duration_ns / 1e9


def _fleet_command() -> click.Command:
    from tickless.cli.sim_fleet import fleet

    return fleet


def _build_fleet(params: dict[str, Any]) -> Built:
    from tickless.cli.sim_fleet import fleet_spec_from_options

    spec = fleet_spec_from_options(params)
    return spec, False, spec.expected_events()


SWEEPABLE = {
    c.name: c
    for c in (
        SweepCommand(
            "measure",
            _measure_command,
            _build_measure,
            refused=("json_path", "console_path"),
            display_only=("compare_paper",),
        ),
        SweepCommand("idle", _idle_command, _build_idle),
        SweepCommand("sim fleet", _fleet_command, _build_fleet),
    )
}


def find_command(args: Sequence[str]) -> tuple[SweepCommand, list[str]]:
    """The command named by the leading words of ``args`` ('sim fleet'), and the rest."""
    for words in (2, 1):
        name = " ".join(args[:words])
        if len(args) >= words and name in SWEEPABLE:
            return SWEEPABLE[name], list(args[words:])
    given = " ".join(a for a in args[:2] if not a.startswith("-")) or "nothing"
    raise InputError(f"cannot sweep {given!r}: name one of {', '.join(SWEEPABLE)}")


def _options(command: click.Command) -> dict[str, click.Option]:
    """Each option by every name a user may give it: long flags without dashes, and the
    name its value is stored under (``slop`` and ``slop_ns``)."""
    out: dict[str, click.Option] = {}
    for p in command.params:
        if isinstance(p, click.Option) and p.name:
            for flag in (*p.opts, *p.secondary_opts):
                if flag.startswith("--"):
                    out[flag[2:]] = p
            out.setdefault(p.name, p)
    return out


def _argv(option: click.Option, value: str) -> list[str]:
    flag = next(o for o in option.opts if o.startswith("--"))
    if option.is_flag:
        if value.lower() in _TRUE:
            return [flag]
        if value.lower() in _FALSE:
            return [option.secondary_opts[0]] if option.secondary_opts else []
        raise InputError(f"{flag} is a flag: its values are true or false, not {value!r}")
    if option.multiple:
        return [a for v in value.split(MULTIPLE_SEPARATOR) for a in (flag, v)]
    return [flag, value]


def _parse(command: click.Command, argv: list[str], where: str) -> click.Context:
    try:
        return command.make_context(command.name, list(argv))  # click consumes its list
    except click.ClickException as exc:
        raise InputError(f"{where}: {exc.format_message()}") from None


def _canonical(value: Any) -> Scalar:
    if isinstance(value, tuple | list | frozenset):
        return MULTIPLE_SEPARATOR.join(str(_canonical(v)) for v in value)
    if isinstance(value, Enum):
        return _canonical(value.value)
    if isinstance(value, Fraction | Path):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _check_grid(
    sweep: SweepCommand, options: dict[str, click.Option], fixed: click.Context, grid: Grid
) -> None:
    """Unknown names, file-writing options and settings both swept and fixed: refused."""
    for name, values in grid.items():
        given = f"--param {name}={','.join(values)}"
        option = options.get(name)
        if option is None:
            known = ", ".join(sorted(k for k, o in options.items() if k != o.name))
            raise InputError(f"{given}: {sweep.name} has no option --{name} (it has: {known})")
        if option.name in sweep.refused or option.name in sweep.display_only:
            raise InputError(f"{given}: --{name} cannot be swept; the sweep writes one table")
        if fixed.get_parameter_source(option.name or "") is ParameterSource.COMMANDLINE:
            raise InputError(f"{given}: --{name} is both swept and fixed; give it once")
    for name in sweep.refused:
        if fixed.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            raise InputError(
                f"{sweep.name}: --{name.removesuffix('_path')} writes a file per "
                "run; a sweep writes one table (--out)"
            )


def build_points(sweep: SweepCommand, fixed_args: list[str], grid: Grid) -> list[Point]:
    """Every point of ``grid`` with ``fixed_args`` applied to each, in grid order (a point
    listed twice is kept once)."""
    command = sweep.load()
    options = _options(command)
    fixed = _parse(command, fixed_args, f"tickless sweep {sweep.name}")
    _check_grid(sweep, options, fixed, grid)
    swept = tuple(options[n].name or n for n in grid)
    points: dict[str, Point] = {}
    for raw in grid_points(grid):
        label = " ".join(f"{n}={v}" for n, v in raw.items())
        argv = list(fixed_args)
        for name, value in raw.items():
            argv += _argv(options[name], value)
        params = _parse(command, argv, f"point {label}").params
        try:
            spec, timing, cost = sweep.build(params)
        except click.ClickException as exc:
            raise InputError(f"point {label}: {exc.format_message()}") from None
        except InputError as exc:
            raise InputError(f"point {label}: {exc}") from None
        if "backend" in params and hasattr(spec, "backend"):
            params = {**params, "backend": spec.backend}  # 'auto' as it resolved here
        dropped = (*sweep.refused, *sweep.display_only)
        settings = {k: _canonical(v) for k, v in params.items() if k not in dropped}
        point = Point(sweep.name, settings, swept, spec, timing, cost)
        points.setdefault(point.key, point)
    return list(points.values())
