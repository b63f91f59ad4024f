"""The optimisation loop: the prepared run's scales, coarse to fine, each optimised for its share of iterations.

The optimised variable is the image itself in RGB 0..255, whatever the weights' preprocessing (the
network preprocesses inside), so Adam's learning rate of 10 means "ten grey levels per step" for
every weight source, as in the seed.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from nst_core.core.devices import prepare_backend
from nst_core.core.errors import UserError
from nst_core.image.color import combine_luminance_chroma
from nst_core.image.io import tensor_to_pil
from nst_core.nst.stylize.config import DEFAULT_LR, StylizeConfig
from nst_core.nst.stylize.evaluators import Evaluator, View, dense_evaluator, targets_at, tiled_evaluator
from nst_core.nst.stylize.inputs import PreparedInputs, initial_image
from nst_core.nst.stylize.planning import PreparedRun
from nst_core.nst.tiling import EvaluationCancelled


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


def stylize(
    prepared: PreparedRun,
    *,
    callback: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
) -> StylizeResult:
    """Run the prepared plan: optimise an image to have the content's features and the styles' statistics.

    ``callback`` receives a :class:`Progress` after each iteration (and each tile at tiled scales);
    setting ``cancel`` stops the run at the next iteration or tile, keeping the image so far.

    >>> from nst_core.model.weights import load_vgg
    >>> from nst_core.nst.stylize import StylizeConfig, prepare
    >>> model = load_vgg("random:0", last_layer="relu5_3")
    >>> result = stylize(prepare(model, "examples/content/lakeside.jpg", ["examples/style/swirls.jpg"],
    ...                          StylizeConfig(size=64, iterations=5)))     # doctest: +SKIP
    >>> result.image.size                                                   # doctest: +SKIP
    (64, 48)
    """
    config, plan, device = prepared.config, prepared.plan, prepared.device
    prepare_backend(device)
    generator = torch.Generator().manual_seed(config.seed)
    run = _RunState(config, prepared.inputs.images, callback, cancel)
    if prepared.time_plan is not None:
        run.started, run.deadline = prepared.time_plan.started, prepared.time_plan.deadline
    image = initial_image(prepared.inputs, plan.sizes[0], generator).to(device)
    carried: dict | None = None  # Adam's moments, resized with the image from scale to scale
    # On a time budget each scale runs until its share of the time is spent, not for a count.
    counts = config.scale_iterations(plan.sizes) if run.deadline is None else [100_000] * len(plan.sizes)
    shares = prepared.time_plan.schedule.time_weights(len(plan.sizes)) if prepared.time_plan else []
    for scale, (wh, steps) in enumerate(zip(plan.sizes, counts)):
        if scale > 0:
            # Carry the coarse result (its average, with --ema) up: the fine scale refines instead of starting over.
            start = run.average.value() if run.average is not None else image.detach()
            image = _resize(start, wh, "bicubic").clamp(0, 255)
        t0 = time.perf_counter()
        run.view = View.at(prepared.inputs, wh, device)
        evaluate = _scale_evaluator(prepared, scale, generator, run)
        run.timings["targets"] += time.perf_counter() - t0
        evaluate = run.view.masked(evaluate)
        if config.optimizer == "lbfgs" or config.pyramid_levels > 1:  # neither can clamp its iterate in place
            evaluate = _within_range(evaluate)
        image = image.detach().contiguous().requires_grad_(True)
        run.average = _Average(image, config.ema) if config.ema is not None else None
        optimizer = _make_optimizer(config, image, carried)
        run.start_scale(scale, shares, wh)
        run.stopped = _optimise_scale(evaluate, image, optimizer, steps, scale, run)
        carried = optimizer.state.get(image) if isinstance(optimizer, torch.optim.Adam) else None
        if run.stopped == "cancelled":
            break
        # A converged coarse scale hands on early: the finer scales still have detail to add (on a
        # time budget, they share the time it left).
    return run.result(image)


def _scale_evaluator(prepared: PreparedRun, scale: int, generator: torch.Generator, run: _RunState) -> Evaluator:
    """The objective at one scale as the plan says: whole (targets computed here), or in tiles."""
    config, inputs = prepared.config, prepared.inputs
    wh, tile = prepared.plan.sizes[scale], prepared.plan.tiles[scale]
    if tile is None:
        targets = targets_at(prepared.network, inputs.preset, inputs.images, wh, config.style_blend, run.view.guides)
        layout = torch.channels_last if config.channels_last else torch.contiguous_format
        return dense_evaluator(prepared.network, inputs.preset, targets, inputs.weights, config.precision, layout)
    on_tile = partial(run.report_tile, scale)
    return tiled_evaluator(prepared.network, inputs, wh, tile, run.view.guides, generator, run.cancel, on_tile)


def _within_range(evaluate: Evaluator) -> Evaluator:
    """The objective of the image clamped to 0..255, with no gradient where the clamp is active.

    For L-BFGS, instead of clamping the iterate after each step: moving the iterate behind its back
    breaks its curvature pairs (measured on chelsea at 451x300 in 60 s: 333x the reference's judged loss
    with the in-place clamp, 1.98x with this). The output is the clamped image: what L-BFGS minimises
    is what is judged.
    """

    def evaluate_clamped(image: torch.Tensor) -> dict[str, float]:
        pixels = image.detach()
        seen = pixels.clamp(0, 255).requires_grad_(True)
        terms = evaluate(seen)
        assert seen.grad is not None  # every evaluator leaves the gradient of its input
        image.grad = seen.grad * ((pixels >= 0) & (pixels <= 255))
        return terms

    return evaluate_clamped


def _decayed_lr(config: StylizeConfig, progress: float) -> float:
    """Half a cosine from the learning rate down to ``lr_decay`` of it as ``progress`` goes 0 -> 1.

    >>> round(_decayed_lr(StylizeConfig(lr_decay=0.1), 0.5), 3)
    5.5
    """
    final = config.learning_rate * (config.lr_decay or 1.0)
    return final + (config.learning_rate - final) * 0.5 * (1 + math.cos(math.pi * progress))


def _set_learning_rate(optimizer: Optimizer, learning_rate: float) -> None:
    """Set an Adam-driven optimiser's rate (a schedule's step); L-BFGS keeps its own step size."""
    if isinstance(optimizer, _PyramidAdam):
        optimizer.set_learning_rate(learning_rate)
    elif isinstance(optimizer, torch.optim.Adam):
        optimizer.param_groups[0]["lr"] = learning_rate


def _resize(t: torch.Tensor, wh: tuple[int, int], mode: str) -> torch.Tensor:
    return F.interpolate(t, size=(wh[1], wh[0]), mode=mode, align_corners=False)


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


def _make_optimizer(config: StylizeConfig, image: torch.Tensor, carried: dict | None) -> Optimizer:
    """The optimiser for one scale; Adam continues with the previous scale's moments resized to this one."""
    if config.optimizer == "lbfgs":
        return _WarmStartedLBFGS(image, config.learning_rate)
    if config.pyramid_levels > 1:
        return _PyramidAdam(image, config.pyramid_levels, config.learning_rate)
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


