"""The objective: content, style and total-variation terms of an image against its targets.

The paper's unnormalised style form is recovered exactly by the ``gatys2016`` preset's style
normalisation: sum((G_raw - A_raw)^2) / (4 N^2 M^2) == sum((G - A)^2) / (4 N^2) when G = G_raw / M.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F

from nst_core.core.errors import UserError
from nst_core.nst.losses.presets import LossPreset, LossWeights
from nst_core.nst.losses.statistics import Moments, at_least_fp32, layer_moments, style_moments
from nst_core.nst.losses.style import StyleTarget, style_loss_of
from nst_core.nst.network import FeatureNetwork


def content_loss(features: torch.Tensor, target: torch.Tensor, norm: str) -> torch.Tensor:
    """Content loss of one layer: "mse" (seed) or "half_sum" (0.5 * sum of squares, the paper)."""
    if norm == "mse":
        return F.mse_loss(features, target)
    if norm == "half_sum":
        return 0.5 * (features - target).pow(2).sum()
    raise ValueError(f"unknown content normalisation {norm!r}")


def tv_loss(image: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Total variation of an (N, C, H, W) image; differentiable (never on a detached copy)."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    if kind == "l1":
        return dx.abs().mean() + dy.abs().mean()
    if kind == "squared":
        return dx.pow(2).mean() + dy.pow(2).mean()
    raise ValueError(f"unknown TV kind {kind!r}; use 'l1' or 'squared'")


@dataclass
class Targets:
    """Content features and style statistics, computed once per scale without autograd.

    ``style[r][layer]`` is region r's target; ``guides[r]`` its pixel guide (N, 1, H, W) at the output
    size, or None for the whole image. Without region masks there is one region, whose target is the
    blend of all style images.
    """

    content: dict[str, torch.Tensor]
    style: list[dict[str, StyleTarget]]
    guides: list[torch.Tensor | None] = field(default_factory=lambda: [None])
    region_weights: list[float] = field(default_factory=lambda: [1.0])

    @property
    def grams(self) -> dict[str, torch.Tensor]:
        """The first region's Gram targets by layer."""
        return {name: t.moments.second for name, t in self.style[0].items()}


def normalise_blend(blend: Sequence[float] | None, count: int) -> list[float]:
    """Style blend weights summing to 1 (equal when not given).

    >>> normalise_blend([2, 1, 1], 3)
    [0.5, 0.25, 0.25]
    """
    if blend is None:
        return [1.0 / count] * count
    weights = [float(b) for b in blend]
    if len(weights) != count:
        raise UserError(f"{len(weights)} style weights given for {count} style images")
    if any(b < 0 for b in weights) or sum(weights) <= 0:
        raise UserError("style weights must be non-negative and not all zero")
    total = sum(weights)
    return [b / total for b in weights]


def blend_moments(parts: list[dict[str, Moments]], weights: list[float]) -> dict[str, Moments]:
    """Weighted sums of normalised statistics: the moments of the mixture of the styles' feature distributions."""
    blended: dict[str, Moments] = {}
    for stats, weight in zip(parts, weights):
        for name, m in stats.items():
            m = m.normalised()
            m = Moments(m.count * weight, m.first * weight, m.second * weight)
            blended[name] = blended[name] + m if name in blended else m
    return blended


@torch.no_grad()
def compute_targets(
    model: FeatureNetwork,
    preset: LossPreset,
    content: torch.Tensor,
    styles: list[torch.Tensor],
    blend: Sequence[float] | None = None,
    guides: list[torch.Tensor] | None = None,
) -> Targets:
    """Targets for one scale: content features of ``content``; style statistics of ``styles``.

    ``guides`` are pixel guides (N, 1, H, W) in 0..1 at the output size. None or one guide: the
    styles' statistics are blended by ``blend`` into one target, matched over the guided pixels. One
    guide per style: each style is the target of its own region, weighted by ``blend``.
    """
    content_feats = model(content, list(preset.content_layers))
    stats = [
        {name: layer_moments(f) for name, f in model(style, list(preset.style_layers)).items()} for style in styles
    ]
    return targets_from_stats({k: v.detach() for k, v in content_feats.items()}, stats, blend, guides)


def targets_from_stats(
    content: dict[str, torch.Tensor],
    stats: list[dict[str, Moments]],
    blend: Sequence[float] | None = None,
    guides: list[torch.Tensor] | None = None,
) -> Targets:
    """:class:`Targets` from content features and each style image's statistics (whole or summed over tiles)."""
    weights = normalise_blend(blend, len(stats))
    if guides is None or len(guides) == 1:
        style = [{name: StyleTarget(m) for name, m in blend_moments(stats, weights).items()}]
        region_guides: list[torch.Tensor | None] = [None] if guides is None else list(guides)
        region_weights = [1.0]
    elif len(guides) == len(stats):
        style = [{name: StyleTarget(m.normalised()) for name, m in s.items()} for s in stats]
        region_guides = list(guides)
        # Blend weights scaled to average 1: equal weights give each region the weight of a lone style.
        region_weights = [w * len(stats) for w in weights]
    else:
        raise UserError(f"{len(guides)} style masks given for {len(stats)} style images")
    return Targets(content, style, region_guides, region_weights)


def style_loss_from_moments(moments: list[dict[str, Moments]], targets: Targets, preset: LossPreset) -> torch.Tensor:
    """The (unweighted) style loss from per-region, per-layer statistics (summed over tiles if tiled)."""
    total: torch.Tensor | float = 0
    for stats, target, rw in zip(moments, targets.style, targets.region_weights):
        total = total + rw * sum(
            w * style_loss_of(stats[n], target[n], preset.style_norm, preset.style_loss)
            for n, w in preset.style_layers.items()
        )
    return cast(torch.Tensor, total)  # a preset has at least one style layer and targets one region


def image_gradient(
    model: FeatureNetwork,
    preset: LossPreset,
    image: torch.Tensor,
    targets: Targets,
    weights: LossWeights,
    create_graph: bool = False,
) -> torch.Tensor:
    """d(total loss)/d(image) under ``model`` with fixed ``targets``: what a stylization step follows.

    Detached, unless ``create_graph``: then it stays differentiable in ``model``'s weights (training a
    network to give the right gradient backpropagates through it).
    """
    x = image.detach().requires_grad_(True)
    with torch.enable_grad():
        total = loss_terms(model, preset, x, targets, weights)["total"]
        (grad,) = torch.autograd.grad(total, x, create_graph=create_graph)
    return grad if create_graph else grad.detach()


def loss_terms(
    model: FeatureNetwork, preset: LossPreset, image: torch.Tensor, targets: Targets, weights: LossWeights
) -> dict[str, torch.Tensor]:
    """Unweighted content, style and TV losses of ``image`` and their weighted total."""
    # Losses in fp32 whatever precision the network ran in (under autocast it may return bf16).
    feats = {name: at_least_fp32(f) for name, f in model(image, preset.layers).items()}
    content = cast(
        torch.Tensor,
        sum(
            w * content_loss(feats[n], targets.content[n], preset.content_norm)
            for n, w in preset.content_layers.items()
        ),
    )
    style = style_loss_from_moments(style_moments(feats, preset, targets.guides), targets, preset)
    tv = tv_loss(image, preset.tv_kind)
    total = weights.content * content + weights.style * style + weights.tv * tv
    return {"content": content, "style": style, "tv": tv, "total": total}
