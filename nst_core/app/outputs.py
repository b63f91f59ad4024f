"""The output column: status, live preview, the two results and the tables (Run's outputs, in order)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import gradio as gr

#: What each output holds, by OutputColumn field: the Returns of the /compare endpoint's docs.
OUTPUT_DOCS = {
    "status": "One line: what is running, or the timings and SSIM when done.",
    "preview": "The image being optimised, while it runs.",
    "slider": "The dense and the pruned result, as a pair (before/after slider).",
    "dense_image": "The dense network's result (PNG).",
    "pruned_image": "The pruned network's result (PNG).",
    "summary": "Table, dense vs pruned: time, speedup, parameters, compression, checkpoint size, and the judge's"
    " SSIM, content and style loss.",
    "layers": "Table, one row per conv of the pruned network: channels, weights, nonzeros, fraction of the dense"
    " weights removed.",
}


def status(text: str) -> str:
    """The status line's Markdown."""
    return f"**Status:** {text}"


@dataclass(frozen=True)
class OutputColumn:
    """The right column. Field order is the order of Run's outputs (the ``/compare`` API's return values)."""

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
        """The outputs in order."""
        return list(self.named().values())

    def cleared(self, message: str) -> dict:
        """A new run starts: every output emptied, the status says what is being prepared."""
        return {component: None for component in self.components()} | {self.status: status(message)}

    def shown(self, message: str, preview: str | None, results: tuple | None = None) -> dict:
        """The status line, the latest preview (a file) and, once done, ``results``: the dense
        image, the pruned image, the summary rows and the layer rows.

        Every update sets every output that holds a file, if only to keep it as it is: the first
        time an update leaves an output out, Gradio (6.31) gives the session its own copy of that
        component, and the files written for the copy escape ``delete_cache``.
        """
        values: dict[gr.components.Component, Any] = {
            self.status: status(message),
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
        status_line = gr.Markdown(status("ready."), label="Status", elem_id="status")
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
    return OutputColumn(status_line, preview, slider, dense_image, pruned_image, summary, layers)
