"""Start-up and launch: load the dense network, check what the command line names, warm up, serve.

Everything that can fail on a person's flag fails here, before the first click, with a one-line
``app.py: error: ...`` naming the flag.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import warnings
from pathlib import Path

import gradio as gr

from nst_core.app.limits import RunLimits
from nst_core.app.page import CSS, build_app
from nst_core.app.refusal import ALLOW_RANDOM_ENV, build_refusal_app, random_weights_refusal
from nst_core.app.zero_gpu import on_zero_gpu
from nst_core.core.errors import UserError
from nst_core.model.weights import RandomWeightsWarning
from nst_core.workflows import compare

log = logging.getLogger("nst.app")


def check_options(args: argparse.Namespace) -> None:
    """Refuse limits that make no sense (a SystemExit naming the flags)."""
    if args.queue_size < 1 or args.concurrency < 1 or args.keep_files < 1 or not args.time_limit > 0:
        raise SystemExit(
            "app.py: error: --queue-size, --concurrency and --keep-files must be at least 1, --time-limit above 0"
        )
    if args.max_size is not None and not compare.SIZE_RANGE[0] <= args.max_size <= 4096:
        raise SystemExit(
            f"app.py: error: --max-size must be between {compare.SIZE_RANGE[0]} and 4096 px, not {args.max_size}"
        )


def serve(args: argparse.Namespace) -> None:
    """Serve the app with ``app.py``'s options (blocks until stopped)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    warnings.filterwarnings("ignore", category=RandomWeightsWarning)  # every page carries its own banner
    check_options(args)
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
    prepare_pruned(dense, args.pruned, args.release)
    compare.warm_up(dense.model)
    key_examples_cache(dense, zero, compare.default_pruned(args.release))
    demo = build_app(
        dense,
        args.pruned,
        keep_files=args.keep_files,
        limits=RunLimits(time_limit=args.time_limit, device=args.device),
        zero_gpu_space=zero,
        release=args.release,
        max_size=args.max_size,
    )
    demo.queue(max_size=args.queue_size, default_concurrency_limit=args.concurrency)
    launch(demo, args)


def prepare_pruned(dense: compare.DenseNetwork, pruned: list[str], release: str | None) -> None:
    """Load each ``--pruned`` file and the default pruned network (the release, when given) once, before the
    first click: a bad one fails now, naming its flag; the good ones are cached."""
    for path in pruned:
        try:
            compare.resolve_pruned(path, dense.model)
        except UserError as exc:
            raise SystemExit(f"app.py: error: --pruned {path}: {exc}") from None
    try:
        compare.resolve_pruned(compare.default_pruned(release), dense.model)
    except UserError as exc:
        raise SystemExit(f"app.py: error: --release {release}: {exc}") from None


def key_examples_cache(dense: compare.DenseNetwork, zero: bool, default_pruned: str) -> None:
    """Gradio keeps cached examples across restarts, keyed by component only: key the folder by what
    the results depend on too, so results of other weights or defaults are never served."""
    key = hashlib.sha256(
        f"{dense.model.weight_source}|{zero}|{dense.device.type}|{default_pruned}".encode()
    ).hexdigest()[:12]
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(
        Path(os.environ.get("GRADIO_EXAMPLES_CACHE") or ".gradio/cached_examples") / key
    )


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
