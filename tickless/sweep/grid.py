"""The grid of a sweep: parameter names and the values each takes, from ``--param`` lines
and a TOML or YAML file; its points are the cartesian product, in the order given.

Values stay text here, exactly as a user would type them after ``--name``: the command's
own option types parse them later, so a sweep accepts what the command accepts.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tickless.errors import InputError

__all__ = ["MULTIPLE_SEPARATOR", "Grid", "grid_points", "load_grid_file", "merge", "parse_param"]

Grid = dict[str, list[str]]  # name -> values, in the order given
MULTIPLE_SEPARATOR = "+"  # one value of a repeatable option: "cpu+io" is --load cpu --load io


def parse_param(text: str) -> tuple[str, list[str]]:
    """``name=v1,v2,...`` -> (name, values). A value with a comma in it (a mixed fleet's
    ``periodic,nohz-full``) goes in a grid file, as one string of a list."""
    name, sep, values = text.partition("=")
    name = name.strip().removeprefix("--")
    if not sep or not name:
        raise InputError(f"--param {text!r}: expected NAME=V1,V2,... such as slop=0,50us,1ms")
    parts = [v.strip() for v in values.split(",")]
    if any(not p for p in parts):
        raise InputError(f"--param {text!r}: an empty value (two commas, or one at an end)")
    return name, parts


def _as_text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise InputError(f"grid file: {name} = {value!r} is not a number, a string or true/false")


def _grid_from_mapping(data: Mapping[str, Any], source: str) -> Grid:
    grid: Grid = {}
    for raw_name, value in data.items():
        name = str(raw_name).removeprefix("--")
        values = value if isinstance(value, list) else [value]
        if not values:
            raise InputError(f"{source}: {name} has an empty list of values")
        grid[name] = [_as_text(name, v) for v in values]
    return grid


def load_grid_file(path: Path) -> Grid:
    """A TOML (or, by its suffix, YAML) file of ``name = value`` or ``name = [values]``
    lines; ``[param]`` may hold them as a table."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read grid file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"grid file {path} is not UTF-8 text") from None
    try:
        if Path(path).suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # tomllib and yaml each have their own error classes
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"grid file {path}: {first_line}") from None
    if isinstance(data, dict) and isinstance(data.get("param"), dict) and len(data) == 1:
        data = data["param"]
    if not isinstance(data, dict):
        raise InputError(f"grid file {path}: expected name = value lines at the top level")
    return _grid_from_mapping(data, f"grid file {path}")


def merge(grids: Iterable[Grid]) -> Grid:
    """Grids in order; a name given twice is refused (which of the two would count?)."""
    out: Grid = {}
    for grid in grids:
        for name, values in grid.items():
            if name in out:
                raise InputError(f"parameter {name} is given twice")
            out[name] = values
    return out


def grid_points(grid: Grid) -> list[dict[str, str]]:
    """Every combination, the last parameter varying fastest (as nested loops would)."""
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]
