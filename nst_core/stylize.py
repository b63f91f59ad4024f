"""The optimisation loop: an image is optimised so its VGG features match content and style.

The optimised variable is the image itself in RGB 0..255, whatever the weights'
preprocessing (the network preprocesses inside), so Adam's learning rate of 10 means
"ten grey levels per step" for every weight source, as in the seed.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from PIL import Image

from .color import combine_luminance_chroma, luminance_image, match_luminance
from .devices import prepare_backend
from .errors import UserError
from .images import input_label, load_image, pil_to_tensor, resize_max_side, tensor_to_pil
from .losses import LossPreset, LossWeights, Targets, compute_targets, get_preset, loss_terms
from .vgg import VGGFeatures, layer_index, min_input_side

OPTIMIZERS = ("adam", "lbfgs")
#: Precision the network runs in; Gram matrices and losses are always fp32 (see losses.gram_matrix).
PRECISIONS = ("fp32", "bf16")
INITS = ("content", "noise", "style")
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
    init: str = "content"  # the seed used "noise"; content converges in far fewer iterations
    seed: int = 0
    content_weight: float | None = None  # None: the preset's value
    style_weight: float | None = None
    tv_weight: float | None = None
    style_blend: list[float] | None = None  # one weight per style image; None: equal
    preserve_color: bool = False  # luminance-only transfer, content's colours kept
    scales: int = 1  # coarse-to-fine: 3 runs at size/4, size/2, size
    tolerance: float | None = None  # stop when the total loss changes less than this (relative) over 10 iterations
    preview_every: int = 0  # send a preview image to the callback every k iterations (0: never)
    precision: str = "fp32"  # "bf16": convolutions under bf16 autocast (fast on GPUs and CPUs with bf16 units)
    channels_last: bool = True  # NHWC activations: oneDNN's and cuDNN's fastest conv layout

    def validate(self) -> None:
        """A UserError naming the first setting that is out of range."""
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.init not in INITS:
            raise UserError(f"init must be one of {', '.join(INITS)}, not {self.init!r}")
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
        get_preset(self.preset)

    @property
    def learning_rate(self) -> float:
        """``lr``, or the optimiser's default when it is None."""
        return DEFAULT_LR[self.optimizer] if self.lr is None else self.lr


@dataclass
class Progress:
    """What a progress callback receives after each iteration."""

    iteration: int  # 1-based, counted over all scales
    total: int
    losses: dict[str, float]
    preview: Image.Image | None
    elapsed: float
    scale: int = 0  # index of the current scale


@dataclass
class StylizeResult:
    """The output image, the per-iteration loss history, timings (s) and why the run stopped."""

    image: Image.Image
    history: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    stopped: str = "done"  # "done" | "converged" | "cancelled"


@dataclass
class PreparedInputs:
    """Content and style images as the optimisation sees them (resized; luminance-only if asked)."""

    content: Image.Image  # the original content at output size (its colours are restored at the end)
    content_seen: Image.Image
    styles_seen: list[Image.Image]


def prepare_inputs(content, styles, size: int, preserve_color: bool) -> PreparedInputs:
    """Load, resize and (for colour preservation) convert inputs exactly as ``stylize`` does."""
    content_img = load_image(content, max_side=size, name=input_label("content image", content))
    if not styles:
        raise UserError("at least one style image is needed")
    style_imgs = [load_image(s, max_side=size, name=input_label(f"style image {i + 1}", s)) for i, s in enumerate(styles)]
    if preserve_color:
        content_seen = luminance_image(content_img)
        style_imgs = [match_luminance(s, content_img) for s in style_imgs]
        return PreparedInputs(content_img, content_seen, style_imgs)
    return PreparedInputs(content_img, content_img, style_imgs)


def scale_sizes(width: int, height: int, scales: int) -> list[tuple[int, int]]:
    """(w, h) per scale, coarse to fine, each half the next."""
    sizes = []
    for k in reversed(range(scales)):
        f = 2**k
        sizes.append((max(1, round(width / f)), max(1, round(height / f))))
    return sizes


