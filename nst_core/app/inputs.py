"""The input column, generated from the settings table: a widget per /compare parameter, laid out by
each entry's ``Control.place`` (section, row), then Run and Cancel.

One slider per line: side by side their labels wrap and crowd the number boxes. Number boxes get no
minimum or maximum: the validator checks them with a message naming the setting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import gradio as gr

from nst_core.workflows.compare import DEFAULT_PRUNED, CompareSettings
from nst_core.workflows.setting_types import Setting
from nst_core.workflows.settings import APP_PARAMETERS, APP_SETTINGS

#: The column's sections, top to bottom, by the names the table places widgets in: each one's
#: accordion (title, open at first), or None for widgets at the top, outside any accordion.
SECTIONS: dict[str, tuple[str, bool] | None] = {
    "images": None,
    "settings": ("Settings", True),
    "style": ("Style controls", False),
    "pruned": ("Pruned network", True),
}
#: The Gradio component of each ``Control.widget``.
WIDGETS: dict[str, type[gr.components.Component]] = {
    "image": gr.Image,
    "file": gr.File,
    "slider": gr.Slider,
    "number": gr.Number,
    "radio": gr.Radio,
    "checkbox": gr.Checkbox,
    "textbox": gr.Textbox,
    "dropdown": gr.Dropdown,
}


@dataclass(frozen=True)
class InputColumn:
    """The left column: the images, the settings and the pruned network to compare with, Run and Cancel."""

    parameters: dict[str, gr.components.Component]  # the widget of each /compare parameter, in the endpoint's order
    style_gallery: gr.Gallery
    run: gr.Button
    cancel: gr.Button


def build_input_column(
    defaults: CompareSettings, choices: list[tuple[str, str]], default_pruned: str = DEFAULT_PRUNED
) -> InputColumn:
    """Lay out the input column inside the current ``gr.Row``, each setting at its value in ``defaults`` (whose
    ``max_size`` ends the size slider); ``choices`` fill the pruned-network dropdown."""
    values = {s.parameter: getattr(defaults, s.parameter) for s in APP_SETTINGS} | {"pruned_choice": default_pruned}
    limits = {"max_size": defaults.max_size}
    extra = {"pruned_choice": {"choices": choices}}
    widgets = {}
    with gr.Column(scale=2, min_width=400):
        for section, accordion in SECTIONS.items():
            with gr.Accordion(accordion[0], open=accordion[1]) if accordion else contextlib.nullcontext():
                for row in _rows(section):
                    with gr.Row() if len(row) > 1 else contextlib.nullcontext():
                        for s in row:
                            props = extra.get(s.parameter, {})
                            widgets[s.parameter] = widget(s, values.get(s.parameter), limits, props)
            if section == "images":
                style_gallery = gr.Gallery(label="Styles", columns=4, height=110, interactive=False, show_label=False)
        with gr.Row():
            run = gr.Button("Run dense and pruned", variant="primary", elem_id="run")
            cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
    return InputColumn({s.parameter: widgets[s.parameter] for s in APP_PARAMETERS}, style_gallery, run, cancel)


def _rows(section: str) -> list[list[Setting]]:
    """The settings placed in ``section``, grouped by row, top to bottom (the table's order within a row)."""
    places = {s.parameter: s.app.place for s in APP_PARAMETERS if s.app}
    if unplaced := [name for name, (where, _) in places.items() if where not in SECTIONS]:
        raise ValueError(f"{', '.join(unplaced)}: placed in no section of the input column ({', '.join(SECTIONS)})")
    placed = sorted((s for s in APP_PARAMETERS if places[s.parameter][0] == section), key=lambda s: places[s.parameter])
    return [list(row) for _, row in groupby(placed, key=lambda s: places[s.parameter][1])]


def widget(
    setting: Setting, value: object, limits: Mapping[str, Any], props: Mapping[str, Any] | None = None
) -> gr.components.Component:
    """The widget of one setting: its table entry's component and keyword arguments, a slider's range (a
    bound that names a server limit is read from ``limits``), a radio's choices, and ``value`` when set."""
    control = setting.app
    assert control is not None
    kwargs: dict[str, Any] = {**control.props, **(props or {})}
    if control.widget == "slider" and control.bounds is not None:
        kwargs["minimum"], kwargs["maximum"] = (limits[b] if isinstance(b, str) else b for b in control.bounds)
    if control.widget == "radio" and control.choices is not None:
        choices = control.choices
        kwargs["choices"] = [(label, v) for v, label in choices.items()] if isinstance(choices, Mapping) else [*choices]
    if value is not None:
        kwargs["value"] = value
    return WIDGETS[control.widget](**kwargs)
