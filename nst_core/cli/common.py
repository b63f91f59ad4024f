"""Arguments and helpers shared by several `nst` subcommands."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from nst_core.core.devices import DEVICE_CHOICES
from nst_core.core.errors import UserError
from nst_core.image.io import input_label, load_image
from nst_core.model.layers import POOLINGS, PREPROCESSINGS
from nst_core.model.vgg import VGGFeatures
from nst_core.model.weights import load_vgg
from nst_core.nst.losses import PRESETS, STYLE_LOSSES
from nst_core.nst.stylize import COLORS, INITS, OPTIMIZERS, PADDINGS, PRECISIONS, SCALE_SPACINGS, StylizeConfig

RANDOM_WARNING = (
    "warning: VGG-19 weights are random ({source}); results are mechanically right but visually meaningless. "
    "Use --weights caffe|torchvision|hf:REPO|PATH for real weights."
)


def add_weight_args(parser: argparse.ArgumentParser) -> None:
    """``--weights``, ``--preprocessing``, ``--pooling`` and ``--device``: which VGG-19 to load, and where."""
    parser.add_argument(
        "--weights",
        default="caffe",
        help="VGG-19 weights: caffe (seed default), torchvision, hf:REPO[:FILE][@REV] or hf://REPO[@REV][/FILE], "
        "a .pth/.safetensors path, or random[:SEED]",
    )
    parser.add_argument(
        "--preprocessing",
        default=None,
        choices=sorted(PREPROCESSINGS),
        help="override the preprocessing that belongs to the weights (caffe: BGR 0..255 minus mean; torchvision: RGB 0..1, mean/std)",
    )
    parser.add_argument(
        "--pooling", default="max", choices=POOLINGS, help="pooling layers: max (VGG) or avg (Gatys' choice)"
    )
    parser.add_argument(
        "--device",
        default="auto",
        help=f"where to run: {', '.join(DEVICE_CHOICES)} or cuda:N; auto picks CUDA, then Apple's MPS, then the CPU",
    )


# How each StylizeConfig field is read from the command line, in the order --help lists them.
# Defaults come from StylizeConfig itself; help texts from each command (see add_stylize_args).
_STYLIZE_FLAGS: dict[str, dict[str, Any]] = {
    "preset": {"choices": sorted(PRESETS)},
    "size": {"type": int},
    "iterations": {"type": int},
    "optimizer": {"choices": OPTIMIZERS},
    "lr": {"type": float},
    "init": {"metavar": "|".join(INITS) + "|PATH"},
    "seed": {"type": int},
    "content_weight": {"type": float},
    "style_weight": {"type": float},
    "tv_weight": {"type": float},
    "style_blend": {"type": float, "nargs": "+", "metavar": "W"},
    "preserve_color": {"action": "store_true"},
    "scales": {"type": int},
    "tolerance": {"type": float},
    "precision": {"choices": PRECISIONS},
    "channels_last": {"action": argparse.BooleanOptionalAction},
    "style_scale": {"type": float, "metavar": "F"},
    "style_size": {"type": int, "metavar": "PX"},
    "content_layers": {"metavar": "LAYER[:W],..."},
    "style_layers": {"metavar": "LAYER[:W],..."},
    "style_loss": {"choices": STYLE_LOSSES},
    "color": {"choices": COLORS},
    "mask": {"metavar": "PATH"},
    "style_masks": {"nargs": "+", "metavar": "PATH", "flag": "--style-mask"},
    "ema": {"type": float, "metavar": "DECAY"},
    "padding": {"choices": PADDINGS},
    "scale_spacing": {"choices": tuple(SCALE_SPACINGS)},
    "min_size": {"type": int, "metavar": "PX"},
}


#: What each stylize flag means, for every command that offers it.
STYLIZE_HELP: dict[str, str] = {
    "preset": "loss layers, weights and normalisations",
    "size": "longer side of the output in px",
    "iterations": "optimiser iterations in total (over all scales)",
    "optimizer": "Adam (seed) or L-BFGS (fewer iterations)",
    "lr": "learning rate in grey levels per step (default: 10 Adam, 1 L-BFGS)",
    "init": "start from the content, seeded noise, the style, or an image file (e.g. a smaller result to refine)",
    "seed": "random seed (noise init); same seed + settings = same image",
    "content_weight": "content loss weight (default: the preset's)",
    "style_weight": "style loss weight (default: the preset's)",
    "tv_weight": "total-variation weight (default: the preset's)",
    "style_blend": "one weight per style image",
    "preserve_color": "keep the content's colours (luminance-only transfer)",
    "scales": "coarse-to-fine scales (3 = size/4, size/2, size)",
    "tolerance": "stop early when the loss changes less than this (relative) over 10 iterations",
    "precision": "bf16: convolutions under bf16 autocast (fast on GPUs; Gram matrices and losses stay fp32)",
    "channels_last": "NHWC activations, the fastest conv layout for oneDNN and cuDNN (bench/bench_floor.py)",
    "style_scale": "style images' size relative to the output (brush-stroke size): 0.5 finer, 2 coarser",
    "style_size": "style images' longer side in px at the full output size (instead of --style-scale)",
    "content_layers": "content layers with optional weights, e.g. relu4_2 or relu3_1:0.5,relu4_1 (default: the preset's)",
    "style_layers": "style layers with optional weights (unweighted ones share equally; default: the preset's)",
    "style_loss": "gram: Gram matrices (Gatys); meancov: feature means and covariances (2-Wasserstein), "
    "keeps the style's colour saturation; its values are ~20x the Gram loss, so lower --style-weight",
    "color": "luminance: keep the content's colours (as --preserve-color); histogram: recolour the style "
    "images to the content's RGB mean and covariance first",
    "mask": "greyscale content mask: style where white, the content kept where black, soft edges blend",
    "style_masks": "one greyscale mask per style image: each style is matched in its own region",
    "ema": "average the iterates with this decay (e.g. 0.9); the output is the average",
    "padding": "first conv's padding: replicate reduces dark/bright edge artefacts",
    "scale_spacing": "ratio between coarse-to-fine sizes: 2 (halving) or sqrt2 (more, gentler steps)",
    "min_size": "coarse-to-fine from this longer side up to --size (instead of --scales)",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only where it says something: not for None or False, not for a required
    flag, and not where the help text already explains its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or action.required or "(default" in text:
            return text
        return super()._get_help_string(action)


def add_stylize_args(parser: argparse.ArgumentParser, helps: Mapping[str, str | None]) -> None:
    """A flag for each :class:`StylizeConfig` field named in ``helps`` (field -> help text, None for none).

    Each command picks the settings it exposes and describes them in its own words; the type,
    choices and default of a flag are the same everywhere. :func:`stylize_config_from_args`
    reads them back.

    >>> add_stylize_args(parser, {"preset": "loss preset", "size": "longer side in px"})   # doctest: +SKIP
    """
    unknown = set(helps) - set(_STYLIZE_FLAGS)
    if unknown:
        raise ValueError(f"no stylize flag for {', '.join(sorted(unknown))}")
    defaults = StylizeConfig()
    for name, spec in _STYLIZE_FLAGS.items():
        if name in helps:
            spec = dict(spec)
            flag = spec.pop("flag", "--" + name.replace("_", "-"))
            parser.add_argument(flag, dest=name, default=getattr(defaults, name), help=helps[name], **spec)


def check_output_path(path: str | os.PathLike, flag: str, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a Path if a file can be written there, else a one-line UserError naming ``flag``.

    Checked before any network loads or work starts, so a typo never costs a finished run.

    >>> check_output_path("out/result.png", "-o", (".png", ".jpg"))   # doctest: +SKIP
    """
    target = Path(path)
    if suffixes and target.suffix.lower() not in suffixes:
        raise UserError(f"{flag} {target}: must end in {', '.join(suffixes)}")
    if target.is_dir():
        raise UserError(f"{flag} {target}: is a folder; give a file name")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"{flag} {target}: the folder {folder} does not exist")
    try:  # really create a file there: permission bits say nothing for root or for /proc-like folders
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"{flag} {target}: not writable ({exc.strerror or type(exc).__name__})") from None
    return target


