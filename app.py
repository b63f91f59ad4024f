"""Gradio app: dense vs pruned VGG-19 style transfer, side by side.

Thin on purpose: it builds the interface and turns events from ``nst_core.workflows.compare`` into
widget updates; every computation lives in ``nst_core``.

    python app.py                                   # http://127.0.0.1:7860, Caffe VGG-19 weights
    python app.py --weights random --port 7861      # no weights needed (results not meaningful)
    python app.py --pruned runs/seed.safetensors    # offer a local checkpoint in the dropdown
    python app.py --release hf:OWNER/NAME           # a released checkpoint, compared against by default

Flags fall back to NST_HOST / NST_PORT / NST_WEIGHTS, then GRADIO_SERVER_NAME /
GRADIO_SERVER_PORT (what a Hugging Face Space sets), then the defaults above.

On a Space (``SPACE_ID`` set) the app refuses to serve random weights: it shows an error page
instead, unless ``NST_ALLOW_RANDOM=1``. On ZeroGPU (``SPACES_ZERO_GPU`` set) the start-up work
stays on the CPU and CUDA is used only inside the ``spaces.GPU`` function.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import logging
import os
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path

import gradio as gr
import torch
from gradio.processing_utils import save_pil_to_cache
from gradio.utils import get_function_description

from nst_core.core.devices import DEVICE_CHOICES, resolve_device
from nst_core.core.errors import UserError
from nst_core.image.io import find_images
from nst_core.model.weights import RandomWeightsWarning
from nst_core.nst.cost import iteration_macs
from nst_core.workflows import compare

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
EXAMPLE_CONTENT, EXAMPLE_STYLE = EXAMPLES / "content", EXAMPLES / "style"
log = logging.getLogger("nst.app")
#: How long uploads and results stay on the server: long enough to download a result, short
#: enough that a public Space's disk does not fill up.
KEEP_FILES_S = 3600
#: How long one comparison may run before it is stopped, so one huge job cannot hold the only
#: worker for hours (a 1024 px, 1000-iteration CPU run would). Gradio's own ``time_limit`` applies
#: only to streaming events (``.stream()``, Gradio 6.31), so the run's cancel flag enforces it.
TIME_LIMIT_S = 300
#: Set by Hugging Face on every Space; there random weights are refused unless NST_ALLOW_RANDOM=1.
SPACE_ENV, ALLOW_RANDOM_ENV = "SPACE_ID", "NST_ALLOW_RANDOM"
#: Set by Hugging Face on a ZeroGPU Space: CUDA work is allowed only inside ``spaces.GPU`` functions.
ZERO_GPU_ENV = "SPACES_ZERO_GPU"
# What a ZeroGPU request asks for (spaces.GPU's duration): an estimate, not measured here (no GPU
# on the build machine): fixed costs (copying the networks to the GPU, CUDA start, the judge) plus
# the conv MACs of both runs at an assumed, deliberately low fp32 throughput of a ZeroGPU slice.
GPU_FIXED_S = 20
GPU_MACS_PER_S = 5e12


CSS = """
#weights-banner { border: 2px solid #d97706; background: #fef3c7; color: #78350f; border-radius: 8px; padding: 4px 12px; }
#weights-banner * { color: #78350f; }
"""


def upload_path(payload: dict | None) -> str | None:
    """An upload as the run event receives it (``preprocess=False``: Gradio's file data, already
    moved into its cache and checked to come from its upload folder) -> the file's path, unopened.

    Stock ``gr.Image`` preprocessing opens uploads with PIL before the handler runs, so a file
    that is not an image fails inside Gradio with an internal message; stock ``gr.File`` leaves
    an empty temporary file in Gradio's cache for every file, which ``delete_cache`` never
    removes (Gradio 6.31). Unpreprocessed, ``nst_core`` checks each file and the person reads an
    error that names it.
    """
    if not payload:
        return None
    path = payload.get("path") if isinstance(payload, dict) else None
    if not path:
        raise UserError("an upload arrived without a file; upload it as a file")
    return str(path)


def upload_paths(payload: list[dict] | None) -> list[str] | None:
    """Several uploads (``file_count="multiple"``) -> their paths (see :func:`upload_path`)."""
    if payload is None:
        return None
    return [path for path in map(upload_path, payload) if path]


def zero_gpu(duration: Callable[..., int]):
    """``spaces.GPU`` on a ZeroGPU Space; a no-op decorator everywhere else (package absent).

    ``duration`` is called with the decorated function's arguments and returns the seconds to
    ask for (spaces' dynamic duration), so a small job does not reserve a GPU for long.
    """
    try:
        import spaces  # only installed on Hugging Face Spaces, so imported here and optional
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def on_zero_gpu() -> bool:
    """Whether this process runs on a ZeroGPU Space (where CUDA exists only inside ``spaces.GPU``)."""
    return os.environ.get(ZERO_GPU_ENV, "").strip().lower() in ("1", "true", "yes")


def random_weights_refusal(dense: compare.DenseNetwork) -> str | None:
    """Why a Space must not serve this network, as the page's Markdown (None when it may).

    A public Space showing results of random weights would look like a broken style transfer:
    with ``SPACE_ID`` set (every Space) random weights are refused unless ``NST_ALLOW_RANDOM=1``.
    """
    env = os.environ.get
    if not dense.random or not env(SPACE_ENV) or env(ALLOW_RANDOM_ENV, "").strip() == "1":
        return None
    why = (
        f"the weights `{dense.requested}` could not be loaded ({dense.fallback_reason})"
        if dense.fallback_reason
        else f"it was started with random weights (`{dense.requested}`)"
    )
    return (
        "# This Space has no VGG-19 weights\n"
        f"**It serves no results:** {why}, and results of random weights would mean nothing.\n\n"
        "To fix it (Space settings): set the variable `NST_WEIGHTS` to a weights file on the Hub, e.g."
        " `hf:OWNER/vgg19-caffe:vgg19-caffe.safetensors`, list the same repo under `preload_from_hub` in the"
        " Space's README so it is downloaded at build time, and restart the Space. To demonstrate the pipeline"
        f" with random weights anyway, set `{ALLOW_RANDOM_ENV}=1` (every page then says the results are not meaningful)."
    )


def build_refusal_app(message: str) -> gr.Blocks:
    """The page a Space shows instead of the app when it would serve random weights: no endpoints."""
    with gr.Blocks(title="Pruned VGG-19 style transfer: no weights") as demo:
        gr.Markdown(message, elem_id="refusal")
    return demo


class CancelRegistry:
    """One cancel flag per browser session, so the cancel button stops that session's run.

    Gradio's own ``cancels=`` stops delivering updates, but a sync generator it stops is
    not always closed promptly; the flag makes the optimisation loop itself stop.
    """

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def new(self, session: str) -> threading.Event:
        with self._lock:
            self._events[session] = event = threading.Event()
            return event

    def finish(self, session: str, event: threading.Event) -> None:
        """Forget a finished run's flag (unless a newer run of the session replaced it)."""
        with self._lock:
            if self._events.get(session) is event:
                del self._events[session]

    def cancel(self, session: str) -> bool:
        with self._lock:
            event = self._events.pop(session, None)
        if event is not None:
            event.set()
        return event is not None


CANCELS = CancelRegistry()


def example_rows() -> list[list]:
    """[content, [style]] pairs from examples/content and examples/style (whatever is bundled)."""

    def images(folder: Path) -> list[str]:
        return [str(p) for p in find_images(folder, recursive=False)]

    contents, styles = images(EXAMPLE_CONTENT), images(EXAMPLE_STYLE)
    if not contents or not styles:
        return []
    count = max(len(contents), len(styles))
    return [[contents[i % len(contents)], [styles[i % len(styles)]]] for i in range(count)]


def _status(text: str) -> str:
    return f"**Status:** {text}"


def _int(value: object, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a whole number, not {value!r}") from None


def _float(value: object, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number, not {value!r}") from None


# --- the input column ----------------------------------------------------------------------------


def _weights(text: object) -> tuple[float, ...] | None:
    """ "1, 2" -> (1.0, 2.0); empty -> None (equal weights)."""
    parts = [p for p in str(text or "").replace(",", " ").split() if p]
    return tuple(_float(p, "style weights") for p in parts) or None


def checked_settings(
    size: object,
    iterations: object,
    optimizer: str,
    style_strength: object,
    tv_weight: object,
    seed: object,
    preserve_color: object,
    style_scale: object = 1.0,
    style_weights: object = None,
    color: object = "none",
    mask: str | None = None,
    style_masks: list[str] | None = None,
    max_size: int = compare.SIZE_RANGE[1],
    max_memory: int | None = None,
) -> compare.CompareSettings:
    """The settings widgets' values -> checked ``CompareSettings`` (a UserError names a bad one);
    ``mask`` and ``style_masks`` are upload paths, ``max_size`` and ``max_memory`` the server's limits."""
    settings = compare.CompareSettings(
        size=_int(size, "size"),
        iterations=_int(iterations, "iterations"),
        optimizer=optimizer,
        style_strength=_float(style_strength, "style strength"),
        tv_weight=_float(tv_weight, "TV weight"),
        seed=_int(seed, "seed"),
        preserve_color=bool(preserve_color),
        style_scale=_float(style_scale, "style scale"),
        style_weights=_weights(style_weights),
        color=str(color or "none"),
        mask=mask or None,
        style_masks=tuple(style_masks) if style_masks else None,
        max_size=max_size,
        max_memory=max_memory,
    )
    compare.validate_settings(settings)
    return settings


@dataclass(frozen=True)
class InputColumn:
    """The left column: images, settings, the pruned network to compare with, Run and Cancel."""

    content: gr.Image
    styles: gr.File
    style_gallery: gr.Gallery
    size: gr.Slider
    iterations: gr.Slider
    optimizer: gr.Radio
    preserve_color: gr.Checkbox
    style_strength: gr.Slider
    tv_weight: gr.Number
    seed: gr.Number
    pruned_choice: gr.Dropdown
    pruned_upload: gr.File
    hub_repo: gr.Textbox
    style_scale: gr.Slider
    style_weights: gr.Textbox
    color: gr.Radio
    mask: gr.Image
    style_masks: gr.File
    run: gr.Button
    cancel: gr.Button

    def parameters_of(self, handler: Callable) -> dict[str, gr.components.Component]:
        """The components that fill ``handler``'s parameters, keyed by parameter name, in the
        signature's order (Gradio passes them as keyword arguments; the order is the API's)."""
        names = [name for name in inspect.signature(handler).parameters if name != "request"]
        return {name: getattr(self, name) for name in names}


def build_input_column(
    defaults: compare.CompareSettings, choices: list[tuple[str, str]], default_pruned: str = compare.DEFAULT_PRUNED
) -> InputColumn:
    """Lay out the input column inside the current ``gr.Row``; ``choices`` fill the pruned-network dropdown."""
    with gr.Column(scale=2, min_width=400):
        content = gr.Image(
            label="Content image", type="filepath", sources=["upload", "clipboard"], height=240, elem_id="content"
        )
        styles = gr.File(
            label=f"Style images (up to {compare.MAX_STYLES}, blended by the style weights under Style controls)",
            file_count="multiple",
            file_types=["image"],
            type="filepath",
            elem_id="style-files",
        )
        style_gallery = gr.Gallery(label="Styles", columns=4, height=110, interactive=False, show_label=False)
        # One slider per line: side by side their labels wrap and crowd the number boxes.
        with gr.Accordion("Settings", open=True):
            size = gr.Slider(
                compare.SIZE_RANGE[0],
                defaults.max_size,
                value=defaults.size,
                step=16,
                label="Size (longer side, px)",
                elem_id="size",
            )
            iterations = gr.Slider(
                *compare.ITERATIONS_RANGE, value=defaults.iterations, step=1, label="Iterations", elem_id="iterations"
            )
            style_strength = gr.Slider(
                *compare.STYLE_STRENGTH_RANGE,
                value=defaults.style_strength,
                step=0.1,
                label="Style strength (x preset)",
            )
            with gr.Row():
                optimizer = gr.Radio(list(compare.OPTIMIZERS), value=defaults.optimizer, label="Optimizer")
                preserve_color = gr.Checkbox(value=defaults.preserve_color, label="Keep the content's colours")
            with gr.Row():
                # No minimum/maximum here: compare.validate_settings checks them with a message naming the setting.
                tv_weight = gr.Number(value=defaults.tv_weight, label="TV weight (0 to 1)", info="smoothness")
                seed = gr.Number(value=defaults.seed, precision=0, label="Seed", info="both runs start from it")
        with gr.Accordion("Style controls", open=False):
            style_scale = gr.Slider(
                *compare.STYLE_SCALE_RANGE,
                value=defaults.style_scale,
                step=0.05,
                label="Style scale (brush-stroke size)",
                elem_id="style-scale",
            )
            style_weights = gr.Textbox(
                label="Style weights, one per style image (e.g. 1, 2; empty: equal)",
                max_lines=1,
                elem_id="style-weights",
            )
            color = gr.Radio(
                [("style's colours", "none"), ("content's palette (histogram matching)", "histogram")],
                value=defaults.color,
                label="Colours",
                elem_id="color",
            )
            mask = gr.Image(
                label="Content mask (white: stylize, black: keep the content)",
                type="filepath",
                sources=["upload", "clipboard"],
                image_mode="L",
                height=140,
                elem_id="mask",
            )
            style_masks = gr.File(
                label="Style masks: one per style image, in the same order (where each style goes)",
                file_count="multiple",
                file_types=["image"],
                type="filepath",
                elem_id="style-masks",
            )
        with gr.Accordion("Pruned network", open=True):
            pruned_choice = gr.Dropdown(
                choices, value=default_pruned, label="Compare the dense network with", elem_id="pruned-choice"
            )
            pruned_upload = gr.File(
                label="Or upload a profile (.json) or checkpoint (.safetensors)",
                file_types=[".json", ".safetensors"],
                type="filepath",
                elem_id="pruned-upload",
            )
            hub_repo = gr.Textbox(
                label="Or a pruned checkpoint on the Hugging Face Hub",
                placeholder="OWNER/NAME[:FILE][@REVISION]",
                max_lines=1,
                elem_id="hub-repo",
            )
        with gr.Row():
            run = gr.Button("Run dense and pruned", variant="primary", elem_id="run")
            cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
    return InputColumn(
        content,
        styles,
        style_gallery,
        size,
        iterations,
        optimizer,
        preserve_color,
        style_strength,
        tv_weight,
        seed,
        pruned_choice,
        pruned_upload,
        hub_repo,
        style_scale,
        style_weights,
        color,
        mask,
        style_masks,
        run,
        cancel,
    )


# --- the output column ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputColumn:
    """The right column: status, live preview, the two results and the tables. Field order is
    the order of Run's outputs (the ``/compare`` API's return values)."""

    status: gr.Markdown
    preview: gr.Image
    slider: gr.ImageSlider
    dense_image: gr.Image
    pruned_image: gr.Image
    summary: gr.Dataframe
    layers: gr.Dataframe

    def named(self) -> dict[str, gr.components.Component]:
        """The outputs by field name (the names the handler's docstring describes them by)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def components(self) -> list[gr.components.Component]:
        return list(self.named().values())

    def cleared(self, message: str) -> dict:
        """A new run starts: every output emptied, the status says what is being prepared."""
        return {component: None for component in self.components()} | {self.status: _status(message)}

    def shown(self, message: str, preview: str | None, results: tuple | None = None) -> dict:
        """The status line, the latest preview (a file) and, once done, ``results``: the dense
        image, the pruned image, the summary rows and the layer rows.

        Every update sets every output that holds a file, if only to keep it as it is: the first
        time an update leaves an output out, Gradio (6.31) gives the session its own copy of that
        component, and the files written for the copy escape ``delete_cache``.
        """
        values = {
            self.status: _status(message),
            self.preview: preview,
            self.slider: None,
            self.dense_image: None,
            self.pruned_image: None,
        }
        if results is not None:
            dense_image, pruned_image, summary_rows, layer_rows = results
            values |= {
                self.slider: (dense_image, pruned_image),
                self.dense_image: dense_image,
                self.pruned_image: pruned_image,
                self.summary: summary_rows,
                self.layers: layer_rows,
            }
        return values


def build_output_column() -> OutputColumn:
    """Lay out the output column inside the current ``gr.Row``."""
    with gr.Column(scale=3):
        status = gr.Markdown(_status("ready."), label="Status", elem_id="status")
        preview = gr.Image(label="Live preview", format="png", interactive=False, height=200, elem_id="preview")
        slider = gr.ImageSlider(
            label="Dense (left) vs pruned (right)", format="png", interactive=False, elem_id="slider"
        )
        with gr.Row():
            dense_image = gr.Image(
                label="Dense result", format="png", interactive=False, buttons=["download", "fullscreen"]
            )
            pruned_image = gr.Image(
                label="Pruned result", format="png", interactive=False, buttons=["download", "fullscreen"]
            )
        # max_height "none": both tables are short (14 and at most 16 rows) and are read whole, not scrolled.
        summary = gr.Dataframe(
            headers=["", "dense", "pruned"],
            label="Timing, size and judged quality",
            interactive=False,
            elem_id="summary",
            wrap=True,
            column_widths=["40%", "30%", "30%"],
            max_height="none",
        )
        layers = gr.Dataframe(
            headers=["layer", "channels (pruned / dense)", "weights", "nonzeros", "fraction of dense weights removed"],
            label="Per-layer sparsity of the pruned network",
            interactive=False,
            elem_id="layers",
            max_height="none",
            wrap=True,
            column_widths=["12%", "24%", "18%", "18%", "28%"],
        )
    return OutputColumn(status, preview, slider, dense_image, pruned_image, summary, layers)


# --- running ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunLimits:
    """How each comparison runs: plain data, so it crosses ZeroGPU's process boundary."""

    time_limit: float = TIME_LIMIT_S  # seconds, then the run is stopped
    device: str = "auto"  # resolved inside the GPU function: on ZeroGPU CUDA exists only there


def gpu_seconds(
    dense: compare.DenseNetwork,
    content: str | None,
    styles: list[str] | None,
    settings: compare.CompareSettings,
    spec: str,
    cancel: threading.Event,
    limits: RunLimits,
) -> int:
    """The seconds of GPU a comparison asks ZeroGPU for (``spaces.GPU``'s dynamic duration; it is
    called with :func:`comparison_updates`' arguments): the fixed costs plus both runs' conv MACs
    at a square ``size`` (the most an image of that longer side costs), never more than the time
    limit allows (the run is stopped then)."""
    side = int(settings.size)
    work = (
        2 * int(settings.iterations) * iteration_macs(dense.model.widths, side, side)
    )  # dense + pruned (at most dense)
    return int(min(GPU_FIXED_S + work / GPU_MACS_PER_S, GPU_FIXED_S + limits.time_limit)) + 1


@zero_gpu(duration=gpu_seconds)
def comparison_updates(
    dense: compare.DenseNetwork,
    content: str | None,
    styles: list[str] | None,
    settings: compare.CompareSettings,
    spec: str,
    cancel: threading.Event,
    limits: RunLimits,
) -> Iterator[tuple]:
    """The comparison as plain data, so it can cross ZeroGPU's process boundary:
    ``("progress", message, preview or None)`` per step, then
    ``("done", headline, dense image, pruned image, summary rows, layer rows)``, or
    ``("stopped", message, None)`` when ``limits.time_limit`` ran out first."""
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        cancel.set()

    timer = threading.Timer(limits.time_limit, stop)
    timer.daemon = True
    timer.start()
    try:
        net = compare.resolve_pruned(spec, dense.model)  # where start-up put it (on ZeroGPU the CPU), cached
        model, net = compare.placed(dense.model, net, resolve_device(limits.device))
        for event in compare.run_comparison(model, net, content, styles, settings, cancel=cancel):
            if isinstance(event, compare.Comparison):
                headline = (
                    f"done: dense {event.dense_seconds:.1f} s, pruned {event.pruned_seconds:.1f} s "
                    f"({event.speedup:.2f}x), SSIM {event.judged['ssim']:.3f}."
                    + "".join(f"<br>Note: {n}" for n in net.notes)
                )
                yield (
                    "done",
                    headline,
                    event.dense.image,
                    event.pruned.image,
                    event.summary_rows(),
                    event.sparsity_rows(),
                )
            else:
                yield ("progress", event.message, event.progress.preview if event.progress else None)
    except compare.Cancelled:
        if not timed_out.is_set():
            raise
        yield (
            "stopped",
            f"stopped: the time limit of {limits.time_limit:g} s per comparison was reached. Try a smaller size or fewer iterations.",
            None,
        )
    finally:
        timer.cancel()


def describe_in_api(component: gr.components.Component, description: str, as_input: bool) -> None:
    """Make ``component``'s API info (what gradio_client's ``view_api`` and the API page show for a
    parameter or a returned value) carry ``description``. Patched on the instance (a subclass would
    make Gradio write an ``app.pyi`` stub beside this file); Gradio reads these methods when it
    builds the app's config."""
    if as_input:
        stock_input = component.api_info_as_input
        component.api_info_as_input = lambda: {**stock_input(), "additional_description": description}
    else:
        stock_output = component.api_info_as_output
        component.api_info_as_output = lambda: {**stock_output(), "description": description}


def document_endpoint(
    handler: Callable, inputs: dict[str, gr.components.Component], outputs: dict[str, gr.components.Component]
) -> None:
    """Give the components of ``handler``'s endpoint the descriptions of its docstring.

    Gradio's MCP server reads the Args and Returns sections itself (one ``name: description``
    line each); gradio_client reads the components' API info, so both say the same. A parameter
    or output the docstring leaves out is a bug, reported when the app is built.
    """
    _, parameters, returns = get_function_description(handler)
    returned = dict(line.split(": ", 1) for line in returns if ": " in line)
    for described, components, as_input in ((parameters, inputs, True), (returned, outputs, False)):
        for name, component in components.items():
            if not described.get(name):
                raise ValueError(f"{handler.__qualname__}'s docstring does not describe {name!r}")
            describe_in_api(component, described[name], as_input)


#: /compare's parameters that ``checked_settings`` judges by their value alone (uploads are files).
VALUE_SETTINGS = (
    "size",
    "iterations",
    "optimizer",
    "style_strength",
    "tv_weight",
    "seed",
    "preserve_color",
    "style_scale",
    "style_weights",
    "color",
)


def setting_problems(values: dict[str, object], max_size: int = compare.SIZE_RANGE[1]) -> dict[str, str]:
    """Each settings widget's problem, keyed by its parameter name: ``checked_settings`` judges
    each value alone, the others at their defaults, so every bad one is named at once."""
    stock = compare.CompareSettings()
    defaults = {name: getattr(stock, name) for name in VALUE_SETTINGS}
    problems = {}
    for name in defaults:
        try:
            checked_settings(**(defaults | {name: values.get(name, defaults[name])}), max_size=max_size)
        except UserError as exc:
            problems[name] = str(exc)
    return problems


@dataclass(frozen=True, eq=False)  # eq=False: hashable by identity (a DenseNetwork is not hashable)
class RunHandler:
    """What the Run button does, bound to the dense network and the outputs it fills."""

    dense: compare.DenseNetwork
    outputs: OutputColumn
    choices: tuple[str, ...] = ()  # the dropdown's specs: nothing else is taken from pruned_choice
    limits: RunLimits = RunLimits()
    defaults: compare.CompareSettings = compare.CompareSettings()  # the page's settings; examples run with them
    default_pruned: str = compare.DEFAULT_PRUNED  # the dropdown's default (a --release checkpoint when given)
    max_size: int = compare.SIZE_RANGE[1]  # the largest size a request may ask for
    max_memory: int | None = None  # each run's memory budget (on a GPU: tiles where a size does not fit whole)

    def example(self, content: dict | None, styles: list[dict] | None) -> dict:
        """A bundled example pair compared at the page's default settings with the default pruned
        network: what Gradio's lazy example cache computes on the pair's first click and keeps. A
        run that did not finish (time limit) is an error, so it is not cached."""
        s, final = self.defaults, {}
        for update in self.run(
            None,
            content,
            styles,
            s.size,
            s.iterations,
            s.optimizer,
            s.style_strength,
            s.tv_weight,
            s.seed,
            s.preserve_color,
            self.default_pruned,
        ):
            final |= update
        if "done" not in str(final.get(self.outputs.status)):
            raise gr.Error(f"the example did not finish: {final.get(self.outputs.status)}", print_exception=False)
        return final

    def checked_spec(self, pruned_choice: str | None, pruned_upload: str | None, hub_repo: str | None) -> str:
        """The pruned spec of the three widgets; a choice the dropdown does not offer is refused (it
        could name any file on the server: the event is not preprocessed, so Gradio does not check it)."""
        if not pruned_upload and not (hub_repo or "").strip() and pruned_choice and pruned_choice not in self.choices:
            raise UserError(
                f"pruned_choice {pruned_choice!r} is not one of the offered networks: {', '.join(self.choices)}"
            )
        return compare.pruned_spec_from_ui(pruned_choice, pruned_upload, hub_repo)

    def validate(self, **values: object) -> list[dict]:
        """Gradio's ``validator=`` for /compare: it runs when a request arrives, before it takes a
        queue slot, so a bad setting or a missing image is refused at once, each named by its input,
        instead of after waiting for the worker. What needs the files themselves (is it an image, a
        checkpoint that fits) is checked by the run."""
        problems = setting_problems(values, self.max_size)

        def files(name: str, convert: Callable):
            try:
                return convert(values.get(name))
            except UserError as exc:
                problems[name] = str(exc)
                return None

        content, styles = files("content", upload_path), files("styles", upload_paths) or []
        pruned_upload, hub_repo = files("pruned_upload", upload_path), values.get("hub_repo")
        mask, style_masks = files("mask", upload_path), files("style_masks", upload_paths) or []
        hub_repo = None if hub_repo is None else str(hub_repo)  # unpreprocessed: an API caller may send any JSON
        if not content:
            problems.setdefault("content", "upload a content image")
        if not styles or len(styles) > compare.MAX_STYLES:
            problems.setdefault("styles", f"upload one to {compare.MAX_STYLES} style images, not {len(styles)}")
        try:
            self.checked_spec(values.get("pruned_choice"), pruned_upload, hub_repo)
        except UserError as exc:
            problems[
                "pruned_upload" if pruned_upload else "hub_repo" if (hub_repo or "").strip() else "pruned_choice"
            ] = str(exc)
        uploads = [content, *styles, pruned_upload, mask, *style_masks]
        names = [name for name in inspect.signature(self.run).parameters if name != "request"]
        return [
            gr.validate(name not in problems, compare.public_message(problems.get(name, ""), uploads)) for name in names
        ]

    # The signature and docstring below are the /compare API: Gradio names the parameters after the
    # signature (a default of None makes one optional), its MCP server reads the Args and Returns
    # sections, and document_endpoint copies them to the components for gradio_client's view_api.
    # Gradio's docstring parser reads one line per parameter, so each description stays on one line.
    def run(
        self,
        request: gr.Request,
        content: dict | None,
        styles: list[dict] | None,
        size: float,
        iterations: float,
        optimizer: str,
        style_strength: float,
        tv_weight: float,
        seed: float,
        preserve_color: bool,
        pruned_choice: str | None,
        pruned_upload: dict | None = None,
        hub_repo: str | None = None,
        style_scale: float = 1.0,
        style_weights: str | None = None,
        color: str = "none",
        mask: dict | None = None,
        style_masks: list[dict] | None = None,
    ) -> Iterator[dict]:
        """Stylize a content image twice, with the dense VGG-19 and with a pruned one (same seed, same starting
        image), and compare the two: time, size, and quality judged by the dense network (content and style loss)
        and by SSIM against the dense result. The status and a preview stream while it runs.

        Args:
            content: The content image (PNG, JPEG, WebP, ...); scaled so that its longer side is `size`.
            styles: One to four style images, blended with equal weights unless style_weights says otherwise.
            size: Longer side of the results in pixels, 64 to 1024 (on a GPU to 2048, or the server's --max-size).
            iterations: Optimisation steps of each run, 1 to 1000.
            optimizer: adam or lbfgs.
            style_strength: Multiplies the preset's style weight, 0 to 20 (1 is the preset).
            tv_weight: Total-variation (smoothness) weight, 0 to 1.
            seed: Random seed of both runs, 0 to 2147483647.
            preserve_color: Keep the content image's colours (only the luminance is stylized).
            pruned_choice: The pruned network to compare with: profile:seed (the seed's fine-grained profile), structured:0.5 (half of every conv's filters removed), or a file the server offers.
            pruned_upload: Optional. Your own pruned network instead of pruned_choice: a profile (.json, from `nst scan select`) or a checkpoint (.safetensors, from `nst prune --save`).
            hub_repo: Optional. A pruned checkpoint on the Hugging Face Hub instead of pruned_choice, OWNER/NAME[:FILE][@REVISION] (an upload wins over it).
            style_scale: Optional. Size of the style images relative to the result, 0.25 to 4 (brush-stroke size; 1 is the result's size).
            style_weights: Optional. One weight per style image, comma-separated (e.g. "1, 2"); empty blends them equally.
            color: Optional. none (the style's colours) or histogram (the styles recoloured to the content's palette first).
            mask: Optional. A greyscale content mask: stylized where white, the content kept where black, soft edges blend.
            style_masks: Optional. One greyscale mask per style image, in order: each style is applied in its own region.

        Returns:
            status: One line: what is running, or the timings and SSIM when done.
            preview: The image being optimised, while it runs.
            slider: The dense and the pruned result, as a pair (before/after slider).
            dense_image: The dense network's result (PNG).
            pruned_image: The pruned network's result (PNG).
            summary: Table, dense vs pruned: time, speedup, parameters, compression, checkpoint size, and the judge's SSIM, content and style loss.
            layers: Table, one row per conv of the pruned network: channels, weights, nonzeros, fraction of the dense weights removed.
        """
        # Each yielded dict holds the outputs to set (OutputColumn.shown says why it is every file output).
        # A person's mistake becomes a gr.Error with its message; a bug is logged with its traceback and
        # shown as one line. Neither shows the server's path of an upload.
        session = getattr(request, "session_hash", None) or "anonymous"  # no request: a cached example
        cancel, preview, uploads = None, None, []
        try:
            content, styles, pruned_upload = upload_path(content), upload_paths(styles), upload_path(pruned_upload)
            mask, style_masks = upload_path(mask), upload_paths(style_masks)
            uploads = [content, *(styles or []), pruned_upload, mask, *(style_masks or [])]
            # The validator checked these before queueing; checked again for calls that skip it.
            settings = checked_settings(
                size,
                iterations,
                optimizer,
                style_strength,
                tv_weight,
                seed,
                preserve_color,
                style_scale,
                style_weights,
                color,
                mask,
                style_masks,
                self.max_size,
                self.max_memory,
            )
            spec = self.checked_spec(pruned_choice, pruned_upload, hub_repo)
            cancel = CANCELS.new(session)
            yield self.outputs.cleared(f"preparing {compare.describe_pruned_spec(spec)}...")
            for update in comparison_updates(self.dense, content, styles, settings, spec, cancel, self.limits):
                if update[0] in ("progress", "stopped"):
                    _, message, image = update
                    if image is not None:  # saved once; every later update re-sends the same file
                        preview = save_pil_to_cache(image, self.outputs.preview.GRADIO_CACHE, format="png")
                    yield self.outputs.shown(message, preview)
                else:
                    _, headline, *results = update
                    yield self.outputs.shown(headline, preview, tuple(results))
        except compare.Cancelled:
            yield self.outputs.shown("cancelled.", preview)
        except UserError as exc:
            raise gr.Error(compare.public_message(str(exc), uploads), print_exception=False) from None
        except gr.Error:
            raise
        except Exception as exc:  # a bug, not the user's fault: log the traceback, show one line
            log.error("comparison failed:\n%s", traceback.format_exc())
            raise gr.Error(
                compare.public_message(
                    f"internal error ({type(exc).__name__}: {exc}); the server log has the details", uploads
                )
            ) from None
        finally:
            if cancel is not None:
                CANCELS.finish(session, cancel)


def cancel_run(request: gr.Request) -> str:
    """Stop the comparison this session started, if one is running (the Cancel button).

    Returns:
        status: "cancelled." or "nothing is running."
    """
    stopped = CANCELS.cancel(request.session_hash or "anonymous")
    return _status("cancelled." if stopped else "nothing is running.")


def tool_description(handler: Callable, dense: compare.DenseNetwork, limits: RunLimits) -> str:
    """/compare's description for the API page and MCP clients: the docstring's summary, plus
    which weights this server runs and its time limit (what a caller cannot see otherwise)."""
    summary = get_function_description(handler)[0]
    weights = f"VGG-19 weights: {dense.model.weight_source}" + (
        " (random: results are not meaningful)" if dense.random else ""
    )
    return f"{summary} {weights}. Each call is stopped after {limits.time_limit:g} s."


def build_app(
    dense: compare.DenseNetwork,
    pruned_files: list[str] | None = None,
    keep_files: int = KEEP_FILES_S,
    limits: RunLimits = RunLimits(),
    zero_gpu_space: bool = False,
    release: str | None = None,
    max_size: int | None = None,
) -> gr.Blocks:
    """The interface, bound to an already loaded dense network. Uploads and results are deleted
    once they are ``keep_files`` seconds old (Gradio's ``delete_cache``, checked as often). On a
    ZeroGPU Space (``zero_gpu_space``) the network waits on the CPU and each run gets a GPU.
    ``release`` (a checkpoint file or ``hf:`` spec) is the dropdown's first choice and its default."""
    where = "ZeroGPU (a GPU is attached for each run)" if zero_gpu_space else str(dense.device)
    with gr.Blocks(title="Pruned VGG-19 style transfer", delete_cache=(keep_files, keep_files)) as demo:
        gr.Markdown(
            "# Dense vs pruned VGG-19 style transfer\n"
            "Gatys-style neural style transfer run twice with the same seed and starting image: once with the dense "
            "VGG-19 and once with a pruned one. Both outputs are judged by the dense network (content and style loss) "
            f"and by SSIM against the dense output. Running on **{where}** with weights `{dense.model.weight_source}`."
        )
        banner = dense.banner()
        gr.Markdown(banner or "", visible=bool(banner), elem_id="weights-banner")
        gr.Markdown(
            f"Each comparison is stopped after **{limits.time_limit:g} s** (the time limit); large sizes with many "
            "iterations may not finish.",
            elem_id="time-limit",
        )
        choices = compare.named_choices(pruned_files, release)
        default_pruned = compare.default_pruned(release)
        max_size, max_memory = size_limits(dense.device, max_size, zero_gpu_space)
        defaults = replace(
            compare.default_settings(gpu=zero_gpu_space or dense.device.type != "cpu"), max_size=max_size
        )
        with gr.Row():
            inputs = build_input_column(defaults, choices, default_pruned)
            outputs = build_output_column()
        handler = RunHandler(
            dense, outputs, tuple(spec for _, spec in choices), limits, defaults, default_pruned, max_size, max_memory
        )

        rows = example_rows()
        if rows:
            # Served from examples/ as they are: copies in Gradio's cache would be deleted by
            # delete_cache (it keeps the content examples but not the style files), and the
            # examples would stop loading once the app has run that long.
            gr.set_static_paths([EXAMPLE_CONTENT, EXAMPLE_STYLE])
            # Lazy: a pair is compared (at the default settings) on its first click, then served from
            # the cache, never at start-up. The cache folder is keyed by the weights (main()).
            gr.Examples(
                rows,
                inputs=[inputs.content, inputs.styles],
                outputs=outputs.components(),
                fn=handler.example,
                cache_examples=True,
                cache_mode="lazy",
                preprocess=False,
                label="Examples (a click shows the pair's result at the default settings; the first click computes it)",
            )

        # preprocess=False on the events that take uploads: the handlers get the files' paths unopened (upload_path).
        inputs.styles.change(
            lambda files: upload_paths(files) or [],
            inputs=inputs.styles,
            outputs=inputs.style_gallery,
            api_visibility="private",
            preprocess=False,
        )
        run_inputs = inputs.parameters_of(handler.run)
        document_endpoint(handler.run, run_inputs, outputs.named())
        run_event = inputs.run.click(
            handler.run,
            inputs_kwargs=run_inputs,
            outputs=outputs.components(),
            api_name="compare",
            concurrency_limit="default",
            preprocess=False,
            validator=handler.validate,
            api_description=tool_description(handler.run, dense, limits),
        )
        inputs.cancel.click(
            cancel_run, inputs=None, outputs=outputs.status, cancels=[run_event], api_name="cancel", queue=False
        )
    return demo


def size_limits(
    device: torch.device, max_size: int | None = None, zero_gpu_space: bool = False
) -> tuple[int, int | None]:
    """The largest size a request may ask for and each run's memory budget on ``device``.

    On a GPU: up to ``compare.GPU_MAX_SIZE`` (or ``max_size``), within 90% of its memory
    (what does not fit whole is tiled, as ``nst stylize --max-memory`` does); on ZeroGPU the same
    size, with no budget (the GPU is attached per run, so its memory is unknown here); elsewhere
    ``compare.SIZE_RANGE``'s bound unless ``max_size`` says more, with no budget.
    """
    if device.type == "cuda":
        budget = int(0.9 * torch.cuda.get_device_properties(device).total_memory)
        return max_size or compare.GPU_MAX_SIZE, budget
    if zero_gpu_space:
        return max_size or compare.GPU_MAX_SIZE, None
    return max_size or compare.SIZE_RANGE[1], None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Serve the dense vs pruned style transfer app.")
    parser.add_argument(
        "--host",
        default=env("NST_HOST") or env("GRADIO_SERVER_NAME") or "127.0.0.1",
        help="interface to listen on (env NST_HOST, GRADIO_SERVER_NAME; default 127.0.0.1; 0.0.0.0 for all)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(env("NST_PORT") or env("GRADIO_SERVER_PORT") or 7860),
        help="port (env NST_PORT, GRADIO_SERVER_PORT; default 7860)",
    )
    parser.add_argument(
        "--weights",
        default=env("NST_WEIGHTS") or compare.DEFAULT_WEIGHTS,
        help="VGG-19 weights: caffe | torchvision | hf:REPO[:FILE][@REV] | PATH.pth/.safetensors | random[:SEED] "
        "(env NST_WEIGHTS; default caffe; falls back to random weights, with a warning banner, if they cannot be loaded; "
        "on a Space, with SPACE_ID set, random weights are refused with an error page unless NST_ALLOW_RANDOM=1)",
    )
    parser.add_argument(
        "--device",
        default=env("NST_DEVICE") or "auto",
        choices=DEVICE_CHOICES,
        help="where the networks run: auto picks CUDA, then Apple's MPS, then the CPU (env NST_DEVICE; default auto)",
    )
    parser.add_argument(
        "--pruned",
        action="append",
        default=[],
        metavar="PATH",
        help="a pruned checkpoint (.safetensors) or profile (.json) on this machine to offer in the dropdown (repeatable)",
    )
    parser.add_argument(
        "--release",
        default=env("NST_RELEASE") or None,
        metavar="PATH|hf:OWNER/NAME",
        help="a released pruned checkpoint (file or Hub repo, e.g. from `nst release`): offered first and "
        "compared against by default (env NST_RELEASE)",
    )
    parser.add_argument(
        "--queue-size",
        type=int,
        default=int(env("NST_QUEUE_SIZE") or 16),
        help="requests that may wait; more are told the queue is full (env NST_QUEUE_SIZE; default 16)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(env("NST_CONCURRENCY") or 1),
        help="comparisons run at once (env NST_CONCURRENCY; default 1: each one uses every core)",
    )
    parser.add_argument(
        "--keep-files",
        type=int,
        default=int(env("NST_KEEP_FILES") or KEEP_FILES_S),
        metavar="SECONDS",
        help="uploads and results are deleted once they are this old, checked as often "
        f"(env NST_KEEP_FILES; default {KEEP_FILES_S})",
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=int(env("NST_MAX_SIZE") or 0) or None,
        metavar="PX",
        help="largest output size a request may ask for (env NST_MAX_SIZE; default 1024, 2048 on a GPU; "
        "on a GPU larger sizes are tiled within 90%% of its memory)",
    )
    parser.add_argument(
        "--max-file-size",
        default=env("NST_MAX_FILE_SIZE") or "10mb",
        help="largest upload accepted (env NST_MAX_FILE_SIZE; default 10mb)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=float(env("NST_TIME_LIMIT") or TIME_LIMIT_S),
        metavar="SECONDS",
        help=f"a comparison still running after this long is stopped (env NST_TIME_LIMIT; default {TIME_LIMIT_S})",
    )
    parser.add_argument(
        "--mcp",
        action="store_true",
        default=env("NST_MCP", "") == "1",
        help="also serve /compare as an MCP tool at /gradio_api/mcp/ (env NST_MCP=1; needs gradio[mcp])",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    warnings.filterwarnings("ignore", category=RandomWeightsWarning)  # every page carries its own banner
    args = parse_args(argv)
    if args.queue_size < 1 or args.concurrency < 1 or args.keep_files < 1 or not args.time_limit > 0:
        raise SystemExit(
            "app.py: error: --queue-size, --concurrency and --keep-files must be at least 1, --time-limit above 0"
        )
    if args.max_size is not None and not compare.SIZE_RANGE[0] <= args.max_size <= 4096:
        raise SystemExit(
            f"app.py: error: --max-size must be between {compare.SIZE_RANGE[0]} and 4096 px, not {args.max_size}"
        )
    zero = on_zero_gpu()
    # On ZeroGPU any CUDA work outside a spaces.GPU function fails: start-up (loading, pruning the
    # default, warming up) stays on the CPU, and each run moves copies to the GPU it is given.
    startup_device = "cpu" if zero else args.device
    log.info("start-up work on %s%s", startup_device, " (ZeroGPU: CUDA only inside spaces.GPU)" if zero else "")
    try:
        dense = compare.load_dense(args.weights, device=startup_device)
    except UserError as exc:
        raise SystemExit(f"app.py: error: {exc}") from None
    if dense.fallback_reason:
        log.warning("using random weights: %s", dense.fallback_reason)
    refusal = random_weights_refusal(dense)
    if refusal:
        log.error("refusing to serve random weights on a Space (set %s=1 to allow them)", ALLOW_RANDOM_ENV)
        launch(build_refusal_app(refusal), args)
        return
    for path in args.pruned:
        try:
            compare.resolve_pruned(path, dense.model)  # fail now, not on someone's first click; also caches it
        except UserError as exc:
            raise SystemExit(f"app.py: error: --pruned {path}: {exc}") from None
    try:
        # Load (or prune) the default once, before the first click; a bad release fails now, naming the flag.
        compare.resolve_pruned(compare.default_pruned(args.release), dense.model)
    except UserError as exc:
        raise SystemExit(f"app.py: error: --release {args.release}: {exc}") from None
    compare.warm_up(dense.model)
    limits = RunLimits(time_limit=args.time_limit, device=args.device)
    # Gradio keeps cached examples across restarts, keyed by component only: key the folder by what
    # the results depend on too, so results of other weights or defaults are never served.
    key = hashlib.sha256(
        f"{dense.model.weight_source}|{zero}|{dense.device.type}|{compare.default_pruned(args.release)}".encode()
    ).hexdigest()[:12]
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(
        Path(os.environ.get("GRADIO_EXAMPLES_CACHE") or ".gradio/cached_examples") / key
    )
    demo = build_app(
        dense,
        args.pruned,
        keep_files=args.keep_files,
        limits=limits,
        zero_gpu_space=zero,
        release=args.release,
        max_size=args.max_size,
    )
    demo.queue(max_size=args.queue_size, default_concurrency_limit=args.concurrency)
    launch(demo, args)


def launch(demo: gr.Blocks, args: argparse.Namespace) -> None:
    """Serve ``demo`` with the command line's server settings (blocks until stopped)."""
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=args.max_file_size,
        show_error=True,  # errors raised before our handler runs (e.g. an unreadable upload) still show their message
        theme=gr.themes.Soft(),
        css=CSS,
        mcp_server=args.mcp,
    )


if __name__ == "__main__":
    main()
