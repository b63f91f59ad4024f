"""Tiles for images too large to stylize whole: geometry, and the plan of which scales to tile.

A tile is a window of the image processed by the network on its own; its *core* is the part
whose features count. Cores partition the image, so statistics summed over cores are the
statistics of the whole image; the rest of the window (the halo) gives the core's features
context, so they match the whole image's features closely.

Every core edge inside the image and every window origin lies on a multiple of the deepest
pooling stride (``stride``: 16 up to relu5_x), so each layer's pooling windows inside a tile
are those of the whole image and a core maps to a whole number of feature pixels at every
layer: feature crops are exact. The grid is shifted by a random multiple of the stride each
iteration (:func:`tile_grid` with a seeded generator), so no seam stays in one place.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nst_core.core.errors import UserError
from nst_core.model.layers import LAYER_TABLE, convs_up_to, layer_index, min_input_side
from nst_core.nst.cost import conv_macs, iteration_macs
from nst_core.nst.losses import (
    LossPreset,
    LossWeights,
    Moments,
    Targets,
    at_least_fp32,
    content_loss,
    style_loss_from_moments,
    style_moments,
    targets_from_stats,
    tv_loss,
)
from nst_core.nst.memory import format_bytes, largest_tile, min_tile, predict_step_peak


@dataclass(frozen=True)
class Tile:
    """One tile: its window ``[top, bottom) x [left, right)`` and core ``[core_top, core_bottom) x ...`` in image px."""

    top: int
    bottom: int
    left: int
    right: int
    core_top: int
    core_bottom: int
    core_left: int
    core_right: int

    def window(self, image: torch.Tensor) -> torch.Tensor:
        """The tile's window of an (N, C, H, W) image (a view)."""
        return image[..., self.top : self.bottom, self.left : self.right]

    def core_slices(self, factor: int, height: int, width: int) -> tuple[slice, slice]:
        """Rows and columns of the core in a layer with downsampling ``factor`` whose tile features are ``height`` x ``width``.

        Exact because core edges inside the image and the window origin are multiples of every
        factor up to the stride; at the image's bottom/right edge the core runs to the end of the
        features (the pixels that pooling drops there are dropped for the whole image too).
        """
        rows = slice((self.core_top - self.top) // factor, min((self.core_bottom - self.top) // factor, height))
        cols = slice((self.core_left - self.left) // factor, min((self.core_right - self.left) // factor, width))
        return rows, cols


def receptive_field(layer: str) -> int:
    """Side in image px of the input region one feature pixel of ``layer`` depends on (220 for relu5_3).

    >>> receptive_field("relu1_2"), receptive_field("relu3_3")
    (5, 40)
    """
    side, jump = 1, 1
    for _, kind in LAYER_TABLE[: layer_index(layer) + 1]:
        if kind == "conv":
            side += 2 * jump  # 3x3: one more input pixel each side, at the current spacing
        elif kind == "pool":
            side += jump  # 2x2, stride 2
            jump *= 2
    return side


def exact_halo(last_layer: str) -> int:
    """The halo that makes tiling exact: half the deepest layer's receptive field, rounded up to the stride.

    With it every core feature's receptive field lies inside its window (or is cut by the image's
    own border, as for the whole image), so core features equal the whole image's features.
    """
    stride = stride_of(last_layer)
    return -(-receptive_field(last_layer) // 2 // stride) * stride


def halo_for(tile: int, last_layer: str) -> int:
    """Context margin on each inner side of a tile: :func:`exact_halo`, or a quarter of the tile if that is less.

    A quarter keeps at least half the tile's side for its core; tiles smaller than
    ``2 * exact_halo(last_layer)`` pixels then trade exactness at the deepest layers for memory.
    """
    stride = stride_of(last_layer)
    return min(exact_halo(last_layer), tile // 4 // stride * stride)


def _cuts(length: int, core: int, offset: int) -> list[int]:
    """Core boundaries along one axis: 0, offset + k*core inside (0, length), length."""
    inner = list(range(offset if offset > 0 else core, length, core))
    return [0, *inner, length]


def _start(core_start: int, core_end: int, halo: int, stride: int) -> int:
    """Where a window starts: ``halo`` before its core, and at least ``stride`` before its end.

    The second rule is for a core at the image's far edge that is thinner than the stride: the
    network needs one stride of input, and the extra rows are context, not core.
    """
    return max(0, min(core_start - halo, (core_end - stride) // stride * stride))


def tile_grid(
    height: int, width: int, tile: int, stride: int, halo: int, generator: torch.Generator | None = None
) -> list[Tile]:
    """Overlapping tiles of side at most ``tile`` covering an image; cores partition it.

    ``tile`` is rounded down to a multiple of ``stride``. With a ``generator`` the grid is shifted
    by a random multiple of ``stride`` (fresh each call: one draw per iteration); without one it
    starts at the top-left corner. An image no larger than one tile is one tile, never shifted.
    ``halo``: the context margin (a multiple of ``stride``; see :func:`halo_for`).
    """
    tile = tile // stride * stride
    if tile < stride:
        raise ValueError(f"tile {tile} is smaller than the stride {stride}")
    if height <= tile and width <= tile:
        return [Tile(0, height, 0, width, 0, height, 0, width)]
    core = tile - 2 * halo
    steps = core // stride
    if generator is None:
        dy = dx = 0
    else:
        dy, dx = (int(v) * stride for v in torch.randint(0, steps, (2,), generator=generator))
    rows, cols = _cuts(height, core, dy), _cuts(width, core, dx)
    tiles = []
    for top, bottom in zip(rows, rows[1:]):
        for left, right in zip(cols, cols[1:]):
            tiles.append(
                Tile(
                    _start(top, bottom, halo, stride),
                    min(height, bottom + halo),
                    _start(left, right, halo, stride),
                    min(width, right + halo),
                    top,
                    bottom,
                    left,
                    right,
                )
            )
    return tiles


def check_tile(tile: int, last_layer: str) -> int:
    """``tile`` if the network's deepest layer can work in tiles of that side, else a one-line UserError."""
    need = min_tile(last_layer)
    if tile < need:
        raise UserError(
            f"tile {tile} px is too small: layer {last_layer} needs tiles of at least {need} px (one pixel after every pooling)"
        )
    return tile


def stride_of(last_layer: str) -> int:
    """The downsampling of the deepest pooling before ``last_layer`` (16 for relu5_x)."""
    return min_input_side(last_layer)


#: At most this many coarse-to-fine scales (as ``StylizeConfig.scales`` allows).
MAX_SCALES = 6


@dataclass(frozen=True)
class TilePlan:
    """What a run does at each scale: ``tiles[k]`` is the tile side at scale k, or None to run it whole."""

    sizes: list[tuple[int, int]]  # (w, h) per scale, coarse to fine
    tiles: list[int | None]
    predicted_peak: int  # bytes the run adds to what the process (or device) holds, at its largest step
    budget: int | None  # bytes the run may add (the budget less what is already held), None: no budget
    added_scales: int = 0  # coarser scales added so the composition is set untiled

    @property
    def tiled(self) -> bool:
        return any(t is not None for t in self.tiles)

    def describe(self, last_layer: str) -> str:
        """One line per scale: its size and whole, or its tile side, halo and tile count."""
        lines = []
        for (w, h), tile in zip(self.sizes, self.tiles):
            if tile is None:
                lines.append(f"{w}x{h} whole")
            else:
                halo = halo_for(tile, last_layer)
                count = len(tile_grid(h, w, tile, stride_of(last_layer), halo))
                lines.append(f"{w}x{h} in {count} tiles of {tile} px (halo {halo} px)")
        return ", ".join(lines)


def plan_tiles(
    widths: dict[str, int],
    layers: list[str],
    sizes: list[tuple[int, int]],
    precision: str,
    budget: int | None = None,
    tile: int | None = None,
) -> TilePlan:
    """Which scales to tile and with which tile side, so each step fits ``budget`` bytes (or uses ``tile``).

    With a budget, coarser scales (each half the next) are added until the coarsest fits whole, so
    the composition is set untiled and tiles only refine it. A scale runs whole when it fits; otherwise
    with the largest tile that fits. A forced ``tile`` applies to every scale larger than it. A UserError
    when even the smallest tile does not fit.
    """
    last = max(layers, key=layer_index)
    stride = stride_of(last)
    sizes = list(sizes)
    added = 0
    if budget is not None and tile is None:
        while (
            predict_step_peak(widths, layers, sizes[0][1], sizes[0][0], precision) > budget and len(sizes) < MAX_SCALES
        ):
            w, h = sizes[0]
            half = (max(1, round(w / 2)), max(1, round(h / 2)))
            if min(half) < stride:
                break
            sizes.insert(0, half)
            added += 1
    tiles: list[int | None] = []
    peak = 0
    for w, h in sizes:
        chosen: int | None = None
        if tile is not None:
            chosen = tile if max(w, h) > tile else None
        elif budget is not None and predict_step_peak(widths, layers, h, w, precision) > budget:
            chosen = largest_tile(widths, layers, h, w, precision, budget, stride)
            if chosen is None:
                need = predict_step_peak(widths, layers, h, w, precision, min_tile(last))
                raise UserError(
                    f"--max-memory: {w}x{h} px needs {format_bytes(need)} more than is already in use even in the smallest "
                    f"tiles, but the budget leaves {format_bytes(max(budget, 0))}; raise --max-memory or lower --size"
                )
        tiles.append(chosen)
        peak = max(peak, predict_step_peak(widths, layers, h, w, precision, chosen))
    return TilePlan(sizes, tiles, peak, budget, added)


def iteration_macs_tiled(widths: dict[str, int], preset: LossPreset, width: int, height: int, tile: int | None) -> int:
    """Conv MACs of one step at this size: whole, or tiled (per tile: a statistics forward, a forward and
    backward, and the content image's forward up to the content layers; halos included)."""
    last = preset.last_layer
    widths = {n: widths[n] for n in convs_up_to(last)}
    if tile is None:
        return iteration_macs(widths, height, width)
    content_widths = {n: widths[n] for n in convs_up_to(max(preset.content_layers, key=layer_index))}
    total = 0
    for t in tile_grid(height, width, tile, stride_of(last), halo_for(tile, last)):
        h, w = t.bottom - t.top, t.right - t.left
        total += (
            sum(conv_macs(widths, h, w).values())
            + iteration_macs(widths, h, w)
            + sum(conv_macs(content_widths, h, w).values())
        )
    return total


def measure_macs_per_second(model, preset: LossPreset, precision: str = "fp32", side: int = 128) -> float:
    """Conv MACs per second of a step on ``model``'s device: one timed forward and backward of a ``side`` px image."""
    device = next(model.parameters()).device
    net = TiledNetwork(model, preset, side, precision)
    image = (
        torch.rand((1, 3, side, side), generator=torch.Generator().manual_seed(0))
        .mul(255)
        .to(device)
        .requires_grad_(True)
    )
    net.features(image[..., :32, :32], preset.layers)  # warm-up: first-call overheads are not throughput
    started = time.perf_counter()
    feats = net.features(image, preset.layers)
    sum(f.square().mean() for f in feats.values()).backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = max(time.perf_counter() - started, 1e-6)
    return iteration_macs({n: model.widths[n] for n in convs_up_to(preset.last_layer)}, side, side) / elapsed


class EvaluationCancelled(Exception):
    """Raised between tiles when the run's cancel event is set (the step is abandoned, the image unchanged)."""


def layer_factor(layer: str) -> int:
    """How much ``layer``'s feature map is downsampled relative to the image (1, 2, 4, 8 or 16)."""
    return min_input_side(layer)


def whole_pixels(height: int, width: int, layer: str) -> int:
    """Feature pixels of ``layer`` for a whole ``height`` x ``width`` image."""
    factor = layer_factor(layer)
    return (height // factor) * (width // factor)


def crop_core(features: torch.Tensor, tile: Tile, layer: str) -> torch.Tensor:
    """The core of a tile's ``layer`` features (a view)."""
    rows, cols = tile.core_slices(layer_factor(layer), features.shape[-2], features.shape[-1])
    return features[..., rows, cols]


class TiledNetwork:
    """The network applied tile by tile: features of a window in the run's precision and layout, and
    the additive style statistics of a whole image summed over tile cores."""

    def __init__(
        self,
        model,
        preset: LossPreset,
        tile: int,
        precision: str = "fp32",
        channels_last: bool = True,
        cancel: threading.Event | None = None,
        halo: int | None = None,
    ):
        self.model, self.preset, self.tile, self.precision = model, preset, tile, precision
        self.stride = stride_of(preset.last_layer)
        self.halo = halo_for(tile, preset.last_layer) if halo is None else halo
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        self.cancel = cancel

    def grid(self, height: int, width: int, generator: torch.Generator | None = None) -> list[Tile]:
        """The tiles of an image this size (shifted at random when a generator is given)."""
        return tile_grid(height, width, self.tile, self.stride, self.halo, generator)

    def check_cancel(self) -> None:
        """Raise :class:`EvaluationCancelled` once the cancel event is set."""
        if self.cancel is not None and self.cancel.is_set():
            raise EvaluationCancelled

    def features(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """The network's features of ``x`` in fp32 (computed in the run's precision and layout)."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return {n: at_least_fp32(f) for n, f in self.model(x.contiguous(memory_format=self.layout), layers).items()}

    def tile_moments(
        self, feats: dict[str, torch.Tensor], tile: Tile, guides: list[torch.Tensor | None], height: int, width: int
    ) -> list[dict[str, Moments]]:
        """Style statistics of one tile's core, per region, on the common scale of the whole image.

        The core enters as a 0/1 pixel guide over the window (times the region's own guide): core
        edges lie on the stride, so every layer's pooled guide is exactly 0 or 1.
        """
        core = torch.zeros(
            (1, 1, tile.bottom - tile.top, tile.right - tile.left), device=next(iter(feats.values())).device
        )
        core[
            ...,
            tile.core_top - tile.top : tile.core_bottom - tile.top,
            tile.core_left - tile.left : tile.core_right - tile.left,
        ] = 1
        windows = [core if g is None else core * tile.window(g) for g in guides]
        scale = {n: 1.0 / whole_pixels(height, width, n) for n in self.preset.style_layers}
        return style_moments(feats, self.preset, windows, scale)

    @torch.no_grad()
    def moments(
        self, image: torch.Tensor, tiles: list[Tile], guides: list[torch.Tensor | None]
    ) -> list[dict[str, Moments]]:
        """The whole ``image``'s style statistics per region, summed over the cores of ``tiles``."""
        height, width = image.shape[-2:]
        total: list[dict[str, Moments]] = [{} for _ in guides]
        for t in tiles:
            self.check_cancel()
            feats = self.features(t.window(image), list(self.preset.style_layers))
            for summed, part in zip(total, self.tile_moments(feats, t, guides, height, width)):
                for n, m in part.items():
                    summed[n] = summed[n] + m if n in summed else m
        return total


def tiled_targets(
    net: TiledNetwork, styles: list[torch.Tensor], blend=None, guides: list[torch.Tensor] | None = None
) -> Targets:
    """Style targets from style images of any size, computed tile by tile (a fixed grid); no content
    features: a :class:`TiledEvaluator` takes its content targets window by window."""
    stats = [net.moments(style, net.grid(*style.shape[-2:]), [None])[0] for style in styles]
    return targets_from_stats({}, stats, blend, guides)


class TiledEvaluator:
    """The objective of one scale, evaluated tile by tile: ``evaluate(image)`` leaves d total/d image in
    ``image.grad`` and returns the terms, like ``stylize.dense_evaluator``.

    Pass 1 (no autograd) sums each region's and style layer's additive statistics over the tile
    cores: exactly the whole image's statistics when each window holds its core's receptive field
    (:func:`exact_halo`). The global style loss of those statistics is differentiated with the
    statistics as leaves. Pass 2, per tile: forward with autograd, then backward of the surrogate
    <d loss/d statistics, the tile's statistics> + the tile's content loss; its gradient is the
    tile's share of the whole objective's gradient. Total variation is image-sized work (three
    channels) done on the whole image. Content targets are the content image's features in the same
    window, so both sides of the content loss see the same borders.
    """

    def __init__(
        self,
        net: TiledNetwork,
        targets: Targets,
        weights: LossWeights,
        content: torch.Tensor,
        generator: torch.Generator | None = None,
        on_tile: Callable[[int, int], None] | None = None,
    ):
        self.net, self.targets, self.weights, self.content = net, targets, weights, content
        self.generator, self.on_tile = generator, on_tile
        self.tiles_last: list[Tile] = []  # the grid of the latest evaluation (for progress and tests)

    def __call__(self, image: torch.Tensor) -> dict[str, float]:
        """Content, style, TV and total loss of ``image`` (a leaf); their gradient replaces ``image.grad``."""
        net, preset, weights, guides = self.net, self.net.preset, self.weights, self.targets.guides
        height, width = image.shape[-2:]
        tiles = self.tiles_last = net.grid(height, width, self.generator)
        image.grad = None
        with torch.enable_grad():
            # Pass 1: the whole image's statistics from the cores; d style loss / d statistics.
            leaves = [
                {
                    n: Moments(*(v.clone().requires_grad_(True) for v in (m.count, m.first, m.second)))
                    for n, m in region.items()
                }
                for region in net.moments(image.detach(), tiles, guides)
            ]
            style = style_loss_from_moments(leaves, self.targets, preset)
            (weights.style * style).backward()
            tv = tv_loss(image, preset.tv_kind)
            (weights.tv * tv).backward()
            if image.grad is None:  # a TV weight of 0 still leaves a gradient; this is for safety only
                image.grad = torch.zeros_like(image)
            content_total = 0.0
            for k, t in enumerate(tiles):
                net.check_cancel()
                window = t.window(image.detach()).clone().requires_grad_(True)
                feats = net.features(window, preset.layers)
                surrogate = 0
                for region, leaf in zip(net.tile_moments(feats, t, guides, height, width), leaves):
                    for n, m in region.items():
                        for part, grad in zip(
                            (m.count, m.first, m.second), (leaf[n].count.grad, leaf[n].first.grad, leaf[n].second.grad)
                        ):
                            if grad is not None:
                                surrogate = surrogate + (part * grad).sum()
                content = self._content(feats, t, height, width)
                (surrogate + weights.content * content).backward()
                image.grad[..., t.top : t.bottom, t.left : t.right] += window.grad
                content_total += float(content.detach())
                if self.on_tile is not None:
                    self.on_tile(k + 1, len(tiles))
        style_value, tv_value = float(style.detach()), float(tv.detach())
        total = weights.content * content_total + weights.style * style_value + weights.tv * tv_value
        return {"content": content_total, "style": style_value, "tv": tv_value, "total": total}

    def _content(self, feats: dict[str, torch.Tensor], tile: Tile, height: int, width: int) -> torch.Tensor:
        """The tile core's share of the content loss (targets: the content image's features in the same window)."""
        preset = self.net.preset
        with torch.no_grad():
            targets = self.net.features(tile.window(self.content), list(preset.content_layers))
        content = torch.zeros((), device=self.content.device)
        for n, w in preset.content_layers.items():
            core, target = crop_core(feats[n], tile, n), crop_core(targets[n], tile, n)
            # "mse" is a mean over the whole layer: the core's mean weighted by its share of the layer's pixels.
            share = (
                core.shape[-2] * core.shape[-1] / whole_pixels(height, width, n)
                if preset.content_norm == "mse"
                else 1.0
            )
            content = content + w * share * content_loss(core, target, preset.content_norm)
        return content
