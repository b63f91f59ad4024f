"""Gradio app: dense vs pruned VGG-19 style transfer, side by side.

Thin on purpose: it reads the command line and hands it to ``nst_core.app`` (the interface), which turns
events from ``nst_core.workflows.compare`` into widget updates; every computation lives in ``nst_core``.

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
import os

from nst_core.app.limits import KEEP_FILES_S, TIME_LIMIT_S
from nst_core.app.server import serve
from nst_core.core.devices import DEVICE_CHOICES
from nst_core.workflows.compare import DEFAULT_WEIGHTS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The server's options: each flag falls back to its environment variable, then its default."""
    # Long but flat: one add_argument per server option (argparse boilerplate), each with its variable.
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
        default=env("NST_WEIGHTS") or DEFAULT_WEIGHTS,
        help="VGG weights: caffe | torchvision | caffe-vgg16 | torchvision-vgg16 | hf:REPO[:FILE][@REV] | "
        "PATH.pth/.safetensors (VGG-19 or VGG-16) | random[:SEED] "
        "(env NST_WEIGHTS; default caffe; falls back to random weights, with a warning banner, if they cannot be "
        "loaded; on a Space, with SPACE_ID set, random weights are refused with an error page unless "
        "NST_ALLOW_RANDOM=1)",
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
        help="a pruned checkpoint (.safetensors) or profile (.json) on this machine to offer in the dropdown "
        "(repeatable)",
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
    """Serve the app with the command line's options (blocks until stopped)."""
    serve(parse_args(argv))


if __name__ == "__main__":
    main()
