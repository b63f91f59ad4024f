"""The settings of one comparison, generated from the settings table: ``CompareSettings``, its
defaults, its validator, and the one ``StylizeConfig`` both runs use.

``CompareSettings`` has a field per app setting of :mod:`nst_core.workflows.settings` (its
``Control.setting``), plus the server's limits. A widget's value (or an API call's) becomes a
setting through :func:`settings_from_values`, which names the first bad one; the app's validator
names every bad one at once with :func:`setting_problems`.

>>> s = default_settings(gpu=False)
>>> (s.size, s.time_budget)
(256, 20.0)
>>> validate_settings(s)
>>> setting_problems({"size": 4096, "seed": "x"})
{'size': 'size must be between 64 and 1024, not 4096', 'seed': "seed must be a whole number, not 'x'"}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, make_dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from nst_core.core.devices import resolve_device
from nst_core.core.errors import UserError
from nst_core.nst.stylize import StylizeConfig
from nst_core.workflows.setting_types import WHOLE, Setting
from nst_core.workflows.settings import APP_SETTINGS, PRESET, SIZE_RANGE

#: The CPU default's time per picture (see default_settings).
CPU_SECONDS_PER_PICTURE = 20.0
#: The settings a value alone decides (the others are uploads, checked as files).
VALUE_SETTINGS = tuple(s.parameter for s in APP_SETTINGS if s.app and s.app.widget not in ("image", "file"))
#: What the server decides for every request (not a person's settings), after the table's fields.
SERVER_LIMITS = (
    ("max_size", int, SIZE_RANGE[1]),  # the largest size a request may ask for
    ("max_memory", int | None, None),  # each run's memory budget, bytes (tiles above it; None: no budget)
)


class _CompareSettingsMethods:
    """What CompareSettings has besides its generated fields."""

    if TYPE_CHECKING:  # for the type checker: the fields are generated from the table, so they read as Any

        def __init__(self, **values: Any) -> None: ...

        def __getattr__(self, name: str) -> Any: ...

        __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_config(self, preview_every: int = 0) -> StylizeConfig:
        """The one config both runs use: the preset, a content init, and each setting's StylizeConfig fields."""
        fields: dict[str, Any] = {}
        for setting in APP_SETTINGS:
            fields |= setting.engine_fields(getattr(self, setting.parameter))
        return StylizeConfig(
            preset=PRESET, init="content", preview_every=preview_every, max_memory=self.max_memory, **fields
        )


def _field(setting: Setting) -> tuple[str, Any, Any]:
    assert setting.app is not None
    return setting.parameter, setting.app.kind.type, field(default=setting.app.default)


if TYPE_CHECKING:
    CompareSettings = _CompareSettingsMethods
else:
    #: What a person sets in the app (one field per app setting of the table), and the server's limits.
    CompareSettings = make_dataclass(
        "CompareSettings",
        [_field(s) for s in APP_SETTINGS]
        + [(name, kind, field(default=default)) for name, kind, default in SERVER_LIMITS],
        bases=(_CompareSettingsMethods,),
        frozen=True,
    )
    CompareSettings.__module__ = __name__  # where pickle finds it (ZeroGPU sends settings to another process)
    CompareSettings.__doc__ = "What a person sets in the app; turned into one StylizeConfig shared by both runs."


def default_settings(gpu: bool | None = None) -> CompareSettings:
    """On a CPU: 256 px planned to 20 s per picture, so one click (dense + pruned) takes under a minute on
    2 cores; on a GPU: full quality (512 px, the seed's Adam for 300 iterations).

    The CPU default is a time budget, not an iteration count, because the plan buys the most quality
    for the wait: at 256 px, 20 s (about 40 full-size iterations on the 2-core build machine) of
    single-scale L-BFGS from the palette start is judged about 1.2x the 500-iteration Adam reference's
    loss on the trained VGG-16 (``time_to_quality.json``, coffee), where 44 Adam iterations from the photo
    are 2.5x (``bench/bench_levers.py``); the pruned network spends the same seconds on more iterations.
    ``iterations`` stays the count a person gets by setting the time to 0.
    """
    if gpu is None:
        gpu = resolve_device("auto").type != "cpu"
    if gpu:
        return CompareSettings(size=512, iterations=300)
    return CompareSettings(size=256, iterations=40, time_budget=CPU_SECONDS_PER_PICTURE)


def validate_settings(s: CompareSettings) -> None:
    """Raise a UserError naming the first setting (in the table's order) that is out of range."""
    for setting in APP_SETTINGS:
        assert setting.app is not None
        setting.app.check_value(getattr(s, setting.parameter), setting.parameter, s)
    whole = [setting.parameter for setting in APP_SETTINGS if setting.app and setting.app.kind is WHOLE]
    if any(int(getattr(s, name)) != getattr(s, name) for name in whole):
        raise UserError(f"{', '.join(whole[:-1])} and {whole[-1]} must be whole numbers")


def settings_from_values(values: Mapping[str, object], **limits: Any) -> CompareSettings:
    """The settings widgets' values (or an API call's) -> checked ``CompareSettings``; a UserError names the
    first bad one. Uploads are paths by now; ``limits`` are the server's (``max_size``, ``max_memory``)."""
    read = {}
    for setting in APP_SETTINGS:
        assert setting.app is not None
        name = setting.parameter
        read[name] = setting.app.read(values.get(name, setting.app.default), name)
    settings = CompareSettings(**read, **limits)
    validate_settings(settings)
    return settings


def setting_problems(values: Mapping[str, object], max_size: int = SIZE_RANGE[1]) -> dict[str, str]:
    """Each value setting's problem, keyed by its parameter name: each value is judged alone (the others
    at their defaults), so every bad one is named at once."""
    problems = {}
    for name in VALUE_SETTINGS:
        try:
            settings_from_values({name: values[name]} if name in values else {}, max_size=max_size)
        except UserError as exc:
            problems[name] = str(exc)
    return problems
