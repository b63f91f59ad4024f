"""Arguments and helpers shared by several `nst` subcommands."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nst_core.core.devices import DEVICE_CHOICES
from nst_core.core.errors import UserError
from nst_core.model.layers import ARCHITECTURES, POOLINGS, PREPROCESSINGS
from nst_core.model.vgg import VGGFeatures
from nst_core.model.weights import load_vgg
from nst_core.nst.stylize import StylizeConfig
from nst_core.workflows.settings import CLI_SETTINGS

RANDOM_WARNING = (
    "warning: VGG weights are random ({source}); results are mechanically right but visually meaningless. "
    "Use --weights caffe|torchvision|hf:REPO|PATH for real weights."
)


def add_weight_args(parser: argparse.ArgumentParser, arch: bool = False) -> None:
    """``--weights``, ``--preprocessing``, ``--pooling`` and ``--device``: which VGG to load, and where.

    ``arch``: also ``--arch``, for commands that run a VGG-16 as well as a VGG-19.
    """
    parser.add_argument(
        "--weights",
        default="caffe",
        help="VGG weights: caffe (VGG-19, seed default), torchvision (VGG-19), caffe-vgg16, torchvision-vgg16, "
        "hf:REPO[:FILE][@REV] or hf://REPO[@REV][/FILE], a .pth/.safetensors path (VGG-19 or VGG-16; "
        "`nst weights convert` makes one from ONNX or Keras .h5), or random[:SEED]",
    )
    if arch:
        parser.add_argument(
            "--arch",
            default=None,
            choices=sorted(ARCHITECTURES),
            help="the network's architecture where the weights cannot say: random weights are vgg19 unless "
            "--arch vgg16; a weights file's metadata or keys decide, and a contradicting --arch is an error",
        )
    parser.add_argument(
        "--preprocessing",
        default=None,
        choices=sorted(PREPROCESSINGS),
        help="override the preprocessing that belongs to the weights (caffe: BGR 0..255 minus mean; "
        "torchvision: RGB 0..1, mean/std)",
    )
    parser.add_argument(
        "--pooling", default="max", choices=POOLINGS, help="pooling layers: max (VGG) or avg (Gatys' choice)"
    )
    parser.add_argument(
        "--device",
        default="auto",
        help=f"where to run: {', '.join(DEVICE_CHOICES)} or cuda:N; auto picks CUDA, then Apple's MPS, then the CPU",
    )


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only where it says something: not for None or False, not for a required
    flag, and not where the help text already explains its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or action.required or "(default" in text:
            return text
        return super()._get_help_string(action)


def add_stylize_args(
    parser: argparse.ArgumentParser, names: Iterable[str] | None = None, helps: Mapping[str, str] | None = None
) -> None:
    """A flag for each command-line setting of the settings table (``nst_core.workflows.settings``) named
    in ``names`` (None: every one), in the table's order; ``helps`` rewords a flag's help for this command.

    The type, choices and spelling of a flag come from its table entry and its default from
    :class:`StylizeConfig`, the same everywhere. :func:`stylize_config_from_args` reads them back.

    >>> add_stylize_args(parser, ["preset", "size"], {"size": "longer side in px"})   # doctest: +SKIP
    """
    offered = {setting.name for setting in CLI_SETTINGS}
    chosen = offered if names is None else set(names)
    unknown = (chosen | set(helps or {})) - offered
    if unknown:
        raise ValueError(f"no stylize flag for {', '.join(sorted(unknown))}")
    defaults = StylizeConfig()
    for setting in CLI_SETTINGS:
        if setting.name in chosen and setting.cli is not None:
            parser.add_argument(
                setting.cli.flag(setting.name),
                dest=setting.name,
                default=getattr(defaults, setting.name),
                help=(helps or {}).get(setting.name, setting.cli.help),
                **setting.cli.argparse_kwargs(),
            )


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


def load_model_from_args(args: argparse.Namespace, last_layer: str) -> VGGFeatures:
    """The frozen VGG trunk the arguments ask for; warns on stderr when the weights are random."""
    model = load_vgg(
        args.weights,
        last_layer=last_layer,
        pooling=args.pooling,
        preprocessing=args.preprocessing,
        device=args.device,
        arch=getattr(args, "arch", None),
    )
    if model.has_random_weights:
        print(RANDOM_WARNING.format(source=model.weight_source), file=sys.stderr)
    return model


def stylize_config_from_args(args: argparse.Namespace, **overrides: Any) -> StylizeConfig:
    """A StylizeConfig from the parsed flags whose names match its fields (others keep defaults)."""
    fields = {f.name for f in dataclasses.fields(StylizeConfig)}
    values = {name: value for name, value in vars(args).items() if name in fields}
    return StylizeConfig(**{**values, **overrides})
