"""What decides a stylization's output: :class:`StylizeConfig`, its validation, and the coarse-to-fine schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nst_core.core.errors import UserError
from nst_core.model.layers import LAYER_INDEX
from nst_core.nst.losses import STYLE_LOSSES, LossPreset, get_preset
from nst_core.nst.tiling import check_tile

OPTIMIZERS = ("adam", "lbfgs")
#: Precision the network runs in; Gram matrices and losses are always fp32 (see losses.gram_matrix).
PRECISIONS = ("fp32", "bf16")
#: Named starting images; ``init`` may also be the path of an image (e.g. a previous result to refine).
#: "palette": the content recoloured to the styles' RGB mean and covariance (measured: the fastest start).
INITS = ("content", "palette", "noise", "style")
COLORS = ("none", "luminance", "histogram")
PADDINGS = ("zeros", "replicate")
#: Ratio between neighbouring coarse-to-fine sizes: halving, or sqrt(2) (twice as many, gentler steps).
SCALE_SPACINGS = {"2": 2.0, "sqrt2": math.sqrt(2.0)}
#: How coarse-to-fine shares its iterations: as many at every scale, or as much *time* at every scale
#: (iterations in inverse proportion to pixels, so most of them are cheap coarse ones).
SCALE_SPLITS = ("iterations", "time")
DEFAULT_LR = {"adam": 10.0, "lbfgs": 1.0}


@dataclass
class StylizeConfig:
    """Everything that decides the output image. Same config + same inputs -> same image."""

    preset: str = "seed"
    size: int = 512  # longer side of the output, px
    iterations: int = 500  # in total, over all scales
    optimizer: str = "adam"
    lr: float | None = None  # None: 10 for Adam (seed), 1 for L-BFGS
    init: str = (
        "content"  # content | noise | style | an image path; the seed used "noise", content converges far sooner
    )
    seed: int = 0
    content_weight: float | None = None  # None: the preset's value
    style_weight: float | None = None
    tv_weight: float | None = None
    style_blend: list[float] | None = None  # one weight per style image; None: equal
    preserve_color: bool = False  # luminance-only transfer, content's colours kept (= color "luminance")
    scales: int = 1  # coarse-to-fine: 3 runs at size/4, size/2, size (with scale_spacing "2")
    tolerance: float | None = None  # stop when the total loss changes less than this (relative) over 10 iterations
    preview_every: int = 0  # send a preview image to the callback every k iterations (0: never)
    precision: str = "fp32"  # "bf16": convolutions under bf16 autocast (fast on GPUs and CPUs with bf16 units)
    channels_last: bool = True  # NHWC activations: oneDNN's and cuDNN's fastest conv layout
    style_scale: float = 1.0  # style images' longer side relative to the output's (brush-stroke size)
    style_size: int | None = None  # or the style images' longer side in px at the full output size
    content_layers: str | None = None  # "relu4_2" or "relu3_1:0.5,relu4_1"; None: the preset's
    style_layers: str | None = None
    style_loss: str = "gram"  # a name in losses.STYLE_LOSSES: "gram" or "meancov" (2-Wasserstein of means, covariances)
    color: str = "none"  # "luminance": as preserve_color; "histogram": style colours matched to the content's
    mask: str | None = None  # greyscale content mask: white stylized, black kept as the content
    style_masks: list[str] | None = None  # one greyscale mask per style image: where each style goes
    ema: float | None = None  # average the iterates with this decay; the result is the average
    padding: str = "zeros"  # the first conv's padding: "replicate" avoids dark-border artefacts
    scale_spacing: str = "2"  # coarse-to-fine size ratio: "2" or "sqrt2"
    min_size: int | None = None  # coarse-to-fine from this longer side up (number of scales follows)
    scale_split: str = "iterations"  # "time": iterations per scale in inverse proportion to its pixels
    max_memory: int | None = None  # bytes of peak RSS (device memory on a GPU) the run may reach; tiles when needed
    tile: int | None = None  # force tiles of this side (px) at every scale larger than it
    #: seconds the run may take from when it is prepared: optimiser, scales and iterations are planned to
    #: fit (nst_core.nst.stylize.time_budget); the output then depends on the machine's speed
    time_budget: float | None = None
    #: Adam's learning rate falls to this fraction of ``lr`` over each scale (half a cosine; over the
    #: scale's share of the time on a time budget); None: constant, as the seed
    lr_decay: float | None = None
    #: Adam on a Laplacian pyramid of this many levels instead of on the pixels (each level half the size
    #: of the next; the image is their upsampled sum, as STROTSS optimises); 1: the pixels
    pyramid_levels: int = 1

    def validate(self) -> None:
        """A UserError naming the first setting that is out of range, or two that contradict each other."""
        self._check_choices_and_ranges()
        self._check_controls()
        preset = self.loss_preset()  # layer lists and the preset name
        if self.time_budget is not None and not (
            isinstance(self.time_budget, (int, float)) and 0.1 <= self.time_budget <= 86400
        ):
            raise UserError(f"time budget must be between 0.1 and 86400 seconds, not {self.time_budget}")
        if self.max_memory is not None and not self.max_memory >= 2**20:
            raise UserError(f"max memory must be at least 1MB, not {self.max_memory} bytes")
        if self.tile is not None:
            check_tile(self.tile, preset.last_layer)
            if self.max_memory is not None:
                raise UserError(
                    "tile and max memory both decide the tiles: give one (--tile forces a size, --max-memory picks one)"
                )

    def _check_choices_and_ranges(self) -> None:
        """The optimiser, precision, init and the numeric ranges."""
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if not isinstance(self.init, str) or not self.init:
            raise UserError(f"init must be one of {', '.join(INITS)} or an image path, not {self.init!r}")
        if self.init not in INITS and not Path(self.init).is_file():
            raise UserError(f"init must be one of {', '.join(INITS)} or an image file; {self.init!r} is neither")
        if not 16 <= self.size <= 4096:
            raise UserError(f"size must be between 16 and 4096 px, not {self.size}")
        if not 1 <= self.iterations <= 100_000:
            raise UserError(f"iterations must be between 1 and 100000, not {self.iterations}")
        if not 1 <= self.scales <= 6:
            raise UserError(f"scales must be between 1 and 6, not {self.scales}")
        if self.lr is not None and not self.lr > 0:
            raise UserError(f"learning rate must be positive, not {self.lr}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UserError(f"{name.replace('_', ' ')} must be non-negative, not {value}")

    def _check_controls(self) -> None:
        """Style loss, colour, padding, style size, EMA, coarse-to-fine and masks, and their contradictions."""
        _choice("style loss", self.style_loss, tuple(STYLE_LOSSES))
        _choice("color", self.color, COLORS)
        _choice("padding", self.padding, PADDINGS)
        _choice("scale spacing", self.scale_spacing, tuple(SCALE_SPACINGS))
        _choice("scale split", self.scale_split, SCALE_SPLITS)
        if self.preserve_color and self.color == "histogram":
            raise UserError("preserve color and color histogram contradict each other: choose one")
        if not (math.isfinite(self.style_scale) and 0.05 <= self.style_scale <= 8):
            raise UserError(f"style scale must be between 0.05 and 8, not {self.style_scale}")
        if self.style_size is not None:
            if not 16 <= self.style_size <= 8192:
                raise UserError(f"style size must be between 16 and 8192 px, not {self.style_size}")
            if self.style_scale != 1.0:
                raise UserError("style size and style scale both set the style images' size: give one")
        if self.lr_decay is not None and not 0 < self.lr_decay <= 1:
            raise UserError(f"lr decay (the final learning rate over the first) must be in (0, 1], not {self.lr_decay}")
        if not 1 <= self.pyramid_levels <= 8:
            raise UserError(f"pyramid levels must be between 1 and 8, not {self.pyramid_levels}")
        if self.pyramid_levels > 1 and self.optimizer != "adam":
            raise UserError("a pyramid is optimised with adam: use --optimizer adam or --pyramid-levels 1")
        if self.ema is not None and not 0 < self.ema < 1:
            raise UserError(f"ema decay must be between 0 and 1 (exclusive), not {self.ema}")
        if self.min_size is not None:
            if not 16 <= self.min_size <= self.size:
                raise UserError(f"min size must be between 16 px and the size ({self.size}), not {self.min_size}")
            if self.scales != 1:
                raise UserError("min size and scales both set the coarse-to-fine scales: give one")
        elif self.scale_spacing != "2" and self.scales == 1:
            raise UserError("scale spacing needs several scales: add --scales N or --min-size PX")
        if self.mask is not None and not Path(self.mask).is_file():
            raise UserError(f"mask {self.mask}: no such file")
        for i, path in enumerate(self.style_masks or []):
            if not Path(path).is_file():
                raise UserError(f"style mask {i + 1} {path}: no such file")

    @property
    def learning_rate(self) -> float:
        """``lr``, or the optimiser's default when it is None."""
        return DEFAULT_LR[self.optimizer] if self.lr is None else self.lr

    @property
    def luminance_only(self) -> bool:
        """Luminance-only transfer (``preserve_color`` or ``color="luminance"``)."""
        return self.preserve_color or self.color == "luminance"

    def loss_preset(self) -> LossPreset:
        """The preset with this config's layer and style-loss choices (each flag overrides the preset's)."""
        preset = get_preset(self.preset)
        changes: dict[str, Any] = {"style_loss": self.style_loss}
        if self.content_layers is not None:
            changes["content_layers"] = parse_layers(self.content_layers, "content layers", default_weight=1.0)
        if self.style_layers is not None:
            changes["style_layers"] = parse_layers(self.style_layers, "style layers")
        return replace(preset, **changes) if changes != {"style_loss": preset.style_loss} else preset

    def scale_sizes(self, width: int, height: int) -> list[tuple[int, int]]:
        """(w, h) of each coarse-to-fine scale for an output of ``width`` x ``height``.

        >>> StylizeConfig(min_size=32, scale_spacing="sqrt2").scale_sizes(64, 48)
        [(32, 24), (45, 34), (64, 48)]
        """
        spacing = SCALE_SPACINGS[self.scale_spacing]
        count = self.scales
        if self.min_size is not None:
            count = 1 + int(math.floor(math.log(max(width, height) / self.min_size) / math.log(spacing) + 1e-9))
        return scale_sizes(width, height, count, spacing)

    def scale_iterations(self, sizes: list[tuple[int, int]]) -> list[int]:
        """Iterations at each of ``sizes`` (coarse to fine), ``iterations`` in all, as ``scale_split`` shares them.

        >>> StylizeConfig(iterations=21, scale_split="time").scale_iterations([(16, 12), (32, 24), (64, 48)])
        [16, 4, 1]
        """
        if self.scale_split == "time":
            return split_by_pixels(self.iterations, [w * h for w, h in sizes])
        return split_iterations(self.iterations, len(sizes))


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