class _WarmStartedLBFGS:
    """L-BFGS after a few Adam steps at each scale.

    From the photo itself, L-BFGS's second step (its curvature guessed from one tiny gradient step)
    can overshoot by orders of magnitude and the run oscillates for tens of iterations or never
    recovers; five Adam steps first make the loss fall steadily. Measured on trained VGG-16, chelsea
    at 96/128/160 px, 30 iterations: judged style loss 0.054x/4.1x/0.014x of the photo's with plain
    L-BFGS and the in-place clamp, 0.016x/0.012x/0.010x with the warm-up and the clamped objective;
    at 451x300 in 60 s, 1.98x -> 1.65x the reference's judged loss from the warm-up alone.
    One L-BFGS iteration per step() call keeps progress, cancellation and previews per iteration; its
    curvature history persists across calls (within a scale: its vectors have the image's size).
    """

    WARMUP_STEPS = 5

    def __init__(self, image: torch.Tensor, learning_rate: float):
        self.image, self.steps = image, 0
        self.adam = torch.optim.Adam([image], lr=DEFAULT_LR["adam"])
        self.lbfgs = torch.optim.LBFGS([image], lr=learning_rate, max_iter=1, history_size=50)

    def step(self, closure: Callable[[], float]) -> None:
        self.steps += 1
        if self.steps > self.WARMUP_STEPS:
            self.lbfgs.step(closure)
            return
        self.adam.step(closure)
        with torch.no_grad():
            self.image.clamp_(0, 255)  # no curvature pairs yet to break


