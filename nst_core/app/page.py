"""The page: the header, the input and output columns, the bundled examples, and the events that
tie them to the handlers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gradio as gr

from nst_core.app.api_docs import document_endpoint, tool_description
from nst_core.app.handler import RunHandler, cancel_run
from nst_core.app.inputs import build_input_column
from nst_core.app.limits import KEEP_FILES_S, RunLimits, size_limits
from nst_core.app.outputs import build_output_column
from nst_core.app.uploads import upload_paths
from nst_core.image.io import find_images
from nst_core.model.layers import get_architecture
from nst_core.workflows import compare

#: The checkout's (or the Space's) top folder: nst_core/ and examples/ sit side by side there.
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE_CONTENT, EXAMPLE_STYLE = EXAMPLES / "content", EXAMPLES / "style"
CSS = """
#weights-banner { border: 2px solid #d97706; background: #fef3c7; color: #78350f; border-radius: 8px;
                  padding: 4px 12px; }
#weights-banner * { color: #78350f; }
"""


def example_rows() -> list[list]:
    """[content, [style]] pairs from examples/content and examples/style (whatever is bundled)."""

    def images(folder: Path) -> list[str]:
        return [str(p) for p in find_images(folder, recursive=False)]

    contents, styles = images(EXAMPLE_CONTENT), images(EXAMPLE_STYLE)
    if not contents or not styles:
        return []
    count = max(len(contents), len(styles))
    return [[contents[i % len(contents)], [styles[i % len(styles)]]] for i in range(count)]


def build_header(dense: compare.DenseNetwork, limits: RunLimits, zero_gpu_space: bool) -> None:
    """What the page says first: what it does, where it runs, the random-weights banner, the time limit."""
    where = "ZeroGPU (a GPU is attached for each run)" if zero_gpu_space else str(dense.device)
    vgg = get_architecture(dense.model.arch).title  # the weights decide: VGG-19 or VGG-16
    gr.Markdown(
        f"# Dense vs pruned {vgg} style transfer\n"
        "Gatys-style neural style transfer run twice with the same seed and starting image: once with the dense "
        f"{vgg} and once with a pruned one. Both outputs are judged by the dense network (content and style loss) "
        f"and by SSIM against the dense output. Running on **{where}** with weights `{dense.model.weight_source}`."
    )
    banner = dense.banner()
    gr.Markdown(banner or "", visible=bool(banner), elem_id="weights-banner")
    gr.Markdown(
        f"Each comparison is stopped after **{limits.time_limit:g} s** (the time limit); large sizes with many "
        "iterations may not finish.",
        elem_id="time-limit",
    )


def build_app(
    dense: compare.DenseNetwork,
    pruned_files: list[str] | None = None,
    keep_files: int = KEEP_FILES_S,
    limits: RunLimits | None = None,
    zero_gpu_space: bool = False,
    release: str | None = None,
    max_size: int | None = None,
) -> gr.Blocks:
    """The interface, bound to an already loaded dense network. Uploads and results are deleted
    once they are ``keep_files`` seconds old (Gradio's ``delete_cache``, checked as often). On a
    ZeroGPU Space (``zero_gpu_space``) the network waits on the CPU and each run gets a GPU.
    ``release`` (a checkpoint file or ``hf:`` spec) is the dropdown's first choice and its default."""
    limits = limits or RunLimits()
    title = f"Pruned {get_architecture(dense.model.arch).title} style transfer"
    with gr.Blocks(title=title, delete_cache=(keep_files, keep_files)) as demo:
        build_header(dense, limits, zero_gpu_space)
        choices = compare.named_choices(pruned_files, release)
        default_pruned = compare.default_pruned(release)
        max_size, max_memory = size_limits(dense.device, max_size, zero_gpu_space)
        defaults = replace(
            compare.default_settings(gpu=zero_gpu_space or dense.device.type != "cpu"), max_size=max_size
        )
        with gr.Row():
            inputs = build_input_column(defaults, choices, default_pruned)
            outputs = build_output_column()
        specs = tuple(spec for _, spec in choices)
        handler = RunHandler(dense, outputs, specs, limits, defaults, default_pruned, max_size, max_memory)
        add_examples(inputs.parameters, outputs.components(), handler)
        # preprocess=False on the events that take uploads: the handlers get the files' paths unopened (uploads.py).
        style_files = inputs.parameters["styles"]
        assert isinstance(style_files, gr.File)
        style_files.change(
            lambda files: upload_paths(files) or [],
            inputs=style_files,
            outputs=inputs.style_gallery,
            api_visibility="private",
            preprocess=False,
        )
        document_endpoint(handler.run, inputs.parameters, outputs.named())
        run_inputs: dict[str, gr.blocks.Block] = dict(inputs.parameters)
        run_event = inputs.run.click(
            handler.run,
            inputs_kwargs=run_inputs,
            outputs=outputs.components(),
            api_name="compare",
            concurrency_limit="default",
            preprocess=False,
            validator=handler.validate,
            api_description=tool_description(handler.run, dense, limits.time_limit),
        )
        inputs.cancel.click(
            cancel_run, inputs=None, outputs=outputs.status, cancels=[run_event], api_name="cancel", queue=False
        )
    return demo


def add_examples(parameters: dict, outputs: list, handler: RunHandler) -> None:
    """The bundled example pairs, each compared on its first click (at the default settings) and then served
    from Gradio's cache, never at start-up (the cache folder is keyed by the weights: server.py)."""
    rows = example_rows()
    if not rows:
        return
    # Served from examples/ as they are: copies in Gradio's cache would be deleted by delete_cache (it keeps
    # the content examples but not the style files), and the examples would stop loading once the app has
    # run that long.
    gr.set_static_paths([EXAMPLE_CONTENT, EXAMPLE_STYLE])
    gr.Examples(
        rows,
        inputs=[parameters["content"], parameters["styles"]],
        outputs=outputs,
        fn=handler.example,
        cache_examples=True,
        cache_mode="lazy",
        preprocess=False,
        label="Examples (a click shows the pair's result at the default settings; the first click computes it)",
    )
