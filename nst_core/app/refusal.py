"""The page a Space shows instead of the app when it would serve random weights.

A public Space showing results of random weights would look like a broken style transfer: with
``SPACE_ID`` set (every Space) random weights are refused unless ``NST_ALLOW_RANDOM=1``.
"""

from __future__ import annotations

import os

import gradio as gr

from nst_core.workflows.compare import DenseNetwork

#: Set by Hugging Face on every Space; there random weights are refused unless NST_ALLOW_RANDOM=1.
SPACE_ENV, ALLOW_RANDOM_ENV = "SPACE_ID", "NST_ALLOW_RANDOM"


def random_weights_refusal(dense: DenseNetwork) -> str | None:
    """Why a Space must not serve this network, as the page's Markdown (None when it may)."""
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
        f" with random weights anyway, set `{ALLOW_RANDOM_ENV}=1` (every page then says the results are not"
        " meaningful)."
    )


def build_refusal_app(message: str) -> gr.Blocks:
    """The page a Space shows instead of the app when it would serve random weights: no endpoints."""
    with gr.Blocks(title="Pruned VGG-19 style transfer: no weights") as demo:
        gr.Markdown(message, elem_id="refusal")
    return demo