class _PyramidAdam:
    """Adam on a Laplacian pyramid of the image: ``levels`` tensors, each half the size of the next, whose
    upsampled sum is the image. A gradient step on a coarse level moves a whole region at once, so the
    large-scale layout changes as fast as the detail (STROTSS optimises its images so).

    ``image`` stays the composite: the objective's gradient with respect to the pixels (what the
    evaluators leave in ``image.grad``) is carried to the levels through the (linear) composition.
    The pyramid starts as the image in its finest level and zeros above, and is rebuilt at each scale.
    """

    def __init__(self, image: torch.Tensor, levels: int, learning_rate: float):
        self.image = image
        h, w = image.shape[-2:]
        shapes = [(max(1, math.ceil(h / 2**k)), max(1, math.ceil(w / 2**k))) for k in reversed(range(levels))]
        self.levels = [image.new_zeros((*image.shape[:2], *hw)) for hw in shapes[:-1]] + [image.detach().clone()]
        for level in self.levels:
            level.requires_grad_(True)
        # Each level's step is a 1/levels share of the rate, so a pixel moves at most ``lr`` per step, as on
        # the pixels (all levels at the full rate overshot: 20 steps at 64 px lowered the loss 20% instead of 45%).
        self.share = 1 / levels
        self.adam = torch.optim.Adam(self.levels, lr=learning_rate * self.share)

    def set_learning_rate(self, learning_rate: float) -> None:
        """The image's learning rate (a schedule's), shared over the levels as at the start."""
        self.adam.param_groups[0]["lr"] = learning_rate * self.share

    def compose(self) -> torch.Tensor:
        out = self.levels[0]
        for level in self.levels[1:]:
            out = F.interpolate(out, size=level.shape[-2:], mode="bilinear", align_corners=False) + level
        return out

    def step(self, closure: Callable[[], float]) -> None:
        closure()  # leaves d loss / d pixels in image.grad
        assert self.image.grad is not None
        grads = torch.autograd.grad(self.compose(), self.levels, self.image.grad)
        for level, grad in zip(self.levels, grads):
            level.grad = grad
        self.adam.step()
        with torch.no_grad():
            self.image.copy_(self.compose())


Optimizer = torch.optim.Adam | _WarmStartedLBFGS | _PyramidAdam


