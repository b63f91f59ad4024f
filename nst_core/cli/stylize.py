"""`nst stylize`: one style transfer from the command line."""

from __future__ import annotations

import argparse
import json
import sys
import threading

from tqdm import tqdm

from nst_core.cli.common import (
    HelpFormatter,
    add_stylize_args,
    add_weight_args,
    check_output_path,
    load_model_from_args,
    stylize_config_from_args,
)
from nst_core.core.files import atomic_save_image, atomic_write_text
from nst_core.nst.memory import format_bytes, parse_memory
from nst_core.nst.stylize import PreparedRun, Progress, load_run_inputs, prepare_run, stylize
from nst_core.nst.tiling import iteration_macs_tiled, measure_macs_per_second

#: From this longer side up (px) the CLI prints the plan, predicted peak memory and time even without --max-memory.
PLAN_FROM_SIZE = 1024


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `nst stylize` to the `nst` command."""
    p = subparsers.add_parser(
        "stylize",
        help="stylize a content image with one or more style images",
        description=(
            "Optimise an image so its VGG features (VGG-19, or VGG-16 with such weights) match CONTENT "
            "and its Gram statistics match STYLE (Gatys et al. 2016), with a total-variation smoothness term. "
            "Example: nst stylize examples/content/lakeside.jpg examples/style/swirls.jpg -o out.png"
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("content", help="content image (photo) path")
    p.add_argument("styles", nargs="+", metavar="STYLE", help="one or more style images (blended by --style-blend)")
    p.add_argument("-o", "--output", required=True, help="output image path (.png, .jpg or .webp)")
    add_weight_args(p, arch=True)
    add_stylize_args(p)
    p.add_argument(
        "--save-every", type=int, default=0, metavar="K", help="also save OUTPUT_STEM.iterNNNNN.png every K iterations"
    )
    p.add_argument("--log-json", default=None, metavar="PATH", help="write the loss history and timings as JSON")
    p.add_argument(
        "--max-memory",
        default=None,
        metavar="AMOUNT",
        help="peak memory the run may reach (RAM; GPU memory on a GPU), e.g. 4GB, 8GB, 512MB "
        "(1GB = 10^9 bytes, GiB = 2^30): scales that do not fit are stylized in tiles, coarser scales are added "
        "so the composition fits whole",
    )
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="PX",
        help="force tiles of this side at every scale larger than it (rounded down to the deepest layer's "
        "stride, 16 px)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`nst stylize`: stylize, write the output (and previews, a JSON log); 0 on success."""
    # Everything a person typed is checked before the network loads: a typo costs seconds, not a run.
    output = check_output_path(args.output, "-o", (".png", ".jpg", ".jpeg", ".webp"))
    log_json = check_output_path(args.log_json, "--log-json") if args.log_json else None
    max_memory = parse_memory(args.max_memory) if args.max_memory is not None else None
    config = stylize_config_from_args(args, preview_every=max(0, args.save_every), max_memory=max_memory)
    inputs = load_run_inputs(args.content, args.styles, config)  # validates the config; loads every image
    model = load_model_from_args(args, inputs.preset.last_layer)
    # The plan is news where memory matters: a budget or tiles asked for, or print sizes.
    if config.max_memory is not None or config.tile is not None or max(inputs.images.content.size) >= PLAN_FROM_SIZE:
        # The throughput is measured first, so the plan counts the memory the measurement left held
        # (a time budget's plan measures it before the memory is read, once for both).
        rate = None if config.time_budget else measure_macs_per_second(model, inputs.preset, config.precision)
        prepared = prepare_run(model, inputs)
        if prepared.time_plan is not None:
            rate = prepared.time_plan.macs_per_second
        assert rate is not None  # measured here or by the time plan
        print_plan(prepared, rate)
    else:
        prepared = prepare_run(model, inputs)
    if prepared.time_plan is not None:
        print(f"plan: {prepared.time_plan.describe()}", file=sys.stderr)
    plan = prepared.plan
    bar = tqdm(total=prepared.config.iterations, unit="it", desc="stylize", file=sys.stderr, disable=None)

    def on_progress(progress: Progress) -> None:
        bar.update(progress.iteration - bar.n)
        where = {"scale": f"{progress.scale + 1}/{len(plan.sizes)}"} if len(plan.sizes) > 1 else {}
        if progress.tile:  # a tile report within a step
            bar.set_postfix(**where, tile=f"{progress.tile}/{progress.tiles}")
            return
        bar.set_postfix(
            **where,
            loss=f"{progress.losses['total']:.4g}",
            content=f"{progress.losses['content']:.3g}",
            style=f"{progress.losses['style']:.3g}",
        )
        if progress.preview is not None:
            atomic_save_image(progress.preview, output.with_name(f"{output.stem}.iter{progress.iteration:05d}.png"))

    cancel = threading.Event()
    try:
        result = stylize(prepared, callback=on_progress, cancel=cancel)
    finally:
        bar.close()
    atomic_save_image(result.image, output)
    if log_json:
        log = {
            "config": vars(config),
            "weights": model.weight_source,
            "stopped": result.stopped,
            "timings": result.timings,
            "history": result.history,
        }
        atomic_write_text(log_json, json.dumps(log, indent=1))
    per_it = result.timings["per_iteration"]
    budget = f", {result.timings['total']:.1f} s of the {config.time_budget:g} s budget" if config.time_budget else ""
    print(
        f"wrote {output} ({result.image.size[0]}x{result.image.size[1]}, {len(result.history)} iterations, "
        f"{per_it * 1000:.0f} ms/iteration, stopped: {result.stopped}{budget})"
    )
    return 0


def print_plan(prepared: PreparedRun, rate: float) -> None:
    """Print the prepared run's scales (whole or tiled), its predicted peak memory and time.

    The time is the plan's conv MACs (``nst_core.nst.cost``) over ``rate``, a throughput in MAC/s
    measured with one small forward and backward pass (``measure_macs_per_second``), so it is a rough
    guide; the memory is what was held when the plan was made plus the plan's predicted peak
    (``nst_core.nst.memory``).
    """
    config, plan, preset = prepared.config, prepared.plan, prepared.preset
    steps = config.scale_iterations(plan.sizes)
    widths, arch = prepared.model.widths, prepared.model.arch
    work = sum(
        n * iteration_macs_tiled(widths, preset, w, h, t, arch) for n, (w, h), t in zip(steps, plan.sizes, plan.tiles)
    )
    budget = f" of the {format_bytes(config.max_memory)} budget" if config.max_memory is not None else ""
    added = f" ({plan.added_scales} coarser scale(s) added so the composition fits whole)" if plan.added_scales else ""
    print(f"plan: {prepared.describe()}{added}", file=sys.stderr)
    print(
        f"predicted: peak memory {format_bytes(prepared.memory_held + plan.predicted_peak)}{budget}, "
        f"about {_duration(work / rate)} ({work / 1e12:.2f} TMAC at a measured {rate / 1e9:.1f} GMAC/s)",
        file=sys.stderr,
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
