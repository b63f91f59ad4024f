"""Feature statistics the style losses compare: Gram matrices and additive moments, always in fp32.

Every Gram matrix here is divided by h*w, so a style target computed on an image of one size is
comparable with a generated image of another (coarse-to-fine, style images of other shapes).
Moments of disjoint pixel sets add up, so statistics summed over tiles are the whole image's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from nst_core.model.layers import LAYER_TABLE, layer_index
from nst_core.nst.losses.presets import LossPreset


def _as_rows(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> an (N, C, H*W) view without a copy, for NCHW and channels_last layouts alike."""
    n, c, h, w = features.shape
    if features.is_contiguous():
        return features.reshape(n, c, h * w)
    # channels_last: (N, H*W, C) is the contiguous view; its transpose is the same matrix.
    return features.permute(0, 2, 3, 1).reshape(n, h * w, c).transpose(1, 2)


class _Gram(torch.autograd.Function):
    """scale * sum_p w_p F_p F_p^T (the guide-weighted second moment) with a one-product backward.

    With no guide and the default scale 1/(h*w) this is the Gram matrix G = F F^T / (h*w).
    Autograd's generic matmul backward computes two products (one per operand) although both
    operands are F; since dL/dF = (dG + dG^T) F diag(w) * scale, one suffices. The gradient keeps
    F's layout. ``guide`` (N, 1, H, W), if given, is a constant: it gets no gradient.
    """

    @staticmethod
    def forward(
        ctx: Any, features: torch.Tensor, guide: torch.Tensor | None = None, scale: float | None = None
    ) -> torch.Tensor:
        n, c, h, w = features.shape
        scale = 1.0 / (h * w) if scale is None else scale
        rows = _as_rows(features)
        ctx.save_for_backward(features, guide)
        ctx.scale = scale
        weighted = rows if guide is None else rows * guide.reshape(n, 1, h * w)
        product = weighted @ rows.transpose(1, 2)
        # Divide by h*w (not multiply by its reciprocal) on the unguided default: the Gram of before, bit for bit.
        return product / (h * w) if scale == 1.0 / (h * w) else product * scale

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        features, guide = ctx.saved_tensors
        n, c, h, w = features.shape
        if ctx.scale == 1.0 / (h * w):
            symmetric = (grad + grad.transpose(1, 2)) / (h * w)
        else:
            symmetric = (grad + grad.transpose(1, 2)) * ctx.scale
        if features.is_contiguous():
            out = (symmetric @ features.reshape(n, c, h * w)).reshape(n, c, h, w)
        else:
            # channels_last: (N, H*W, C) @ sym gives the gradient directly in the (N, H, W, C) memory order.
            by_pixel = features.permute(0, 2, 3, 1).reshape(n, h * w, c) @ symmetric
            out = by_pixel.reshape(n, h, w, c).permute(0, 3, 1, 2)
        if guide is not None:
            out = out * guide
        return out, None, None


def at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in fp32, or as it is when it is fp64 (gradient checks run the losses in fp64)."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) Gram matrices divided by H*W, always in fp32.

    Under bf16/fp16 autocast the sums over H*W products lose precision or overflow to inf
    (a known failure of fp16 style transfer), so autocast is switched off here.

    >>> gram_matrix(torch.ones(1, 2, 3, 3)).tolist()
    [[[1.0, 1.0], [1.0, 1.0]]]
    """
    with torch.autocast(features.device.type, enabled=False):
        return _Gram.apply(at_least_fp32(features))


@dataclass
class Moments:
    """Additive pixel statistics of one layer's features over one region, all times a common ``scale``.

    count = scale * sum_p w_p (N,), first = scale * sum_p w_p F_p (N, C), second = scale * sum_p w_p F_p F_p^T
    (N, C, C), where w is the region's guide (1 everywhere without one). Moments of disjoint pixel sets
    computed with the same scale add up (``a + b``) to the moments of their union: tiles can be summed.
    The Gram matrix, mean and covariance are ratios, so the common scale cancels.
    """

    count: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.count + other.count, self.first + other.first, self.second + other.second)

    def _per_image(self) -> torch.Tensor:
        # A region the guide leaves empty has no statistics; its zeros stay zeros instead of 0/0.
        return self.count.clamp_min(torch.finfo(self.count.dtype).tiny)

    def gram(self) -> torch.Tensor:
        """Guide-weighted Gram matrix second / count, (N, C, C)."""
        return self.second / self._per_image().view(-1, 1, 1)  # exact when count is 1 (x / 1.0 == x)

    def mean(self) -> torch.Tensor:
        """Guide-weighted feature mean, (N, C)."""
        return self.first / self._per_image().view(-1, 1)

    def covariance(self) -> torch.Tensor:
        """Guide-weighted feature covariance E[F F^T] - mean mean^T, (N, C, C)."""
        mean = self.mean()
        return self.gram() - mean.unsqueeze(2) * mean.unsqueeze(1)

    def normalised(self) -> Moments:
        """The same statistics with count 1 (what a target stores; blends are weighted sums of these)."""
        return Moments(torch.ones_like(self.count), self.mean(), self.gram())

    def detach(self) -> Moments:
        """The same statistics outside autograd."""
        return Moments(self.count.detach(), self.first.detach(), self.second.detach())


def layer_moments(features: torch.Tensor, guide: torch.Tensor | None = None, scale: float | None = None) -> Moments:
    """Additive statistics of (N, C, H, W) ``features``, weighted by ``guide`` (N, 1, H, W) if given, in fp32.

    ``scale`` multiplies every sum; the default 1/(H*W) makes an unguided ``gram()`` exactly
    :func:`gram_matrix`. Tiles of one image must share one scale (e.g. 1/(pixels of the whole layer)).
    """
    n, c, h, w = features.shape
    scale = 1.0 / (h * w) if scale is None else scale
    with torch.autocast(features.device.type, enabled=False):
        f = at_least_fp32(features)
        g = None if guide is None else guide.to(f.dtype).detach()
        second = _Gram.apply(f, g, scale)
        weighted = f if g is None else f * g
        first = weighted.sum(dim=(2, 3)) * scale
        if g is None:
            count = torch.full((n,), float(h * w) * scale, device=f.device)
        else:
            count = g.sum(dim=(1, 2, 3)) * scale
    return Moments(count, first, second)


def guide_at(guide: torch.Tensor, layer: str) -> torch.Tensor:
    """A pixel-level guide (N, 1, H, W) in 0..1 brought to ``layer``'s resolution.

    Averaged over 2x2 blocks once per pooling layer before ``layer`` (floor, as VGG's pooling does),
    so each feature pixel is weighted by the share of its image block that the guide covers.
    """
    for _, kind in LAYER_TABLE[: layer_index(layer) + 1]:
        if kind == "pool":
            guide = F.avg_pool2d(guide, kernel_size=2, stride=2)
    return guide


def style_moments(
    feats: dict[str, torch.Tensor],
    preset: LossPreset,
    guides: Sequence[torch.Tensor | None],
    scale: dict[str, float] | None = None,
) -> list[dict[str, Moments]]:
    """Additive statistics of ``feats`` per region and style layer (each pixel guide brought to the layer).

    ``scale`` (layer -> common scale) is for tiles of one image; None: 1/(H*W) of each layer.
    """
    out = []
    for guide in guides:
        per_layer = {}
        for name in preset.style_layers:
            g = None if guide is None else guide_at(guide, name)
            per_layer[name] = layer_moments(feats[name], g, None if scale is None else scale[name])
        out.append(per_layer)
    return out
