"""The /compare endpoint's API, generated from the settings table: the handler's signature and docstring,
and the same descriptions on its components.

Gradio names an endpoint's parameters after its handler's signature (a default of None makes one
optional); its MCP server reads the docstring's Args and Returns sections (one ``name: description``
line each: its parser reads one line per parameter); gradio_client reads the components' API info,
which :func:`document_endpoint` fills from the same docstring, so all three say the same.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import gradio as gr
from gradio.utils import get_function_description

from nst_core.model.layers import get_architecture
from nst_core.workflows.compare import DenseNetwork
from nst_core.workflows.setting_types import Setting
from nst_core.workflows.settings import APP_PARAMETERS

Handler = TypeVar("Handler", bound=Callable[..., Any])


def endpoint_signature(parameters: Sequence[Setting] = APP_PARAMETERS) -> inspect.Signature:
    """``(self, request, *, content, styles, size, ...)``: a method's signature with Gradio's request first,
    then one keyword-only parameter per app setting, in the table's order, defaulting where the setting is
    optional. Keyword-only: Gradio then passes each value by name (``inputs_kwargs``), never by position."""
    positional = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in ("self", "request")]
    positional[1] = positional[1].replace(annotation=gr.Request)
    keywords = [
        inspect.Parameter(
            s.parameter,
            inspect.Parameter.KEYWORD_ONLY,
            default=s.app.default if s.app and s.app.optional else inspect.Parameter.empty,
        )
        for s in parameters
    ]
    return inspect.Signature(positional + keywords)


def endpoint_docstring(summary: str, parameters: Sequence[Setting], returns: Mapping[str, str]) -> str:
    """The handler's docstring: ``summary``, then an Args line per parameter (its ``Control.doc``, "Optional."
    first for an optional one) and a Returns line per output."""
    controls = [(s.parameter, s.app) for s in parameters if s.app]
    args = [f"    {name}: {'Optional. ' if app.optional else ''}{app.doc}" for name, app in controls]
    outputs = [f"    {name}: {text}" for name, text in returns.items()]
    return "\n".join([summary, "", "Args:", *args, "", "Returns:", *outputs])


def api_endpoint(summary: str, returns: Mapping[str, str]) -> Callable[[Handler], Handler]:
    """Give a handler method (``def run(self, request, **values)``) the endpoint's generated signature and
    docstring; the function itself is unchanged (Gradio must still see a generator function)."""

    def document(handler: Handler) -> Handler:
        handler.__signature__ = endpoint_signature()  # type: ignore[attr-defined]
        handler.__doc__ = endpoint_docstring(summary, APP_PARAMETERS, returns)
        return handler

    return document


def endpoint_values(values: Mapping[str, object]) -> dict[str, object]:
    """An endpoint call's values, each optional one it left out at its default; a TypeError for a missing or
    an unknown one, as Python gives for a written-out signature."""
    bound = endpoint_signature().bind(None, None, **values)
    bound.apply_defaults()
    return {name: value for name, value in bound.arguments.items() if name not in ("self", "request")}


def describe_in_api(component: gr.components.Component, description: str, as_input: bool) -> None:
    """Make ``component``'s API info (what gradio_client's ``view_api`` and the API page show for a
    parameter or a returned value) carry ``description``. Patched on the instance (a subclass would
    make Gradio write a ``.pyi`` stub beside its module); Gradio reads these methods when it
    builds the app's config."""
    if as_input:
        stock_input = component.api_info_as_input
        component.api_info_as_input = lambda: {**stock_input(), "additional_description": description}  # type: ignore[method-assign]
    else:
        stock_output = component.api_info_as_output
        component.api_info_as_output = lambda: {**stock_output(), "description": description}  # type: ignore[method-assign]


def document_endpoint(
    handler: Callable, inputs: dict[str, gr.components.Component], outputs: dict[str, gr.components.Component]
) -> None:
    """Give the components of ``handler``'s endpoint the descriptions of its docstring (a parameter or output
    the docstring leaves out is a bug, reported when the app is built)."""
    _, parameters, returns = get_function_description(handler)
    returned = dict(line.split(": ", 1) for line in returns if ": " in line)
    for described, components, as_input in ((parameters, inputs, True), (returned, outputs, False)):
        for name, component in components.items():
            if not described.get(name):
                raise ValueError(f"{handler.__qualname__}'s docstring does not describe {name!r}")
            describe_in_api(component, described[name], as_input)


def tool_description(handler: Callable, dense: DenseNetwork, time_limit: float) -> str:
    """/compare's description for the API page and MCP clients: the docstring's summary, plus
    which weights this server runs and its time limit (what a caller cannot see otherwise)."""
    summary = get_function_description(handler)[0]
    weights = f"{get_architecture(dense.model.arch).title} weights: {dense.model.weight_source}" + (
        " (random: results are not meaningful)" if dense.random else ""
    )
    return f"{summary} {weights}. Each call is stopped after {time_limit:g} s."
