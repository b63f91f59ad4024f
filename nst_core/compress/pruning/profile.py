"""Pruning profiles: a method plus how much of each conv to prune, named or read from a JSON file.

A :class:`Profile` is what a scan selects, what a budget chooses, what ``nst prune`` applies and
what fine-tuning and the app read. It says how much to prune in one of three ways:

- ``sparsity`` per conv (both methods): the fraction of weights zeroed ("fine") or of output
  filters removed ("structured");
- ``widths`` per conv (structured only): exact output widths, what a width budget chooses;
- ``global_sparsity`` (fine only): one magnitude threshold over all convs that zeroes this
  fraction of their weights together.

>>> load_profile("seed").sparsity["conv1_2"]
0.9
>>> Profile("structured", {}, widths={"conv1_2": 24}).widths
{'conv1_2': 24}
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from nst_core.core.errors import UserError
from nst_core.core.files import atomic_write_text
from nst_core.core.validation import Fields, check_integer, check_number, read_json_file, shown
from nst_core.model.layers import CONV_NAMES, DENSE_WIDTHS
from nst_core.model.vgg import VGGFeatures

PROFILE_FORMAT = "nst-profile/1"
METHODS = ("fine", "structured")

#: Named per-layer sparsity profiles (fraction of weights zeroed for "fine").
#: "seed" is the profile the seed notebook settled on: 20,024,384 conv weights -> ~3.02M nonzeros.
PROFILES: dict[str, dict[str, float]] = {
    "seed": dict(
        zip(
            CONV_NAMES,
            (0.0, 0.9, 0.6, 0.6, 0.9, 0.8, 0.8, 0.7, 0.8, 0.8, 0.8, 0.9, 0.9, 0.9, 0.9, 0.85),
        )
    ),
}


class ProfileError(UserError):
    """A pruning profile or sparsity specification is malformed."""


@dataclass
class Profile:
    """How to prune: ``method`` ("fine" | "structured") and per-conv ``sparsity``.

    For "fine" a value is the fraction of weights zeroed; for "structured" the fraction of
    output filters removed. Instead of ``sparsity`` (left empty then), a structured profile may
    give exact ``widths`` and a fine one a ``global_sparsity`` (see the module docstring).
    ``source`` says where the numbers came from (a named profile, a scan and its tolerance,
    ...), for metadata and model cards.
    """

    method: str
    sparsity: dict[str, float]
    source: dict = field(default_factory=dict)
    widths: dict[str, int] | None = None
    global_sparsity: float | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ProfileError(f"unknown pruning method {self.method!r}; choose from {', '.join(METHODS)}")
        self.sparsity = _validate_sparsity(self.sparsity, self.method)
        if self.widths is not None:
            self.widths = self._checked_widths(self.widths)
        if self.global_sparsity is not None:
            self.global_sparsity = self._checked_global(self.global_sparsity)

    def _checked_widths(self, widths: dict[str, int]) -> dict[str, int]:
        if self.method != "structured":
            raise ProfileError("widths are kept output filters: they need the structured method")
        if self.sparsity:
            raise ProfileError("give either per-conv sparsity or widths, not both")
        out = {}
        for name, width in widths.items():
            if name not in DENSE_WIDTHS:
                raise ProfileError(f"unknown conv layer {shown(name)} in widths; valid names: {', '.join(CONV_NAMES)}")

            def refuse(problem: str, name=name) -> NoReturn:
                raise ProfileError(f"width of {name} {problem}")

            out[name] = check_integer(width, refuse, 1, DENSE_WIDTHS[name])
        return {name: out[name] for name in CONV_NAMES if name in out}

    def _checked_global(self, value: float) -> float:
        if self.method != "fine":
            raise ProfileError(
                "a global sparsity is one magnitude threshold over all weights: it needs the fine method"
            )
        if self.sparsity or self.widths is not None:
            raise ProfileError("give either per-conv sparsity or one global sparsity, not both")

        def refuse(problem: str) -> NoReturn:
            raise ProfileError(f"global sparsity {problem}")

        return check_number(value, refuse, 0.0, 1.0)

    @classmethod
    def uniform(cls, method: str, layers: Iterable[str], fraction: float, source: dict | None = None) -> Profile:
        """The same ``fraction`` for every conv in ``layers`` (e.g. ``model.conv_names``).

        >>> Profile.uniform("structured", ["conv1_1", "conv1_2"], 0.5).sparsity
        {'conv1_1': 0.5, 'conv1_2': 0.5}
        """
        return cls(method, {name: fraction for name in layers}, dict(source or {}))

    def to_dict(self) -> dict:
        """The JSON object ``save_profile`` writes (``widths`` and ``global_sparsity`` only when set)."""
        data: dict[str, Any] = {
            "format": PROFILE_FORMAT,
            "method": self.method,
            "sparsity": dict(self.sparsity),
            "source": dict(self.source),
        }
        if self.widths is not None:
            data["widths"] = dict(self.widths)
        if self.global_sparsity is not None:
            data["global_sparsity"] = self.global_sparsity
        return data

    @classmethod
    def from_dict(cls, data: dict, origin: str = "profile") -> Profile:
        """A profile from its JSON object; errors name ``origin`` (e.g. the file it came from) and the field."""
        fields = Fields(data, origin, ProfileError)
        found = fields.get("format", None)
        if found != PROFILE_FORMAT:
            fields.fail("format", f"is {shown(found)}, expected {PROFILE_FORMAT!r}")
        method = fields.string("method", METHODS)
        sparsity = fields.mapping("sparsity")
        source = fields.mapping("source", {})
        widths = fields.mapping("widths") if fields.has("widths") else None
        global_sparsity = fields.number("global_sparsity") if fields.has("global_sparsity") else None
        try:
            sparsity = _validate_sparsity(sparsity, method)
        except ProfileError as exc:
            raise ProfileError(f"{origin}: field 'sparsity': {exc}") from None
        try:
            return cls(method, sparsity, dict(source), widths, global_sparsity)
        except ProfileError as exc:
            raise ProfileError(f"{origin}: {exc}") from None


def _validate_sparsity(sparsity: dict, method: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in sparsity.items():
        if name not in DENSE_WIDTHS:
            raise ProfileError(f"unknown conv layer {shown(name)} in sparsity; valid names: {', '.join(CONV_NAMES)}")

        def refuse(problem: str, name=name) -> NoReturn:
            raise ProfileError(f"sparsity of {name} {problem}")

        value = check_number(value, refuse, 0.0, 1.0)
        if value == 1.0 and method != "fine":
            refuse("is 1.0; it must be in [0, 1): structured pruning keeps at least one filter")
        out[name] = value
    # Keep network order whatever order the user wrote.
    return {name: out[name] for name in CONV_NAMES if name in out}


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    """A named profile (see :data:`PROFILES`) or a profile JSON file.

    >>> load_profile("seed").sparsity["conv1_2"]
    0.9
    """
    key = str(name_or_path)
    if key in PROFILES:
        return Profile("fine", dict(PROFILES[key]), {"profile": key})
    path = Path(key)
    if not path.exists():
        raise ProfileError(f"no profile named {shown(key)} and no such file; named profiles: {', '.join(PROFILES)}")
    return Profile.from_dict(read_json_file(path, "a profile", ProfileError), origin=str(path))


def save_profile(profile: Profile, path: str | os.PathLike) -> None:
    """Write ``profile`` as JSON (format ``nst-profile/1``), atomically."""
    atomic_write_text(path, json.dumps(profile.to_dict(), indent=2) + "\n")


def resolve_sparsity(model: VGGFeatures, sparsity: dict | float | str, method: str = "fine") -> dict[str, float]:
    """Per-conv sparsity for the convs this network has.

    A float applies to every conv; a str names a profile (or a profile file); a dict
    lists layers (absent ones stay dense). Layers past ``model.last_layer`` are dropped:
    they are not part of a truncated network.
    """
    if isinstance(sparsity, str):
        sparsity = load_profile(sparsity).sparsity
    if isinstance(sparsity, (int, float)) and not isinstance(sparsity, bool):
        sparsity = {name: float(sparsity) for name in model.conv_names}
    if not isinstance(sparsity, dict):
        raise ProfileError(f"sparsity must be a dict, a number or a profile name, not {type(sparsity).__name__}")
    checked = _validate_sparsity(sparsity, method)
    present = set(model.conv_names)
    return {name: value for name, value in checked.items() if name in present}
