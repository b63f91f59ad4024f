"""What one entry of the settings table (:mod:`nst_core.workflows.settings`) says, and how its values are read.

A :class:`Setting` names one thing a person sets. Its :class:`Flag` says how `nst stylize` (and the
commands that share its flags) spells it, its :class:`Control` how the app offers it: the widget, the
/compare parameter and its API description, the app's range and default, and what it sets in the
engine's ``StylizeConfig``. A :class:`ValueKind` says how a widget's or an API call's value becomes
the setting's value (with a message that names the setting when it cannot).

>>> WHOLE.read("12", "size")
12
>>> WEIGHTS.read("1, 2", "style weights")
(1.0, 2.0)
"""

from __future__ import annotations

import argparse
import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nst_core.core.errors import UserError


def read_whole(value: object, noun: str) -> int:
    """A whole number from a widget or an API call (a float is cut to its whole part, as int() does)."""
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise UserError(f"{noun} must be a whole number, not {value!r}") from None


def read_number(value: object, noun: str) -> float:
    """A number from a widget or an API call."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"{noun} must be a number, not {value!r}") from None


def read_weights(value: object, noun: str) -> tuple[float, ...] | None:
    """ "1, 2" -> (1.0, 2.0); empty -> None (equal weights)."""
    parts = [part for part in str(value or "").replace(",", " ").split() if part]
    return tuple(read_number(part, noun) for part in parts) or None


def _as_list(value: Sequence | None) -> list | None:
    return None if value is None else list(value)


@dataclass(frozen=True)
class ValueKind:
    """How a setting's value is read from a widget or an API call, and handed to the engine."""

    type: Any  # its type as a field of CompareSettings
    read: Callable[[Any, str], Any]  # (a widget's value, the setting's noun) -> the setting's value
    engine: Callable[[Any], Any] = lambda value: value  # the setting's value -> the StylizeConfig field's


WHOLE = ValueKind(int, read_whole, int)
NUMBER = ValueKind(float, read_number, float)
FLAG = ValueKind(bool, lambda value, noun: bool(value), bool)
CHOICE = ValueKind(str, lambda value, noun: value)
#: A choice that an empty value leaves at "none" (an API call may send null).
CHOICE_OR_NONE = ValueKind(str, lambda value, noun: str(value or "none"))
WEIGHTS = ValueKind(tuple[float, ...] | None, read_weights, _as_list)
#: Upload paths (the app turns Gradio's file data into paths first): empty is None.
PATH = ValueKind(str | None, lambda value, noun: value or None)
PATHS = ValueKind(tuple[str, ...] | None, lambda value, noun: tuple(value) if value else None, _as_list)
#: What the comparison takes as it comes (the images, the pruned network's widgets): no CompareSettings field.
RAW = ValueKind(Any, lambda value, noun: value)


@dataclass(frozen=True)
class Flag:
    """How the command line spells a setting: argparse's keyword arguments (the default is StylizeConfig's)."""

    help: str  # what --help says
    type: Callable[[str], Any] | None = None
    choices: Sequence[str] | None = None
    metavar: str | None = None
    nargs: str | None = None
    action: str | builtins.type[argparse.Action] | None = None  # (``type`` is a field here)
    spelling: str | None = None  # the flag when it is not --NAME-WITH-DASHES

    def flag(self, name: str) -> str:
        """The option string of setting ``name``."""
        return self.spelling or "--" + name.replace("_", "-")

    def argparse_kwargs(self) -> dict[str, Any]:
        """What ``add_argument`` takes besides the flag, the dest, the default and the help."""
        spec = {"type": self.type, "choices": self.choices, "metavar": self.metavar, "nargs": self.nargs}
        return {key: value for key, value in spec.items() if value is not None} | (
            {"action": self.action} if self.action else {}
        )


@dataclass(frozen=True)
class Control:
    """How the app offers a setting: one /compare parameter, the widget that fills it, and the checks
    its value passes (a UserError naming the setting when it does not)."""

    widget: str  # the Gradio component, by class name in lower case: slider, number, radio, image, ...
    kind: ValueKind
    place: tuple[str, int]  # (section of the input column, row in it): widgets of one row sit side by side
    doc: str  # the parameter's description in the API (one line: Gradio's docstring parser reads one)
    props: Mapping[str, Any] = field(default_factory=dict)  # the widget's own keyword arguments
    default: Any = None  # the app's default (None: the widget starts empty)
    optional: bool = False  # whether an API call may leave it out (then it is ``default``)
    setting: bool = True  # a field of CompareSettings; False: an input the comparison takes as it comes
    noun: str | None = None  # how messages name it (default: its parameter name in words)
    bounds: tuple[float | str, float | str] | None = None  # inclusive; a str names a server limit's field
    choices: Sequence[str] | Mapping[str, str] | None = None  # allowed values (a mapping: value -> widget label)
    check: Callable[[Any], None] | None = None  # a further check of the read value
    config: Callable[[Any], dict[str, Any]] | None = None  # the StylizeConfig fields it sets (default: its own)
    parameter: str | None = None  # its /compare name when that is not the setting's name

    def read(self, value: object, name: str) -> Any:
        """A widget's (or an API call's) value -> this setting's value, or a UserError naming it."""
        return self.kind.read(value, self.noun or name.replace("_", " "))

    def check_value(self, value: Any, name: str, limits: object = None) -> None:
        """A UserError naming the setting when ``value`` is out of its range or not one of its choices;
        ``limits`` holds the server's limits that ``bounds`` may name (a CompareSettings)."""
        noun = self.noun or name.replace("_", " ")
        if self.bounds is not None:
            low, high = (getattr(limits, b) if isinstance(b, str) else b for b in self.bounds)
            if value is None or not (low <= value <= high):
                raise UserError(f"{noun} must be between {low} and {high}, not {value}")
        if self.choices is not None and value not in self.choices:
            raise UserError(f"{noun} must be one of {', '.join(self.choices)}, not {value!r}")
        if self.check is not None:
            self.check(value)


@dataclass(frozen=True)
class Setting:
    """One user-facing setting: where it is offered (``cli``, ``app``; None where it is not)."""

    name: str  # the StylizeConfig field it sets (or, for what only the app has, its /compare parameter)
    cli: Flag | None = None
    app: Control | None = None

    @property
    def parameter(self) -> str:
        """Its name in the app (the /compare parameter and the CompareSettings field)."""
        return (self.app and self.app.parameter) or self.name

    def engine_fields(self, value: Any) -> dict[str, Any]:
        """The StylizeConfig fields the app's value of this setting sets."""
        assert self.app is not None
        engine_value = self.app.kind.engine(value)
        return self.app.config(engine_value) if self.app.config else {self.name: engine_value}
