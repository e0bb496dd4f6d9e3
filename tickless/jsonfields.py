"""Strict, typed reading of JSON objects from files people (or other programs) wrote.

Every file format of tickless (result records, simulator profiles) is read through one
``StrictReader``: each key must be there with the right type, unknown keys are refused, and
an error names the offending key with its path, in one line, as the format's own error type.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def json_type(value: Any) -> str:
    """Name a value by its JSON type, which is what the user sees in the file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def read_json_file(path: Path, error: type[Exception], missing: str = "no such file") -> Any:
    """The JSON value in ``path``; every failure is ``error`` with one line naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None


class StrictReader:
    """Typed access to one JSON object; ``error`` is the format's exception class."""

    def __init__(
        self,
        obj: Any,
        error: type[ValueError],
        prefix: str = "",
        format_name: str = "the format",
    ) -> None:
        if not isinstance(obj, dict):
            where = f"'{prefix[:-1]}'" if prefix else "the top level"
            raise error(f"{where} must be a JSON object, got {json_type(obj)}")
        self.obj: dict[str, Any] = obj
        self.error = error
        self.prefix = prefix
        self.format_name = format_name
        self.used: set[str] = set()

    def fail(self, key: str, problem: str) -> ValueError:
        return self.error(f"key '{self.prefix}{key}' {problem}")

    def get(self, key: str) -> Any:
        if key not in self.obj:
            raise self.fail(key, "is missing")
        self.used.add(key)
        return self.obj[key]

    def int_(self, key: str, *, minimum: int | None = 0) -> int:
        value = self.get(key)
        if type(value) is not int:  # bool is an int subclass; 1.5 and "1" are not integers
            raise self.fail(key, f"must be a whole number, got {json_type(value)} {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, _below(minimum, value))
        return value

    def optional_int(self, key: str) -> int | None:
        return None if self.get(key) is None else self.int_(key, minimum=1)

    def float_(self, key: str, *, minimum: float | None = None) -> float:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, got {json_type(value)}")
        if not math.isfinite(value):
            raise self.fail(key, f"must be finite, got {value}")
        if minimum is not None and value < minimum:
            raise self.fail(key, _below(minimum, value))
        return float(value)

    def str_(self, key: str, choices: tuple[str, ...] | None = None) -> str:
        value = self.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, got {json_type(value)}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def optional_str(self, key: str) -> str | None:
        return None if self.get(key) is None else self.str_(key)

    def object_(self, key: str) -> StrictReader:
        return StrictReader(self.get(key), self.error, f"{self.prefix}{key}.", self.format_name)

    def list_(self, key: str) -> list[Any]:
        value = self.get(key)
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, got {json_type(value)}")
        return value

    def int_list(self, key: str) -> list[int]:
        values = self.list_(key)
        for i, item in enumerate(values):
            if type(item) is not int:
                raise self.fail(key, f"item {i} must be an integer, got {json_type(item)}")
        return list(values)

    def float_list(self, key: str) -> list[float]:
        values = self.list_(key)
        for i, item in enumerate(values):
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise self.fail(key, f"item {i} must be a number, got {json_type(item)}")
            if not math.isfinite(item):
                raise self.fail(key, f"item {i} must be finite, got {item}")
        return [float(v) for v in values]

    def str_list(self, key: str) -> list[str]:
        values = self.list_(key)
        for i, item in enumerate(values):
            if not isinstance(item, str):
                raise self.fail(key, f"item {i} must be a string, got {json_type(item)}")
        return list(values)

    def str_dict(self, key: str) -> dict[str, str]:
        value = self.get(key)
        if not isinstance(value, dict):
            raise self.fail(key, f"must be an object, got {json_type(value)}")
        for k, v in value.items():
            if not isinstance(v, str):
                raise self.fail(key, f"entry '{k}' must be a string, got {json_type(v)}")
        return dict(value)

    def int_dict(self, key: str) -> dict[str, int]:
        """An object of non-negative integer counts, by name."""
        value = self.get(key)
        if not isinstance(value, dict):
            raise self.fail(key, f"must be an object, got {json_type(value)}")
        for k, v in value.items():
            if type(v) is not int or v < 0:
                raise self.fail(key, f"entry '{k}' must be a count, got {v!r}")
        return dict(value)

    def check_no_extra(self) -> None:
        extra = sorted(set(self.obj) - self.used)
        if extra:
            raise self.fail(extra[0], f"is not part of {self.format_name} (typo, or newer?)")


def _below(minimum: float, value: float) -> str:
    return f"must not be negative, got {value}" if minimum == 0 else f"must be >= {minimum}"