def parse_layers(text: str, option: str, default_weight: float | None = None) -> dict[str, float]:
    """``"relu3_1:0.5,relu4_1"`` -> {layer: weight}; a layer without a weight gets ``default_weight``
    (None: an equal share, 1/number of layers, as the presets weight their style layers).

    >>> parse_layers("relu3_1:0.5,relu4_1", "style layers")
    {'relu3_1': 0.5, 'relu4_1': 0.5}
    """
    items = [part.strip() for part in str(text).split(",")]
    if not items or any(not item for item in items):
        raise UserError(f"{option}: give comma-separated layer names such as relu3_1:0.5,relu4_1, not {text!r}")
    share = 1.0 / len(items) if default_weight is None else default_weight
    layers: dict[str, float] = {}
    for item in items:
        name, _, weight_text = item.partition(":")
        name = name.strip()
        if name not in LAYER_INDEX:
            valid = ", ".join(n for n in LAYER_INDEX if n.startswith("relu"))
            raise UserError(f"{option}: unknown VGG-19 layer {name!r}; use one of {valid} (or conv/pool names)")
        if name in layers:
            raise UserError(f"{option}: layer {name} is given twice")
        try:
            weight = float(weight_text) if weight_text else share
        except ValueError:
            raise UserError(f"{option}: weight of {name} must be a number, not {weight_text!r}") from None
        if not (math.isfinite(weight) and weight >= 0):
            raise UserError(f"{option}: weight of {name} must be a non-negative number, not {weight_text}")
        layers[name] = weight
    if sum(layers.values()) <= 0:
        raise UserError(f"{option}: the layer weights are all zero")
    return layers


