"""Arguments and helpers shared by several `nst` subcommands."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ..stylize import StylizeConfig
from ..vgg import PREPROCESSINGS
from ..weights import load_vgg

RANDOM_WARNING = (
    "warning: VGG-19 weights are random ({source}); results are mechanically right but visually meaningless. "
    "Use --weights caffe|torchvision|hf:REPO|PATH for real weights."
)


def add_weight_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights",
        default="caffe",
        help="VGG-19 weights: caffe (seed default), torchvision, hf:REPO[:FILE][@REV], a .pth/.safetensors path, or random[:SEED]",
    )
    parser.add_argument(
        "--preprocessing",
        default=None,
        choices=sorted(PREPROCESSINGS),
        help="override the preprocessing that belongs to the weights (caffe: BGR 0..255 minus mean; torchvision: RGB 0..1, mean/std)",
    )
    parser.add_argument("--pooling", default="max", choices=("max", "avg"), help="pooling layers: max (VGG) or avg (Gatys' choice)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def load_model_from_args(args, last_layer: str):
    """The frozen VGG trunk the arguments ask for; warns on stderr when the weights are random."""
    model = load_vgg(args.weights, last_layer=last_layer, pooling=args.pooling, preprocessing=args.preprocessing, device=args.device)
    if model.has_random_weights:
        print(RANDOM_WARNING.format(source=model.weight_source), file=sys.stderr)
    return model


def stylize_config_from_args(args, **overrides) -> StylizeConfig:
    """A StylizeConfig from the parsed flags whose names match its fields (others keep defaults)."""
    fields = {f.name for f in dataclasses.fields(StylizeConfig)}
    values = {name: value for name, value in vars(args).items() if name in fields}
    return StylizeConfig(**{**values, **overrides})
