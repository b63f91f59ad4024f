"""`nst stylize`: one style transfer from the command line."""

from __future__ import annotations

import argparse
import json
import sys
import threading

from tqdm import tqdm

from ..files import atomic_save_image, atomic_write_text
from ..stylize import Progress, style_load_side, stylize
from .common import (
    STYLIZE_HELP,
    HelpFormatter,
    add_stylize_args,
    add_weight_args,
    check_output_path,
    load_images_from_args,
    load_model_from_args,
    stylize_config_from_args,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `nst stylize` to the `nst` command."""
    p = subparsers.add_parser(
        "stylize",
        help="stylize a content image with one or more style images",
        description=(
            "Optimise an image so its VGG-19 features match CONTENT and its Gram statistics match "
            "STYLE (Gatys et al. 2016), with a total-variation smoothness term. "
            "Example: nst stylize examples/content/lakeside.jpg examples/style/swirls.jpg -o out.png"
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("content", help="content image (photo) path")
    p.add_argument("styles", nargs="+", metavar="STYLE", help="one or more style images (blended by --style-blend)")
    p.add_argument("-o", "--output", required=True, help="output image path (.png, .jpg or .webp)")
    add_weight_args(p)
    add_stylize_args(p, STYLIZE_HELP)
    p.add_argument("--save-every", type=int, default=0, metavar="K", help="also save OUTPUT_STEM.iterNNNNN.png every K iterations")
    p.add_argument("--log-json", default=None, metavar="PATH", help="write the loss history and timings as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`nst stylize`: stylize, write the output (and previews, a JSON log); 0 on success."""
    # Everything a person typed is checked before the network loads: a typo costs seconds, not a run.
    output = check_output_path(args.output, "-o", (".png", ".jpg", ".jpeg", ".webp"))
    log_json = check_output_path(args.log_json, "--log-json") if args.log_json else None
    config = stylize_config_from_args(args, preview_every=max(0, args.save_every))
    config.validate()
    style_side = style_load_side(config.size, config.style_scale, config.style_size)
    content, styles = load_images_from_args(args.content, args.styles, config.size, style_side)
    model = load_model_from_args(args, config.loss_preset().last_layer)
    bar = tqdm(total=config.iterations, unit="it", desc="stylize", file=sys.stderr, disable=None)

    def on_progress(progress: Progress) -> None:
        bar.update(progress.iteration - bar.n)
        bar.set_postfix(loss=f"{progress.losses['total']:.4g}", content=f"{progress.losses['content']:.3g}", style=f"{progress.losses['style']:.3g}")
        if progress.preview is not None:
            atomic_save_image(progress.preview, output.with_name(f"{output.stem}.iter{progress.iteration:05d}.png"))

    cancel = threading.Event()
    try:
        result = stylize(model, content, styles, config, callback=on_progress, cancel=cancel)
    finally:
        bar.close()
    atomic_save_image(result.image, output)
    if log_json:
        log = {"config": vars(config), "weights": model.weight_source, "stopped": result.stopped, "timings": result.timings, "history": result.history}
        atomic_write_text(log_json, json.dumps(log, indent=1))
    per_it = result.timings["per_iteration"]
    print(f"wrote {output} ({result.image.size[0]}x{result.image.size[1]}, {len(result.history)} iterations, "
          f"{per_it * 1000:.0f} ms/iteration, stopped: {result.stopped})")
    return 0