def scale_sizes(width: int, height: int, scales: int, spacing: float = 2.0) -> list[tuple[int, int]]:
    """(w, h) per scale, coarse to fine, each ``spacing`` times smaller than the next.

    >>> scale_sizes(64, 48, 3)
    [(16, 12), (32, 24), (64, 48)]
    """
    sizes = []
    for k in reversed(range(scales)):
        f = 2**k if spacing == 2.0 else spacing**k
        sizes.append((max(1, round(width / f)), max(1, round(height / f))))
    return sizes


def split_iterations(total: int, scales: int) -> list[int]:
    """``total`` iterations shared over ``scales``; the finer scales get the remainder.

    >>> split_iterations(10, 3)
    [3, 3, 4]
    """
    base, extra = divmod(total, scales)
    return [base + (1 if i >= scales - extra else 0) for i in range(scales)]


def split_by_pixels(total: int, pixels: list[int]) -> list[int]:
    """``total`` iterations shared in inverse proportion to ``pixels`` (equal time per scale), at least
    one per scale; what rounding leaves goes to the largest remainders.

    >>> split_by_pixels(10, [1, 4, 16])
    [7, 2, 1]
    """
    if total < len(pixels):
        return split_iterations(total, len(pixels))
    shares = [1.0 / p for p in pixels]
    exact = [total * s / sum(shares) for s in shares]
    counts = [max(1, math.floor(x)) for x in exact]
    for i in sorted(range(len(counts)), key=lambda i: counts[i] - exact[i]):  # largest remainder first
        if sum(counts) >= total:
            break
        counts[i] += 1
    while sum(counts) > total:  # the floors of 1 took too many: take from the largest share
        counts[counts.index(max(counts))] -= 1
    return counts