@dataclass
class _RunState:
    """The loop state that carries across scales: iterations done, the loss history, timings, why it stopped."""

    config: StylizeConfig
    images: PreparedInputs
    callback: Callable[[Progress], None] | None
    cancel: threading.Event | None
    started: float = field(default_factory=time.perf_counter)
    history: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: {"targets": 0.0, "optimize": 0.0})
    done: int = 0  # iterations finished, over all scales
    stopped: str = "done"
    view: View = field(default_factory=View)
    average: _Average | None = None
    deadline: float | None = None  # perf_counter time the run must end by (a time budget)
    scale_deadline: float | None = None  # the current scale's share of it
    scale_started: float = 0.0  # perf_counter time the current scale began
    step_s: float = 0.0  # the last iteration's seconds (scaled by pixels at a new scale): what the next may take
    pixels: int = 0  # of the current scale

    def start_scale(self, scale: int, weights: list[float], wh: tuple[int, int]) -> None:
        """On a time budget: this scale's share of the time left, by the schedule's ``weights`` of the
        scales not yet run (the last scale's share is all that is left)."""
        if self.pixels:
            self.step_s *= wh[0] * wh[1] / self.pixels  # iteration time grows with the pixels (a conservative guess)
        self.pixels = wh[0] * wh[1]
        self.scale_started = now = time.perf_counter()
        if self.deadline is not None:
            self.scale_deadline = now + max(0.0, self.deadline - now) * weights[scale] / sum(weights[scale:])

    def out_of_time(self) -> bool:
        """One more iteration, as long as the last, would end past this scale's share of the budget."""
        # 1.25: one iteration varies by a few tens of per cent on a busy machine; the margin keeps the run inside.
        return self.scale_deadline is not None and time.perf_counter() + 1.25 * self.step_s > self.scale_deadline

    def scale_progress(self, step: int, steps: int) -> float:
        """How far through the current scale the run is, 0..1: by its share of the time on a time budget,
        otherwise by iterations."""
        if self.scale_deadline is None:
            return step / steps
        span = max(self.scale_deadline - self.scale_started, 1e-9)
        return min(1.0, (time.perf_counter() - self.scale_started) / span)

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def picture(self, image: torch.Tensor) -> Image.Image:
        """What a person sees of the optimised tensor: the masked composite; with luminance-only transfer,
        its luminance on the content's colours. The same conversion for previews and the result."""
        result = tensor_to_pil(self.view.seen(image.detach().clamp(0, 255)).cpu())
        return combine_luminance_chroma(result, self.images.content) if self.config.luminance_only else result

    def record(self, terms: dict[str, float], scale: int, image: torch.Tensor) -> None:
        """Count one iteration: history, then progress (with a preview every ``preview_every``)."""
        self.done += 1
        if not math.isfinite(terms["total"]):
            raise UserError(
                f"the optimisation diverged (loss is {terms['total']}) at iteration {self.done}; "
                "lower the learning rate or the loss weights"
            )
        elapsed = time.perf_counter() - self.started
        self.history.append({"iteration": self.done, "scale": scale, "elapsed": elapsed, **terms})
        if self.callback is not None:
            every = self.config.preview_every
            shown = self.average.value() if self.average is not None else image
            preview = self.picture(shown) if every and self.done % every == 0 else None
            self.callback(Progress(self.done, self.config.iterations, dict(terms), preview, elapsed, scale))

    def report_tile(self, scale: int, done: int, tiles: int) -> None:
        """Progress within a tiled step: ``done`` of ``tiles`` tiles, with the last iteration's losses."""
        if self.callback is not None:
            last = self.history[-1] if self.history else {}
            losses = {k: v for k, v in last.items() if k not in ("iteration", "scale", "elapsed")}
            elapsed = time.perf_counter() - self.started
            self.callback(Progress(self.done, self.config.iterations, losses, None, elapsed, scale, done, tiles))

    def converged(self, steps_this_scale: int) -> bool:
        """Relative change of the total loss over the last 10 iterations of this scale below ``tolerance``."""
        tolerance = self.config.tolerance
        if tolerance is None or steps_this_scale <= 10:
            return False
        before, now = self.history[-11]["total"], self.history[-1]["total"]
        return abs(before - now) <= tolerance * max(abs(now), 1e-12)

    def result(self, image: torch.Tensor) -> StylizeResult:
        """The run's result from the last iterate (its average, with ``ema``), with the timings completed."""
        picture = self.picture(self.average.value() if self.average is not None else image)
        self.timings["total"] = time.perf_counter() - self.started
        self.timings["per_iteration"] = self.timings["optimize"] / max(1, len(self.history))
        return StylizeResult(image=picture, history=self.history, timings=self.timings, stopped=self.stopped)


def _optimise_scale(
    evaluate: Evaluator, image: torch.Tensor, optimizer: Optimizer, steps: int, scale: int, run: _RunState
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
        if step > 0 and run.out_of_time():  # every scale makes one iteration: the output needs the finest
            return "done"
        if run.config.lr_decay is not None:
            _set_learning_rate(optimizer, _decayed_lr(run.config, run.scale_progress(step, steps)))
        t0 = time.perf_counter()
        try:
            optimizer.step(closure)
        except EvaluationCancelled:  # between two tiles of a step: the image is left as the last step made it
            return "cancelled"
        if isinstance(optimizer, torch.optim.Adam):  # L-BFGS sees the clamped image instead (_within_range)
            with torch.no_grad():
                image.clamp_(0, 255)  # stay a valid image: projected steps, which Adam tolerates
        if run.average is not None:
            run.average.update(image)
        run.step_s = time.perf_counter() - t0
        run.timings["optimize"] += run.step_s
        run.record(last_terms, scale, image)
        if run.converged(step + 1):  # compare within this scale only
            return "converged"
    return "done"
