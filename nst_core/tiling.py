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
from dataclasses import dataclass
from typing import Callable

import torch

from .errors import UserError
from .losses import LossPreset, LossWeights, content_loss, gram_matrix, style_layer_loss, tv_loss
from .memory import largest_tile, min_tile, predict_step_peak
from .vgg import LAYER_TABLE, layer_index, min_input_side

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
            tiles.append(Tile(_start(top, bottom, halo, stride), min(height, bottom + halo), _start(left, right, halo, stride),
                              min(width, right + halo), top, bottom, left, right))
    return tiles


def check_tile(tile: int, last_layer: str, flag: str = "--tile") -> int:
    """``tile`` if the network's deepest layer can work in tiles of that side, else a one-line UserError."""
    need = min_tile(last_layer)
    if tile < need:
        raise UserError(f"{flag} {tile}: tiles must be at least {need} px, the side layer {last_layer} needs (one pixel after every pooling)")
    return tile


def stride_of(last_layer: str) -> int:
    """The downsampling of the deepest pooling before ``last_layer`` (16 for relu5_x)."""
    return min_input_side(last_layer)


@dataclass(frozen=True)
class TilePlan:
    """What a run at each scale does: ``tiles[k]`` is the tile side at scale k, or None to run it whole."""

    sizes: list[tuple[int, int]]  # (w, h) per scale, coarse to fine
    tiles: list[int | None]
    predicted_peak: int  # bytes the run adds to the process at its largest step
    budget: int | None  # bytes the run may add (the budget less what the process holds), None: no budget

    @property
    def tiled(self) -> bool:
        return any(t is not None for t in self.tiles)


def plan_tiles(
    widths: dict[str, int],
    layers: list[str],
    sizes: list[tuple[int, int]],
    precision: str,
    budget: int | None = None,
    tile: int | None = None,
) -> TilePlan:
    """Which scales to tile and with which tile side, so each step fits ``budget`` bytes (or uses ``tile``).

    A scale runs whole when it fits (or no budget is given and no tile is forced); otherwise with
    the largest tile that fits. A forced ``tile`` applies to every scale larger than it. A
    UserError when even the smallest tile does not fit.
    """
    last = max(layers, key=layer_index)
    stride = stride_of(last)
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
                    f"--max-memory: {w}x{h} px needs at least {need / 1e9:.2f} GB more than the process holds "
                    f"even in the smallest tiles, but only {max(budget, 0) / 1e9:.2f} GB are left; raise --max-memory or lower --size"
                )
        tiles.append(chosen)
        peak = max(peak, predict_step_peak(widths, layers, h, w, precision, chosen))
    return TilePlan(list(sizes), tiles, peak, budget)


class EvaluationCancelled(Exception):
    """Raised between tiles when the run's cancel event is set (the step is abandoned, the image unchanged)."""


def layer_factor(layer: str) -> int:
    """How much ``layer``'s feature map is downsampled relative to the image (1, 2, 4, 8 or 16)."""
    return min_input_side(layer)


