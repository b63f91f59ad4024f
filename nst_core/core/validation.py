"""Checks shared by every reader of a file that may come from anyone (checkpoint headers, weight
metadata, profiles, scan folders, fine-tuning state).

A file is checked against its format's schema before anything it describes is allocated;
every refusal is the format's own ``UserError`` subclass and names the file and the field.
JSON booleans are not numbers here (``true`` is refused where a sparsity is expected), and
numbers must be finite.

>>> fields = Fields({"scale": 1.0}, "prep.json", UserError)
>>> fields.number("scale", low=0.0)
1.0
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, NoReturn

from nst_core.core.errors import UserError, first_line

#: JSON documents we read (profiles, scan.json) are a few KB; a larger one is not ours.
MAX_JSON_BYTES = 16 << 20
_SHOWN_CHARS = 60


def cut(text: str, limit: int = 120) -> str:
    """``text`` whole up to ``limit`` characters, else its start and its length: values from a hostile
    file or request are echoed, never whole.

    >>> cut("ab" * 50, limit=10)
    'ababababa… (100 characters)'
    """
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text):,} characters)"


def shown(value: Any, limit: int = _SHOWN_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    return cut(repr(value), limit)


def is_number(value: Any) -> bool:
    """A finite int or float; a bool is not a number (``True == 1`` only by accident of Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_json(text: str | bytes, where: str, error: type[UserError] = UserError) -> Any:
    """JSON ``text`` decoded; a malformed document (or one nested too deep to decode) is ``error``."""
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise error(f"{where} is not valid JSON ({cut(first_line(exc))})") from None


def read_json_file(path: str | os.PathLike, what: str, error: type[UserError] = UserError) -> Any:
    """The JSON document in ``path`` (at most :data:`MAX_JSON_BYTES`); ``what`` names it in errors."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise error(f"{path}: {size:,} bytes is too large for {what} (at most {MAX_JSON_BYTES:,})")
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or first_line(exc)})") from None
    if not data.strip():
        raise error(f"{path}: {what} is empty")
    return parse_json(data, f"{path}", error)


_MISSING = object()


class Fields:
    """Typed reading of one decoded object (a header, a JSON file) whose every refusal names the file and field.

    >>> Fields({"widths": {"conv1_1": 64}}, "a.safetensors", UserError).mapping("widths")
    {'conv1_1': 64}
    """

    def __init__(self, data: Any, where: str, error: type[UserError] = UserError, prefix: str = ""):
        if not isinstance(data, dict):
            raise error(
                f"{where}: expected a JSON object{' for ' + prefix.rstrip('.') if prefix else ''}, "
                f"found {type(data).__name__}"
            )
        self.data = data
        self.where = where
        self.error = error
        self.prefix = prefix  # "preprocessing." for a nested object

    def fail(self, key: str, problem: str) -> NoReturn:
        """Raise the format's error: ``FILE: field 'KEY' PROBLEM``."""
        raise self.error(f"{self.where}: field {self.prefix + key!r} {problem}")

    def has(self, key: str) -> bool:
        """Whether the field is present."""
        return key in self.data

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The raw value; a missing field without a ``default`` is refused."""
        if key not in self.data:
            if default is _MISSING:
                self.fail(key, "is missing")
            return default
        return self.data[key]

    def nested(self, key: str, default: Any = _MISSING) -> Fields:
        """The object in ``key`` as Fields of its own (errors say ``key.inner``)."""
        value = self.get(key, default)
        if not isinstance(value, dict):
            self.fail(key, f"must be an object, not {type(value).__name__}")
        return Fields(value, self.where, self.error, prefix=f"{self.prefix}{key}.")

    def string(self, key: str, choices: tuple[str, ...] | list[str] | None = None, default: Any = _MISSING) -> str:
        """A string field, optionally one of ``choices``."""
        value = self.get(key, default)
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {type(value).__name__}")
        if choices is not None and value not in choices:
            self.fail(key, f"is {shown(value)}; expected one of {', '.join(choices)}")
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        """A JSON boolean field."""
        value = self.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {shown(value)}")
        return value

    def number(
        self,
        key: str,
        low: float | None = None,
        high: float | None = None,
        default: Any = _MISSING,
        positive: bool = False,
    ) -> float:
        """A finite number (not a boolean) in ``[low, high]`` (``positive``: above 0)."""
        return check_number(self.get(key, default), lambda problem: self.fail(key, problem), low, high, positive)

    def integer(self, key: str, low: int | None = None, high: int | None = None, default: Any = _MISSING) -> int:
        """An integer (not a boolean, not 3.0) in ``[low, high]``."""
        return check_integer(self.get(key, default), lambda problem: self.fail(key, problem), low, high)

    def mapping(self, key: str, default: Any = _MISSING) -> dict:
        """An object field."""
        value = self.get(key, default)
        if not isinstance(value, dict):
            self.fail(key, f"must be an object, not {type(value).__name__}")
        return value

    def sequence(self, key: str, length: int | None = None, default: Any = _MISSING) -> list:
        """A list field, optionally of exactly ``length`` items."""
        value = self.get(key, default)
        if not isinstance(value, list):
            self.fail(key, f"must be a list, not {type(value).__name__}")
        if length is not None and len(value) != length:
            self.fail(key, f"has {len(value)} items, expected {length}")
        return value

    def numbers(
        self, key: str, length: int | None = None, low: float | None = None, positive: bool = False
    ) -> list[float]:
        """A list of finite numbers (``length`` of them, each ``>= low`` / ``> 0``)."""
        values = self.sequence(key, length)
        return [
            check_number(v, lambda problem, i=i: self.fail(f"{key}[{i}]", problem), low, None, positive)
            for i, v in enumerate(values)
        ]

    def names(self, key: str, allowed: list[str] | tuple[str, ...] | None = None, default: Any = _MISSING) -> list[str]:
        """A list of distinct strings, each one of ``allowed`` (any string when None)."""
        values = self.sequence(key, default=default)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                self.fail(f"{key}[{i}]", f"must be a string, not {shown(value)}")
            if allowed is not None and value not in allowed:
                self.fail(f"{key}[{i}]", f"is {shown(value)}; expected one of {', '.join(allowed)}")
        if len(set(values)) != len(values):
            self.fail(key, "names an item twice")
        return values

    def json_text(self, key: str, default: Any = _MISSING) -> Any:
        """A string field holding JSON (as safetensors headers store structured values), decoded."""
        if key not in self.data and default is not _MISSING:
            return default
        text = self.string(key)
        return parse_json(text, f"{self.where}: field {self.prefix + key!r}", self.error)


def check_number(
    value: Any, fail, low: float | None = None, high: float | None = None, positive: bool = False
) -> float:
    """``value`` as a float if it is a finite number within bounds, else ``fail(problem)`` (which raises)."""
    if not is_number(value):
        fail(f"must be a finite number, not {shown(value)}")
    if positive and not value > 0:
        fail(f"is {value}; it must be above 0")
    if (low is not None and value < low) or (high is not None and value > high):
        fail(f"is {value}; it must be in [{'-inf' if low is None else low}, {'inf' if high is None else high}]")
    return float(value)


def check_integer(value: Any, fail, low: int | None = None, high: int | None = None) -> int:
    """``value`` if it is an int (not a bool) within bounds, else ``fail(problem)`` (which raises)."""
    if not isinstance(value, int) or isinstance(value, bool):
        fail(f"must be an integer, not {shown(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        fail(f"is {shown(value)}; it must be in [{'-inf' if low is None else low}, {'inf' if high is None else high}]")
    return value