def load_images_from_args(
    content: str, styles: list[str], size: int, style_size: int | None = None
) -> tuple[Image.Image, list[Image.Image]]:
    """The content and style images, read and validated (at most ``size`` px; styles at most ``style_size``
    when given) before any network loads."""
    content_image = load_image(content, max_side=size, name=input_label("content image", content))
    style_side = style_size or size
    style_images = [
        load_image(s, max_side=style_side, name=input_label(f"style image {i + 1}", s)) for i, s in enumerate(styles)
    ]
    return content_image, style_images


def load_model_from_args(args: argparse.Namespace, last_layer: str) -> VGGFeatures:
    """The frozen VGG trunk the arguments ask for; warns on stderr when the weights are random."""
    model = load_vgg(
        args.weights, last_layer=last_layer, pooling=args.pooling, preprocessing=args.preprocessing, device=args.device
    )
    if model.has_random_weights:
        print(RANDOM_WARNING.format(source=model.weight_source), file=sys.stderr)
    return model


def stylize_config_from_args(args: argparse.Namespace, **overrides: Any) -> StylizeConfig:
    """A StylizeConfig from the parsed flags whose names match its fields (others keep defaults)."""
    fields = {f.name for f in dataclasses.fields(StylizeConfig)}
    values = {name: value for name, value in vars(args).items() if name in fields}
    return StylizeConfig(**{**values, **overrides})
