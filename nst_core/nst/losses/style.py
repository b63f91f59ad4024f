"""Style losses: how one layer's feature statistics are compared with the style's, by name.

:data:`STYLE_LOSSES` is the one table of them: the loss code, the ``--style-loss`` choices and
the config's validation all read it, so a new style loss is one :class:`StyleLoss` entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from nst_core.nst.losses.statistics import Moments


class _TraceSqrt(torch.autograd.Function):
    """tr(sqrtm(B)) of symmetric PSD matrices (N, C, C); gradient 0.5 B^(-1/2), stable at repeated eigenvalues.

    Eigenvalues are floored at a millionth of the largest: rank-deficient covariances (few pixels at
    deep layers, dead ReLU channels) would otherwise give an unbounded gradient.
    """

    @staticmethod
    def forward(ctx: Any, matrix: torch.Tensor) -> torch.Tensor:
        # fp32: eigh of a 512x512 matrix takes 2.6x as long in fp64, and the relative floor keeps fp32 well-conditioned.
        values, vectors = torch.linalg.eigh(matrix.float())
        floor = values.amax(dim=-1, keepdim=True).clamp_min(1e-30) * 1e-6
        roots = values.clamp_min(0).add(floor).sqrt()
        ctx.save_for_backward(vectors, roots)
        return roots.sum(-1).to(matrix.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        vectors, roots = ctx.saved_tensors
        inverse_root = (vectors * (0.5 / roots).unsqueeze(-2)) @ vectors.transpose(-1, -2)
        return (grad.view(-1, 1, 1) * inverse_root).to(grad.dtype)


def symmetric_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """sqrtm of symmetric PSD matrices (N, C, C) (negative rounding noise clamped), no gradient."""
    values, vectors = torch.linalg.eigh(matrix.double())
    return ((vectors * values.clamp_min(0).sqrt().unsqueeze(-2)) @ vectors.transpose(-1, -2)).to(matrix.dtype)


class StyleTarget:
    """One layer's style statistics for one region (count 1: ``second`` is the Gram), with the
    covariance and its square root precomputed for the mean-covariance loss."""

    def __init__(self, moments: Moments):
        self.moments = moments.detach()
        self._covariance: torch.Tensor | None = None
        self._cov_sqrt: torch.Tensor | None = None

    @property
    def covariance(self) -> torch.Tensor:
        """The style's feature covariance (computed once)."""
        if self._covariance is None:
            self._covariance = self.moments.covariance()
        return self._covariance

    @property
    def cov_sqrt(self) -> torch.Tensor:
        """The square root of :attr:`covariance` (computed once)."""
        if self._cov_sqrt is None:
            self._cov_sqrt = symmetric_sqrt(self.covariance)
        return self._cov_sqrt


def style_layer_loss(gram: torch.Tensor, target: torch.Tensor, norm: str) -> torch.Tensor:
    """Style loss of one layer's Gram matrix: "mse_c2" (seed: MSE / C^2) or "paper" (sum of squares / 4C^2)."""
    channels = gram.shape[-1]
    if norm == "mse_c2":
        return F.mse_loss(gram, target) / channels**2
    if norm == "paper":
        return (gram - target).pow(2).sum() / (4 * channels**2)
    raise ValueError(f"unknown style normalisation {norm!r}")


def wasserstein_layer_loss(moments: Moments, target: StyleTarget) -> torch.Tensor:
    """Squared 2-Wasserstein distance between Gaussians fitted to the features and to the style, per channel.

    W2^2 = |m - m_t|^2 + tr(S) + tr(S_t) - 2 tr(sqrtm(S_t^1/2 S S_t^1/2)), divided by C and summed over
    the batch. Matching means and covariances (not raw second moments, as a Gram does) keeps the style's
    colour saturation instead of washing it out.
    """
    mean, cov = moments.mean(), moments.covariance()
    root = target.cov_sqrt
    cross = _TraceSqrt.apply(root @ cov @ root)
    distance = (mean - target.moments.mean()).pow(2).sum(-1) + _trace(cov) + _trace(target.covariance) - 2 * cross
    return distance.sum() / mean.shape[-1]


def _trace(matrix: torch.Tensor) -> torch.Tensor:
    return matrix.diagonal(dim1=-2, dim2=-1).sum(-1)


#: One layer's style loss: (the image's statistics at the layer, the style's target, the preset's
#: ``style_norm``) -> a scalar tensor. A loss with a scale of its own may ignore the norm.
StyleLayerLoss = Callable[[Moments, StyleTarget, str], torch.Tensor]


@dataclass(frozen=True)
class StyleLoss:
    """A named style loss: its one-line summary (for help texts) and its per-layer loss."""

    name: str
    summary: str
    layer_loss: StyleLayerLoss


def _gram_loss(moments: Moments, target: StyleTarget, norm: str) -> torch.Tensor:
    return style_layer_loss(moments.gram(), target.moments.second, norm)


def _meancov_loss(moments: Moments, target: StyleTarget, norm: str) -> torch.Tensor:
    return wasserstein_layer_loss(moments, target)  # the distance has its own scale: no style_norm


#: The style losses by name (``StylizeConfig.style_loss``, ``LossPreset.style_loss``, ``--style-loss``).
STYLE_LOSSES: dict[str, StyleLoss] = {
    loss.name: loss
    for loss in (
        StyleLoss("gram", "Gram matrices (Gatys)", _gram_loss),
        StyleLoss("meancov", "feature means and covariances (2-Wasserstein)", _meancov_loss),
    )
}


def style_loss_of(moments: Moments, target: StyleTarget, norm: str, kind: str) -> torch.Tensor:
    """One layer's style loss from its (summed) additive statistics, by the name ``kind`` in :data:`STYLE_LOSSES`.

    >>> from nst_core.nst.losses.statistics import layer_moments
    >>> stats = layer_moments(torch.ones(1, 2, 3, 3))
    >>> float(style_loss_of(stats, StyleTarget(stats), "mse_c2", "gram"))
    0.0
    """
    try:
        loss = STYLE_LOSSES[kind]
    except KeyError:
        raise ValueError(f"unknown style loss {kind!r}; use one of {', '.join(STYLE_LOSSES)}") from None
    return loss.layer_loss(moments, target, norm)
