"""The objective of one scale evaluated tile by tile, with the whole image's style statistics."""

from __future__ import annotations

from collections.abc import Callable

import torch

from nst_core.nst.losses import LossWeights, Moments, Targets, content_loss, style_loss_from_moments, tv_loss
from nst_core.nst.tiling.grid import Tile, crop_core, whole_pixels
from nst_core.nst.tiling.tiled_network import TiledNetwork


class TiledEvaluator:
    """The objective of one scale, evaluated tile by tile: ``evaluate(image)`` leaves d total/d image in
    ``image.grad`` and returns the terms, like ``stylize.dense_evaluator``.

    Pass 1 (no autograd) sums each region's and style layer's additive statistics over the tile
    cores: exactly the whole image's statistics when each window holds its core's receptive field
    (:func:`~nst_core.nst.tiling.exact_halo`). The global style loss of those statistics is
    differentiated with the statistics as leaves. Pass 2, per tile: forward with autograd, then
    backward of the surrogate <d loss/d statistics, the tile's statistics> + the tile's content
    loss; its gradient is the tile's share of the whole objective's gradient. Total variation is
    image-sized work (three channels) done on the whole image. Content targets are the content
    image's features in the same window, so both sides of the content loss see the same borders.
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
        net, preset, weights = self.net, self.net.preset, self.weights
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
                for region in net.moments(image.detach(), tiles, self.targets.guides)
            ]
            style = style_loss_from_moments(leaves, self.targets, preset)
            (weights.style * style).backward()
            tv = tv_loss(image, preset.tv_kind)
            (weights.tv * tv).backward()
            if image.grad is None:  # a TV weight of 0 still leaves a gradient; this is for safety only
                image.grad = torch.zeros_like(image)
            # Pass 2: each tile's share of the gradient, accumulated into image.grad.
            content_total = 0.0
            for k, t in enumerate(tiles):
                net.check_cancel()
                content_total += self._tile_backward(image, t, leaves, height, width)
                if self.on_tile is not None:
                    self.on_tile(k + 1, len(tiles))
        style_value, tv_value = float(style.detach()), float(tv.detach())
        total = weights.content * content_total + weights.style * style_value + weights.tv * tv_value
        return {"content": content_total, "style": style_value, "tv": tv_value, "total": total}

    def _tile_backward(
        self, image: torch.Tensor, tile: Tile, leaves: list[dict[str, Moments]], height: int, width: int
    ) -> float:
        """Backward of one tile's surrogate and content loss into ``image.grad``; returns its content loss."""
        window = tile.window(image.detach()).clone().requires_grad_(True)
        feats = self.net(window, self.net.preset.layers)
        surrogate: torch.Tensor | int = 0
        for region, leaf in zip(self.net.tile_moments(feats, tile, self.targets.guides, height, width), leaves):
            for n, m in region.items():
                for part, grad in zip(
                    (m.count, m.first, m.second), (leaf[n].count.grad, leaf[n].first.grad, leaf[n].second.grad)
                ):
                    if grad is not None:
                        surrogate = surrogate + (part * grad).sum()
        content = self._content(feats, tile, height, width)
        (surrogate + self.weights.content * content).backward()
        assert image.grad is not None and window.grad is not None  # both set by the backward passes
        image.grad[..., tile.top : tile.bottom, tile.left : tile.right] += window.grad
        return float(content.detach())

    def _content(self, feats: dict[str, torch.Tensor], tile: Tile, height: int, width: int) -> torch.Tensor:
        """The tile core's share of the content loss (targets: the content image's features in the same window)."""
        preset = self.net.preset
        with torch.no_grad():
            targets = self.net(tile.window(self.content), list(preset.content_layers))
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