def split_iterations(total: int, scales: int) -> list[int]:
    """``total`` iterations shared over ``scales``; the finer scales get the remainder."""
    base, extra = divmod(total, scales)
    return [base + (1 if i >= scales - extra else 0) for i in range(scales)]


def _initial_image(config: StylizeConfig, prepared: PreparedInputs, wh: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    w, h = wh
    if config.init == "content":
        return pil_to_tensor(prepared.content_seen.resize((w, h), Image.LANCZOS))
    if config.init == "style":
        return pil_to_tensor(prepared.styles_seen[0].resize((w, h), Image.LANCZOS))
    mean = torch.tensor(NOISE_MEAN_RGB).view(1, 3, 1, 1)
    return mean + NOISE_STD * torch.randn((1, 3, h, w), generator=generator)


def targets_at(model, preset, prepared: PreparedInputs, wh: tuple[int, int], blend=None) -> Targets:
    """Content and blended style targets for an output of size ``wh`` (what stylize and the judge both use)."""
    w, h = wh
    content_t = pil_to_tensor(prepared.content_seen.resize((w, h), Image.LANCZOS))
    # Style images keep their aspect; they shrink with the scale so brush strokes keep their size relative to the output.
    longest = max(w, h)
    style_ts = [pil_to_tensor(resize_max_side(s, longest)) for s in prepared.styles_seen]
    device = next(model.parameters()).device
    return compute_targets(model, preset, content_t.to(device), [s.to(device) for s in style_ts], blend)


def stylize(
    model: VGGFeatures,
    content,
    styles: list,
    config: StylizeConfig | None = None,
    callback: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
) -> StylizeResult:
    """Optimise an image to have ``content``'s features and ``styles``' Gram statistics.

    >>> from nst_core.weights import load_vgg
    >>> model = load_vgg("random:0", last_layer="relu5_3")
    >>> result = stylize(model, "examples/content/lakeside.jpg", ["examples/style/swirls.jpg"],
    ...                  StylizeConfig(size=64, iterations=5))          # doctest: +SKIP
    >>> result.image.size                                               # doctest: +SKIP
    (64, 48)
    """
    config = config or StylizeConfig()
    config.validate()
    preset = get_preset(config.preset)
    if len(model.features) <= layer_index(preset.last_layer):
        raise UserError(f"the network stops at {model.last_layer} but preset {preset.name!r} needs {preset.last_layer}")
    weights = LossWeights.from_preset(preset, config.content_weight, config.style_weight, config.tv_weight)
    prepared = prepare_inputs(content, styles, config.size, config.preserve_color)
    width, height = prepared.content.size
    sizes = scale_sizes(width, height, config.scales)
    need = min_input_side(preset.last_layer)
    if min(sizes[0]) < need:
        raise UserError(
            f"image too small: the coarsest scale is {sizes[0][0]}x{sizes[0][1]} px but layer {preset.last_layer} "
            f"needs at least {need} px per side; use a larger --size or fewer --scales"
        )

    device = next(model.parameters()).device
    prepare_backend(device)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    generator = torch.Generator().manual_seed(config.seed)

    def picture(image: torch.Tensor) -> Image.Image:
        """What a person sees of the optimised tensor: with --preserve-color, its luminance on the content's colours."""
        result = tensor_to_pil(image.detach().cpu())
        return combine_luminance_chroma(result, prepared.content) if config.preserve_color else result

    run = _RunState(config, picture, callback, cancel)
    image = _initial_image(config, prepared, sizes[0], generator).to(device)
    for scale, (wh, steps) in enumerate(zip(sizes, split_iterations(config.iterations, config.scales))):
        if scale > 0:
            # Carry the coarse result up: the fine scale refines instead of starting over.
            image = F.interpolate(image.detach(), size=(wh[1], wh[0]), mode="bicubic", align_corners=False).clamp(0, 255)
        t0 = time.perf_counter()
        targets = targets_at(model, preset, prepared, wh, config.style_blend)
        run.timings["targets"] += time.perf_counter() - t0

        evaluate = dense_evaluator(model, preset, targets, weights, config.precision, layout)
        image = image.detach().contiguous().requires_grad_(True)
        run.stopped = _optimise_scale(evaluate, image, steps, scale, run)
        if run.stopped != "done":
            break

    result = picture(image)
    run.timings["total"] = time.perf_counter() - run.started
    run.timings["per_iteration"] = run.timings["optimize"] / max(1, len(run.history))
    return StylizeResult(image=result, history=run.history, timings=run.timings, stopped=run.stopped)


#: The objective as the optimisers see it: ``evaluate(image)`` computes the loss terms of ``image`` (a leaf
#: tensor), leaves d(total)/d(image) in ``image.grad`` (replacing what was there), and returns the terms as
#: floats. The untiled evaluator is one forward and one backward; a tiled one may accumulate tile by tile.
Evaluator = Callable[[torch.Tensor], dict[str, float]]


def dense_evaluator(
    model: VGGFeatures, preset: LossPreset, targets: Targets, weights: LossWeights, precision: str = "fp32",
    layout: torch.memory_format = torch.channels_last,
) -> Evaluator:
    """The untiled :data:`Evaluator`: the whole image through the network at once."""
    device = next(model.parameters()).device

    def evaluate(image: torch.Tensor) -> dict[str, float]:
        image.grad = None
        with torch.enable_grad():
            # The optimised image stays contiguous (L-BFGS flattens it); only the network sees the layout.
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                terms = loss_terms(model, preset, image.contiguous(memory_format=layout), targets, weights)
            terms["total"].backward()
        return {k: float(v.detach()) for k, v in terms.items()}

    return evaluate


@dataclass
class _RunState:
    """The loop state that carries across scales: iterations done, the loss history, timings, why it stopped."""

    config: StylizeConfig
    picture: Callable[[torch.Tensor], Image.Image]  # the same conversion for previews and the result
    callback: Callable[[Progress], None] | None
    cancel: threading.Event | None
    started: float = field(default_factory=time.perf_counter)
    history: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: {"targets": 0.0, "optimize": 0.0})
    done: int = 0  # iterations finished, over all scales
    stopped: str = "done"

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

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
            preview = self.picture(image) if every and self.done % every == 0 else None
            elapsed = time.perf_counter() - self.started
            self.callback(Progress(self.done, self.config.iterations, dict(terms), preview, elapsed, scale))

    def converged(self, steps_this_scale: int) -> bool:
        """Relative change of the total loss over the last 10 iterations of this scale below ``tolerance``."""
        tolerance = self.config.tolerance
        if tolerance is None or steps_this_scale <= 10:
            return False
        before, now = self.history[-11]["total"], self.history[-1]["total"]
        return abs(before - now) <= tolerance * max(abs(now), 1e-12)


def _optimise_scale(evaluate: Evaluator, image: torch.Tensor, steps: int, scale: int, run: _RunState) -> str:
    """Run ``steps`` iterations on ``image`` (a leaf tensor) at one scale; returns why it stopped."""
    config = run.config
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam([image], lr=config.learning_rate)
    else:
        # One L-BFGS iteration per step() call keeps progress, cancellation and previews per iteration;
        # its curvature history persists across calls.
        optimizer = torch.optim.LBFGS([image], lr=config.learning_rate, max_iter=1, history_size=50)
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
        optimizer.step(closure)
        with torch.no_grad():
            image.clamp_(0, 255)  # stay a valid image; Adam is unaffected, L-BFGS tolerates the projection
        run.timings["optimize"] += time.perf_counter() - t0
        run.record(last_terms, scale, image)
        if run.converged(step + 1):  # compare within this scale only
            return "converged"
    return "done"