class TiledEvaluator:
    """The objective of one scale, evaluated tile by tile; ``evaluate(image)`` leaves d total/d image in ``image.grad``.

    Pass 1 (no autograd) sums each style layer's Gram statistics, sum over core pixels of F F^T,
    over the tiles' cores: exactly the whole image's sums when each window gives its core the
    features the whole image has. The global style loss of those statistics is differentiated
    with the statistics as leaves (d loss/d G). Pass 2, per tile: forward with autograd, and
    backward of the surrogate <d loss/d G, the tile's share of G> + the tile's content loss;
    its gradient is the tile's exact share of the whole objective's gradient. Total variation
    is image-sized work (3 channels), done on the whole image. Content targets are the content
    image's features in the same window, so both sides see the same borders.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        preset: LossPreset,
        weights: LossWeights,
        content: torch.Tensor,
        style_grams: dict[str, torch.Tensor],
        tile: int,
        generator: torch.Generator | None = None,
        precision: str = "fp32",
        channels_last: bool = True,
        cancel: threading.Event | None = None,
        on_tile: Callable[[int, int], None] | None = None,
        halo: int | None = None,
    ):
        self.model, self.preset, self.weights = model, preset, weights
        self.content, self.style_grams = content, style_grams
        self.tile, self.stride = tile, stride_of(preset.last_layer)
        self.halo = halo_for(tile, preset.last_layer) if halo is None else halo
        self.generator, self.precision = generator, precision
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        self.cancel, self.on_tile = cancel, on_tile
        self.tiles_last: list[Tile] = []  # the grid of the latest evaluation (for progress and tests)

    def features(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        """The network's features of ``x`` in fp32, in the run's precision and layout."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return {n: f.float() for n, f in self.model(x.contiguous(memory_format=self.layout), layers).items()}

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise EvaluationCancelled

    def __call__(self, image: torch.Tensor) -> dict[str, float]:
        """Content, style, TV and total loss of ``image`` (a leaf); their gradient is added to ``image.grad``."""
        height, width = image.shape[-2:]
        tiles = tile_grid(height, width, self.tile, self.stride, self.halo, self.generator)
        self.tiles_last = tiles
        preset, weights = self.preset, self.weights
        # Pass 1: the whole image's Gram matrices, summed over tile cores; then d loss / d Gram.
        grams = {n: g.requires_grad_(True) for n, g in style_grams_tiled(self, image.detach(), tiles).items()}
        style = sum(w * style_layer_loss(grams[n], self.style_grams[n], preset.style_norm) for n, w in preset.style_layers.items())
        (weights.style * style).backward()
        if image.grad is None:
            image.grad = torch.zeros_like(image)
        tv = tv_loss(image, preset.tv_kind)
        (weights.tv * tv).backward()
        # Pass 2: each tile's share of the gradient.
        content_total = 0.0
        for k, t in enumerate(tiles):
            self._check_cancel()
            window = t.window(image.detach()).clone().requires_grad_(True)
            with torch.no_grad():
                content_target = self.features(t.window(self.content), list(preset.content_layers))
            feats = self.features(window, preset.layers)
            surrogate = 0
            for n in preset.style_layers:
                core = crop_core(feats[n], t, n)
                share = core.shape[-2] * core.shape[-1] / whole_pixels(height, width, n)
                surrogate = surrogate + (grams[n].grad * gram_matrix(core)).sum() * share
            content = 0
            for n, w in preset.content_layers.items():
                core, target = crop_core(feats[n], t, n), crop_core(content_target[n], t, n)
                # mse is a mean over the whole layer: the core's mean weighted by its share of the elements.
                share = core.shape[-2] * core.shape[-1] / whole_pixels(height, width, n) if preset.content_norm == "mse" else 1.0
                content = content + w * share * content_loss(core, target, preset.content_norm)
            (surrogate + weights.content * content).backward()
            image.grad[..., t.top : t.bottom, t.left : t.right] += window.grad
            content_total += float(content)
            if self.on_tile is not None:
                self.on_tile(k + 1, len(tiles))
        style_value, tv_value = float(style), float(tv)
        total = weights.content * content_total + weights.style * style_value + weights.tv * tv_value
        return {"content": content_total, "style": style_value, "tv": tv_value, "total": total}


def whole_pixels(height: int, width: int, layer: str) -> int:
    """Feature pixels of ``layer`` for a whole ``height`` x ``width`` image."""
    factor = layer_factor(layer)
    return (height // factor) * (width // factor)


def crop_core(features: torch.Tensor, tile: Tile, layer: str) -> torch.Tensor:
    """The core of a tile's ``layer`` features (a view)."""
    rows, cols = tile.core_slices(layer_factor(layer), features.shape[-2], features.shape[-1])
    return features[..., rows, cols]


@torch.no_grad()
def style_grams_tiled(evaluator: TiledEvaluator, image: torch.Tensor, tiles: list[Tile]) -> dict[str, torch.Tensor]:
    """Gram matrices of the whole ``image`` at every style layer, from sums over the tiles' cores."""
    height, width = image.shape[-2:]
    sums: dict[str, torch.Tensor] = {}
    for t in tiles:
        evaluator._check_cancel()
        for n, f in evaluator.features(t.window(image), list(evaluator.preset.style_layers)).items():
            core = crop_core(f, t, n)
            part = gram_matrix(core) * (core.shape[-2] * core.shape[-1])
            sums[n] = sums[n] + part if n in sums else part
    return {n: s / whole_pixels(height, width, n) for n, s in sums.items()}
