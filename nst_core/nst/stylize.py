"""The optimisation loop: an image is optimised so its VGG features match content and style.

The optimised variable is the image itself in RGB 0..255, whatever the weights'
preprocessing (the network preprocesses inside), so Adam's learning rate of 10 means
"ten grey levels per step" for every weight source, as in the seed.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nst_core.core.devices import prepare_backend
from nst_core.core.errors import UserError
from nst_core.image.color import combine_luminance_chroma, luminance_image, match_color, match_luminance
from nst_core.image.io import input_label, load_image, pil_to_tensor, resize_max_side, tensor_to_pil
from nst_core.model.layers import LAYER_INDEX, layer_index, min_input_side
from nst_core.model.vgg import VGGFeatures
from nst_core.nst.losses import STYLE_LOSSES, LossPreset, LossWeights, Targets, compute_targets, get_preset, loss_terms
from nst_core.nst.memory import SAFETY, memory_in_use
from nst_core.nst.tiling import (
    EvaluationCancelled,
    TiledEvaluator,
    TiledNetwork,
    TilePlan,
    check_tile,
    plan_tiles,
    tiled_targets,
)

OPTIMIZERS = ("adam", "lbfgs")
#: Precision the network runs in; Gram matrices and losses are always fp32 (see losses.gram_matrix).
PRECISIONS = ("fp32", "bf16")
#: Named starting images; ``init`` may also be the path of an image (e.g. a previous result to refine).
INITS = ("content", "noise", "style")
COLORS = ("none", "luminance", "histogram")
PADDINGS = ("zeros", "replicate")
#: Ratio between neighbouring coarse-to-fine sizes: halving, or sqrt(2) (twice as many, gentler steps).
SCALE_SPACINGS = {"2": 2.0, "sqrt2": math.sqrt(2.0)}
DEFAULT_LR = {"adam": 10.0, "lbfgs": 1.0}
# The seed initialised with 0.001*randn in mean-subtracted space: the mean colour plus faint noise.
NOISE_MEAN_RGB = (123.68, 116.779, 103.939)
NOISE_STD = 0.001


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
    style_loss: str = "gram"  # "gram" or "meancov" (2-Wasserstein of feature means and covariances)
    color: str = "none"  # "luminance": as preserve_color; "histogram": style colours matched to the content's
    mask: str | None = None  # greyscale content mask: white stylized, black kept as the content
    style_masks: list[str] | None = None  # one greyscale mask per style image: where each style goes
    ema: float | None = None  # average the iterates with this decay; the result is the average
    padding: str = "zeros"  # the first conv's padding: "replicate" avoids dark-border artefacts
    scale_spacing: str = "2"  # coarse-to-fine size ratio: "2" or "sqrt2"
    min_size: int | None = None  # coarse-to-fine from this longer side up (number of scales follows)
    max_memory: int | None = None  # bytes of peak RSS (device memory on a GPU) the run may reach; tiles when needed
    tile: int | None = None  # force tiles of this side (px) at every scale larger than it

    def validate(self) -> None:
        """A UserError naming the first setting that is out of range, or two that contradict each other."""
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
        _choice("style loss", self.style_loss, STYLE_LOSSES)
        _choice("color", self.color, COLORS)
        _choice("padding", self.padding, PADDINGS)
        _choice("scale spacing", self.scale_spacing, tuple(SCALE_SPACINGS))
        if self.preserve_color and self.color == "histogram":
            raise UserError("preserve color and color histogram contradict each other: choose one")
        if not (math.isfinite(self.style_scale) and 0.05 <= self.style_scale <= 8):
            raise UserError(f"style scale must be between 0.05 and 8, not {self.style_scale}")
        if self.style_size is not None:
            if not 16 <= self.style_size <= 8192:
                raise UserError(f"style size must be between 16 and 8192 px, not {self.style_size}")
            if self.style_scale != 1.0:
                raise UserError("style size and style scale both set the style images' size: give one")
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
        preset = self.loss_preset()  # layer lists and the preset name
        if self.max_memory is not None and not self.max_memory >= 2**20:
            raise UserError(f"max memory must be at least 1MB, not {self.max_memory} bytes")
        if self.tile is not None:
            check_tile(self.tile, preset.last_layer)
            if self.max_memory is not None:
                raise UserError(
                    "tile and max memory both decide the tiles: give one (--tile forces a size, --max-memory picks one)"
                )

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
        changes: dict = {"style_loss": self.style_loss}
        if self.content_layers is not None:
            changes["content_layers"] = parse_layers(self.content_layers, "content layers", default_weight=1.0)
        if self.style_layers is not None:
            changes["style_layers"] = parse_layers(self.style_layers, "style layers")
        return replace(preset, **changes) if changes != {"style_loss": preset.style_loss} else preset

    def scale_sizes(self, width: int, height: int) -> list[tuple[int, int]]:
        """(w, h) of each coarse-to-fine scale for an output of ``width`` x ``height``."""
        spacing = SCALE_SPACINGS[self.scale_spacing]
        count = self.scales
        if self.min_size is not None:
            count = 1 + int(math.floor(math.log(max(width, height) / self.min_size) / math.log(spacing) + 1e-9))
        return scale_sizes(width, height, count, spacing)


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


@dataclass
class Progress:
    """What a progress callback receives after each iteration and, at tiled scales, after each tile
    (then ``tile`` > 0, ``iteration`` counts the iterations finished and ``losses`` are the last iteration's)."""

    iteration: int  # 1-based, counted over all scales
    total: int
    losses: dict[str, float]
    preview: Image.Image | None
    elapsed: float
    scale: int = 0  # index of the current scale
    tile: int = 0  # a tile report: tiles done in this step (0: an iteration's report)
    tiles: int = 0  # a tile report: tiles per step at this scale


@dataclass
class StylizeResult:
    """The output image, the per-iteration loss history, timings (s) and why the run stopped."""

    image: Image.Image
    history: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    stopped: str = "done"  # "done" | "converged" | "cancelled"


@dataclass
class PreparedInputs:
    """Content and style images as the optimisation sees them (resized; luminance-only or colour-matched if asked)."""

    content: Image.Image  # the original content at output size (its colours are restored at the end)
    content_seen: Image.Image
    styles_seen: list[Image.Image]
    style_scale: float = 1.0  # style images' longer side relative to the output's
    style_size: int | None = None  # or their longer side at the full output size, px

    def style_side(self, longest: int) -> int | None:
        """Longer side of the style images for an output whose longer side is ``longest`` (None: as before,
        the output's, never enlarged)."""
        if self.style_size is not None:
            return max(1, round(self.style_size * longest / max(self.content.size)))
        if self.style_scale != 1.0:
            return max(1, round(longest * self.style_scale))
        return None


def style_load_side(size: int, style_scale: float = 1.0, style_size: int | None = None) -> int:
    """The longer side style images are loaded at: large enough for the style size asked, so a style
    target is a reduction of the original, never an enlargement of a reduction."""
    return max(size, style_size or 0, math.ceil(size * style_scale))


def prepare_inputs(
    content,
    styles,
    size: int,
    preserve_color: bool,
    color: str = "none",
    style_scale: float = 1.0,
    style_size: int | None = None,
) -> PreparedInputs:
    """Load, resize and (for colour preservation or matching) convert inputs exactly as ``stylize`` does."""
    content_img = load_image(content, max_side=size, name=input_label("content image", content))
    if not styles:
        raise UserError("at least one style image is needed")
    style_max = style_load_side(size, style_scale, style_size)
    style_imgs = [
        load_image(s, max_side=style_max, name=input_label(f"style image {i + 1}", s)) for i, s in enumerate(styles)
    ]
    if preserve_color or color == "luminance":
        content_seen = luminance_image(content_img)
        style_imgs = [match_luminance(s, content_img) for s in style_imgs]
        return PreparedInputs(content_img, content_seen, style_imgs, style_scale, style_size)
    if color == "histogram":
        style_imgs = [match_color(s, content_img) for s in style_imgs]
    return PreparedInputs(content_img, content_img, style_imgs, style_scale, style_size)


def scale_sizes(width: int, height: int, scales: int, spacing: float = 2.0) -> list[tuple[int, int]]:
    """(w, h) per scale, coarse to fine, each ``spacing`` times smaller than the next."""
    sizes = []
    for k in reversed(range(scales)):
        f = 2**k if spacing == 2.0 else spacing**k
        sizes.append((max(1, round(width / f)), max(1, round(height / f))))
    return sizes


def split_iterations(total: int, scales: int) -> list[int]:
    """``total`` iterations shared over ``scales``; the finer scales get the remainder."""
    base, extra = divmod(total, scales)
    return [base + (1 if i >= scales - extra else 0) for i in range(scales)]


def _initial_image(
    config: StylizeConfig, prepared: PreparedInputs, wh: tuple[int, int], generator: torch.Generator
) -> torch.Tensor:
    w, h = wh
    if config.init == "content":
        return pil_to_tensor(prepared.content_seen.resize((w, h), Image.LANCZOS))
    if config.init == "style":
        return pil_to_tensor(prepared.styles_seen[0].resize((w, h), Image.LANCZOS))
    if config.init == "noise":
        mean = torch.tensor(NOISE_MEAN_RGB).view(1, 3, 1, 1)
        return mean + NOISE_STD * torch.randn((1, 3, h, w), generator=generator)
    start = load_image(config.init, name=f"init image {config.init}")
    start = luminance_image(start) if config.luminance_only else start
    return pil_to_tensor(start.resize((w, h), Image.LANCZOS))


def load_mask(source, option: str, wh: tuple[int, int]) -> torch.Tensor:
    """A greyscale mask as a (1, 1, h, w) tensor in 0..1 at size ``wh`` (white 1, black 0; soft edges kept)."""
    image = load_image(source, name=input_label(option, source)).convert("L").resize(wh, Image.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).view(1, 1, wh[1], wh[0])


def targets_at(
    model, preset, prepared: PreparedInputs, wh: tuple[int, int], blend=None, guides: list[torch.Tensor] | None = None
) -> Targets:
    """Content and style targets for an output of size ``wh`` (what stylize and the judge both use)."""
    device = _device(model)
    content_t, style_ts = scale_images(prepared, wh, device)
    guides = None if guides is None else [g.to(device) for g in guides]
    return compute_targets(model, preset, content_t, style_ts, blend, guides)


def scale_images(
    prepared: PreparedInputs, wh: tuple[int, int], device: torch.device
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The content image at size ``wh`` and the style images at this scale's size, as tensors on ``device``."""
    w, h = wh
    content_t = pil_to_tensor(prepared.content_seen.resize((w, h), Image.LANCZOS))
    # Style images keep their aspect; they shrink with the scale so brush strokes keep their size relative to the output.
    side = prepared.style_side(max(w, h))
    if side is None:
        style_ts = [pil_to_tensor(resize_max_side(s, max(w, h))) for s in prepared.styles_seen]
    else:
        style_ts = [pil_to_tensor(_resize_longest(s, side)) for s in prepared.styles_seen]
    return content_t.to(device), [s.to(device) for s in style_ts]


def _resize_longest(image: Image.Image, side: int) -> Image.Image:
    w, h = image.size
    scale = side / max(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)


def _device(model) -> torch.device:
    return next(model.parameters()).device


class _Network:
    """The network as the losses call it, ``net(image, layers)``, with the first conv's padding chosen."""

    def __init__(self, model: VGGFeatures, padding: str):
        self.model, self.padding = model, padding

    def __call__(self, image: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        return self.model(image, layers, first_padding=self.padding)

    def parameters(self):
        return self.model.parameters()


def stylize(
    model: VGGFeatures,
    content,
    styles: list,
    config: StylizeConfig | None = None,
    callback: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
) -> StylizeResult:
    """Optimise an image to have ``content``'s features and ``styles``' Gram statistics.

    >>> from nst_core.model.weights import load_vgg
    >>> model = load_vgg("random:0", last_layer="relu5_3")
    >>> result = stylize(model, "examples/content/lakeside.jpg", ["examples/style/swirls.jpg"],
    ...                  StylizeConfig(size=64, iterations=5))          # doctest: +SKIP
    >>> result.image.size                                               # doctest: +SKIP
    (64, 48)
    """
    config = config or StylizeConfig()
    config.validate()
    preset = config.loss_preset()
    if len(model.features) <= layer_index(preset.last_layer):
        raise UserError(f"the network stops at {model.last_layer} but preset {preset.name!r} needs {preset.last_layer}")
    weights = LossWeights.from_preset(preset, config.content_weight, config.style_weight, config.tv_weight)
    prepared = prepare_inputs(
        content, styles, config.size, config.preserve_color, config.color, config.style_scale, config.style_size
    )
    if config.style_masks is not None and len(config.style_masks) != len(prepared.styles_seen):
        raise UserError(
            f"{len(config.style_masks)} style masks given for {len(prepared.styles_seen)} style images: give one per style"
        )
    width, height = prepared.content.size
    plan = plan_run(model, config, width, height)
    sizes = plan.sizes
    need = min_input_side(preset.last_layer)
    if min(sizes[0]) < need:
        raise UserError(
            f"image too small: the coarsest scale is {sizes[0][0]}x{sizes[0][1]} px but layer {preset.last_layer} "
            f"needs at least {need} px per side; use a larger --size or fewer --scales"
        )
    side = prepared.style_side(max(sizes[0]))
    if side is not None and side < need:
        raise UserError(
            f"style images too small: {side} px at the coarsest scale, but layer {preset.last_layer} needs {need}; "
            "raise --style-scale/--style-size or use fewer scales"
        )

    device = _device(model)
    prepare_backend(device)
    network = _Network(model, config.padding) if config.padding != "zeros" else model
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    generator = torch.Generator().manual_seed(config.seed)
    run = _RunState(config, prepared, callback, cancel)
    image = _initial_image(config, prepared, sizes[0], generator).to(device)
    carried: dict | None = None  # Adam's moments, resized with the image from scale to scale
    for scale, (wh, steps) in enumerate(zip(sizes, split_iterations(config.iterations, len(sizes)))):
        if scale > 0:
            # Carry the coarse result (its average, with --ema) up: the fine scale refines instead of starting over.
            start = run.average.value() if run.average is not None else image.detach()
            image = _resize(start, wh, "bicubic").clamp(0, 255)
        t0 = time.perf_counter()
        run.view = _View.at(config, prepared, wh, device)
        if plan.tiles[scale] is None:
            targets = targets_at(network, preset, prepared, wh, config.style_blend, run.view.guides)
            evaluate = dense_evaluator(network, preset, targets, weights, config.precision, layout)
        else:
            evaluate = _tiled_evaluator(
                network, preset, weights, prepared, wh, plan.tiles[scale], generator, run, scale
            )
        run.timings["targets"] += time.perf_counter() - t0
        if run.view.mask is not None:
            evaluate = run.view.masked(evaluate)
        image = image.detach().contiguous().requires_grad_(True)
        run.average = _Average(image, config.ema) if config.ema is not None else None
        optimizer = _make_optimizer(config, image, carried)
        run.stopped = _optimise_scale(evaluate, image, optimizer, steps, scale, run)
        carried = optimizer.state.get(image) if config.optimizer == "adam" else None
        if run.stopped != "done":
            break

    result = run.picture(run.average.value() if run.average is not None else image)
    run.timings["total"] = time.perf_counter() - run.started
    run.timings["per_iteration"] = run.timings["optimize"] / max(1, len(run.history))
    return StylizeResult(image=result, history=run.history, timings=run.timings, stopped=run.stopped)


def plan_run(model: VGGFeatures, config: StylizeConfig, width: int, height: int) -> TilePlan:
    """The scales of a run for an output of ``width`` x ``height`` and which of them are tiled (with
    ``max_memory``: what fits next to what the process or GPU already holds; with ``tile``: forced)."""
    preset = config.loss_preset()
    device = _device(model)
    # What the run may add, less a margin for the memory model's error.
    budget = None if config.max_memory is None else int(SAFETY * (config.max_memory - memory_in_use(device)))
    if budget is not None and budget <= 0:
        raise UserError(
            f"max memory {config.max_memory / 1e9:.2f} GB is less than this process already holds "
            f"({memory_in_use(device) / 1e9:.2f} GB with the network loaded)"
        )
    sizes = config.scale_sizes(width, height)
    return plan_tiles(model.widths, preset.layers, sizes, config.precision, budget, config.tile)


def _tiled_evaluator(
    network,
    preset: LossPreset,
    weights: LossWeights,
    prepared: PreparedInputs,
    wh: tuple[int, int],
    tile: int,
    generator: torch.Generator,
    run: _RunState,
    scale: int,
) -> Evaluator:
    """A :class:`TiledEvaluator` for one scale, its style targets computed tile by tile, reporting each tile."""
    config = run.config
    net = TiledNetwork(network, preset, tile, config.precision, config.channels_last, run.cancel)
    content_t, style_ts = scale_images(prepared, wh, _device(network))
    targets = tiled_targets(net, style_ts, config.style_blend, run.view.guides)

    def on_tile(done: int, tiles: int) -> None:
        if run.callback is not None:
            last = run.history[-1] if run.history else {}
            losses = {k: v for k, v in last.items() if k not in ("iteration", "scale")}
            elapsed = time.perf_counter() - run.started
            run.callback(Progress(run.done, config.iterations, losses, None, elapsed, scale, done, tiles))

    return TiledEvaluator(net, targets, weights, content_t, generator, on_tile)


#: The objective as the optimisers see it: ``evaluate(image)`` computes the loss terms of ``image`` (a leaf
#: tensor), leaves d(total)/d(image) in ``image.grad`` (replacing what was there), and returns the terms as
#: floats. The untiled evaluator is one forward and one backward; a tiled one may accumulate tile by tile.
Evaluator = Callable[[torch.Tensor], dict[str, float]]


def dense_evaluator(
    model: VGGFeatures,
    preset: LossPreset,
    targets: Targets,
    weights: LossWeights,
    precision: str = "fp32",
    layout: torch.memory_format = torch.channels_last,
) -> Evaluator:
    """The untiled :data:`Evaluator`: the whole image through the network at once."""
    device = _device(model)

    def evaluate(image: torch.Tensor) -> dict[str, float]:
        image.grad = None
        with torch.enable_grad():
            # The optimised image stays contiguous (L-BFGS flattens it); only the network sees the layout.
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                terms = loss_terms(model, preset, image.contiguous(memory_format=layout), targets, weights)
            terms["total"].backward()
        return {k: float(v.detach()) for k, v in terms.items()}

    return evaluate


def _resize(t: torch.Tensor, wh: tuple[int, int], mode: str) -> torch.Tensor:
    return F.interpolate(t, size=(wh[1], wh[0]), mode=mode, align_corners=False)


@dataclass
class _View:
    """What the network sees of the optimised image at one scale: with ``--mask``, the composite
    content + mask * (image - content), so black areas stay the content; and the style region guides."""

    content: torch.Tensor | None = None  # (1, 3, h, w), only with a mask
    mask: torch.Tensor | None = None  # (1, 1, h, w) in 0..1
    guides: list[torch.Tensor] | None = None  # pixel guides of the style statistics (None: the whole image)

    @classmethod
    def at(cls, config: StylizeConfig, prepared: PreparedInputs, wh: tuple[int, int], device: torch.device) -> _View:
        if config.mask is None and config.style_masks is None:
            return cls()
        mask = load_mask(config.mask, "mask", wh).to(device) if config.mask is not None else None
        content = (
            pil_to_tensor(prepared.content_seen.resize(wh, Image.LANCZOS)).to(device) if mask is not None else None
        )
        if config.style_masks is not None:
            guides = [
                load_mask(path, f"style mask {i + 1}", wh).to(device) for i, path in enumerate(config.style_masks)
            ]
            guides = [g * mask for g in guides] if mask is not None else guides  # no style where the content is kept
        else:
            guides = [mask] if mask is not None else None  # the style statistics of the stylized area only
        return cls(content, mask, guides)

    def seen(self, image: torch.Tensor) -> torch.Tensor:
        """The composite the network sees (and the output shows)."""
        if self.mask is None:
            return image
        return self.content + self.mask * (image - self.content)

    def masked(self, evaluate: Evaluator) -> Evaluator:
        """``evaluate`` applied to the composite; the gradient is chained back to the image by hand
        (d composite / d image = mask), so any evaluator, tiled or not, works unchanged."""

        def evaluate_composite(image: torch.Tensor) -> dict[str, float]:
            seen = self.seen(image.detach()).requires_grad_(True)
            terms = evaluate(seen)
            image.grad = self.mask * seen.grad
            return terms

        return evaluate_composite


class _Average:
    """Exponential moving average of the iterates, bias-corrected as Adam's moments are."""

    def __init__(self, image: torch.Tensor, decay: float):
        self.decay, self.steps = decay, 0
        self.total = torch.zeros_like(image.detach())

    def update(self, image: torch.Tensor) -> None:
        self.steps += 1
        self.total.mul_(self.decay).add_(image.detach(), alpha=1 - self.decay)

    def value(self) -> torch.Tensor:
        return self.total / (1 - self.decay**self.steps) if self.steps else self.total


def _make_optimizer(config: StylizeConfig, image: torch.Tensor, carried: dict | None) -> torch.optim.Optimizer:
    """The optimiser for one scale; Adam continues with the previous scale's moments resized to this one."""
    if config.optimizer == "lbfgs":
        # One L-BFGS iteration per step() call keeps progress, cancellation and previews per iteration;
        # its curvature history persists across calls (within a scale: its vectors have the image's size).
        return torch.optim.LBFGS([image], lr=config.learning_rate, max_iter=1, history_size=50)
    optimizer = torch.optim.Adam([image], lr=config.learning_rate)
    if carried:
        wh = (image.shape[-1], image.shape[-2])
        optimizer.state[image] = {
            "step": carried["step"].clone(),
            # Bilinear: never overshoots, so the second moment stays non-negative.
            "exp_avg": _resize(carried["exp_avg"], wh, "bilinear"),
            "exp_avg_sq": _resize(carried["exp_avg_sq"], wh, "bilinear").clamp_min(0),
        }
    return optimizer


@dataclass
class _RunState:
    """The loop state that carries across scales: iterations done, the loss history, timings, why it stopped."""

    config: StylizeConfig
    prepared: PreparedInputs
    callback: Callable[[Progress], None] | None
    cancel: threading.Event | None
    started: float = field(default_factory=time.perf_counter)
    history: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: {"targets": 0.0, "optimize": 0.0})
    done: int = 0  # iterations finished, over all scales
    stopped: str = "done"
    view: _View = field(default_factory=_View)
    average: _Average | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def picture(self, image: torch.Tensor) -> Image.Image:
        """What a person sees of the optimised tensor: the masked composite; with luminance-only transfer,
        its luminance on the content's colours. The same conversion for previews and the result."""
        result = tensor_to_pil(self.view.seen(image.detach()).cpu())
        return combine_luminance_chroma(result, self.prepared.content) if self.config.luminance_only else result

    def record(self, terms: dict[str, float], scale: int, image: torch.Tensor) -> None:
        """Count one iteration: history, then progress (with a preview every ``preview_every``)."""
        self.done += 1
        if not math.isfinite(terms["total"]):
            raise UserError(
                f"the optimisation diverged (loss is {terms['total']}) at iteration {self.done}; "
                "lower the learning rate or the loss weights"
            )
        self.history.append({"iteration": self.done, "scale": scale, **terms})
        if self.callback is not None:
            every = self.config.preview_every
            shown = self.average.value() if self.average is not None else image
            preview = self.picture(shown) if every and self.done % every == 0 else None
            elapsed = time.perf_counter() - self.started
            self.callback(Progress(self.done, self.config.iterations, dict(terms), preview, elapsed, scale))

    def converged(self, steps_this_scale: int) -> bool:
        """Relative change of the total loss over the last 10 iterations of this scale below ``tolerance``."""
        tolerance = self.config.tolerance
        if tolerance is None or steps_this_scale <= 10:
            return False
        before, now = self.history[-11]["total"], self.history[-1]["total"]
        return abs(before - now) <= tolerance * max(abs(now), 1e-12)


def _optimise_scale(
    evaluate: Evaluator, image: torch.Tensor, optimizer: torch.optim.Optimizer, steps: int, scale: int, run: _RunState
) -> str:
    """Run ``steps`` iterations on ``image`` (a leaf tensor) at one scale; returns why it stopped."""
    last_terms: dict[str, float] = {}

    def closure() -> float:
        terms = evaluate(image)
        last_terms.clear()
        last_terms.update(terms)
        return terms["total"]

    for step in range(steps):
        if run.cancelled:
            return "cancelled"
        t0 = time.perf_counter()
        try:
            optimizer.step(closure)
        except EvaluationCancelled:  # between two tiles of a step: the image is left as the last step made it
            return "cancelled"
        with torch.no_grad():
            image.clamp_(0, 255)  # stay a valid image; Adam is unaffected, L-BFGS tolerates the projection
        if run.average is not None:
            run.average.update(image)
        run.timings["optimize"] += time.perf_counter() - t0
        run.record(last_terms, scale, image)
        if run.converged(step + 1):  # compare within this scale only
            return "converged"
    return "done"
