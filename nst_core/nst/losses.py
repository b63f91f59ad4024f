"""Content, style (Gram) and total-variation losses, and the presets that fix their numbers.

Every Gram matrix here is divided by h*w, so a style target computed on an image of one
size is comparable with a generated image of another (coarse-to-fine, style images of
other shapes). The paper's unnormalised form is recovered exactly by the ``gatys2016``
preset's style normalisation: sum((G_raw - A_raw)^2) / (4 N^2 M^2) == sum((G - A)^2) / (4 N^2)
when G = G_raw / M.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from nst_core.core.errors import UserError
from nst_core.model.layers import LAYER_TABLE, deepest_layer, layer_index


@dataclass(frozen=True)
class LossPreset:
    """Which layers feed which loss, with what weights and normalisations."""

    name: str
    content_layers: dict[str, float]
    style_layers: dict[str, float]
    content_weight: float
    style_weight: float
    tv_weight: float
    content_norm: str  # "mse": mean squared error | "half_sum": 0.5 * sum of squares (paper)
    style_norm: str  # "mse_c2": mse(G, A) / C^2 (seed) | "paper": sum((G - A)^2) / (4 C^2)
    tv_kind: str = "l1"  # "l1": mean |dx| + mean |dy| | "squared": mean dx^2 + mean dy^2
    description: str = ""
    style_loss: str = "gram"  # "gram" (norm: style_norm) | "meancov": 2-Wasserstein of feature means and covariances

    @property
    def layers(self) -> list[str]:
        """Every layer any loss reads, in network order, without duplicates."""
        names = dict.fromkeys([*self.content_layers, *self.style_layers])
        return sorted(names, key=layer_index)

    @property
    def last_layer(self) -> str:
        """The deepest layer used: the network can be truncated right after it."""
        return deepest_layer(self.layers)


PRESETS: dict[str, LossPreset] = {
    "seed": LossPreset(
        name="seed",
        content_layers={"relu4_2": 1.0},
        style_layers={name: 0.2 for name in ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")},
        content_weight=5.0,
        style_weight=1e2,
        tv_weight=1e-3,
        content_norm="mse",
        style_norm="mse_c2",
        description="The seed notebook's settings: Gram / (h*w), style MSE / C^2.",
    ),
    "gatys2016": LossPreset(
        name="gatys2016",
        content_layers={"relu4_2": 1.0},
        style_layers={name: 0.2 for name in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")},
        content_weight=1.0,
        style_weight=1e3,  # alpha / beta = 1e-3, as in the paper's Fig. 2
        tv_weight=0.0,  # the paper has no TV term
        content_norm="half_sum",
        style_norm="paper",
        description="Gatys et al. CVPR 2016: content 0.5*sum of squares, style E_l = sum((G-A)^2)/(4 N^2 M^2).",
    ),
}


def get_preset(name: str) -> LossPreset:
    """The preset called ``name`` (a UserError listing the presets otherwise)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown loss preset {name!r}; choose from {', '.join(PRESETS)}") from None


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
        ctx, features: torch.Tensor, guide: torch.Tensor | None = None, scale: float | None = None
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
    def backward(ctx, grad: torch.Tensor):
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
    for name, kind in LAYER_TABLE[: layer_index(layer) + 1]:
        if kind == "pool":
            guide = F.avg_pool2d(guide, kernel_size=2, stride=2)
    return guide


class _TraceSqrt(torch.autograd.Function):
    """tr(sqrtm(B)) of symmetric PSD matrices (N, C, C); gradient 0.5 B^(-1/2), stable at repeated eigenvalues.

    Eigenvalues are floored at a millionth of the largest: rank-deficient covariances (few pixels at
    deep layers, dead ReLU channels) would otherwise give an unbounded gradient.
    """

    @staticmethod
    def forward(ctx, matrix: torch.Tensor) -> torch.Tensor:
        # fp32: eigh of a 512x512 matrix takes 2.6x as long in fp64, and the relative floor keeps fp32 well-conditioned.
        values, vectors = torch.linalg.eigh(matrix.float())
        floor = values.amax(dim=-1, keepdim=True).clamp_min(1e-30) * 1e-6
        roots = values.clamp_min(0).add(floor).sqrt()
        ctx.save_for_backward(vectors, roots)
        return roots.sum(-1).to(matrix.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        vectors, roots = ctx.saved_tensors
        inverse_root = (vectors * (0.5 / roots).unsqueeze(-2)) @ vectors.transpose(-1, -2)
        return (grad.view(-1, 1, 1) * inverse_root).to(grad.dtype)


def symmetric_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """sqrtm of symmetric PSD matrices (N, C, C) (negative rounding noise clamped), no gradient."""
    values, vectors = torch.linalg.eigh(matrix.double())
    return ((vectors * values.clamp_min(0).sqrt().unsqueeze(-2)) @ vectors.transpose(-1, -2)).to(matrix.dtype)


def content_loss(features: torch.Tensor, target: torch.Tensor, norm: str) -> torch.Tensor:
    """Content loss of one layer: "mse" (seed) or "half_sum" (0.5 * sum of squares, the paper)."""
    if norm == "mse":
        return F.mse_loss(features, target)
    if norm == "half_sum":
        return 0.5 * (features - target).pow(2).sum()
    raise ValueError(f"unknown content normalisation {norm!r}")


STYLE_LOSSES = ("gram", "meancov")


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


def style_loss_of(moments: Moments, target: StyleTarget, norm: str, kind: str) -> torch.Tensor:
    """One layer's style loss from its (summed) additive statistics: "gram" (the preset's ``norm``) or "meancov"."""
    if kind == "gram":
        return style_layer_loss(moments.gram(), target.moments.second, norm)
    if kind == "meancov":
        return wasserstein_layer_loss(moments, target)
    raise ValueError(f"unknown style loss {kind!r}; use one of {', '.join(STYLE_LOSSES)}")


def tv_loss(image: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Total variation of an (N, C, H, W) image; differentiable (never on a detached copy)."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    if kind == "l1":
        return dx.abs().mean() + dy.abs().mean()
    if kind == "squared":
        return dx.pow(2).mean() + dy.pow(2).mean()
    raise ValueError(f"unknown TV kind {kind!r}; use 'l1' or 'squared'")


class StyleTarget:
    """One layer's style statistics for one region (count 1: ``second`` is the Gram), with the
    covariance and its square root precomputed for the mean-covariance loss."""

    def __init__(self, moments: Moments):
        self.moments = moments.detach()
        self._covariance: torch.Tensor | None = None
        self._cov_sqrt: torch.Tensor | None = None

    @property
    def covariance(self) -> torch.Tensor:
        if self._covariance is None:
            self._covariance = self.moments.covariance()
        return self._covariance

    @property
    def cov_sqrt(self) -> torch.Tensor:
        if self._cov_sqrt is None:
            self._cov_sqrt = symmetric_sqrt(self.covariance)
        return self._cov_sqrt


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


@dataclass(frozen=True)
class LossWeights:
    """Weights of the content, style and TV terms in the total loss."""

    content: float
    style: float
    tv: float

    @classmethod
    def from_preset(cls, preset: LossPreset, content=None, style=None, tv=None) -> LossWeights:
        """The preset's weights, each replaced by the given value where one is given (not None)."""
        pick = lambda value, default: default if value is None else float(value)  # noqa: E731
        return cls(pick(content, preset.content_weight), pick(style, preset.style_weight), pick(tv, preset.tv_weight))


def normalise_blend(blend, count: int) -> list[float]:
    """Style blend weights summing to 1 (equal when not given)."""
    if blend is None:
        return [1.0 / count] * count
    blend = [float(b) for b in blend]
    if len(blend) != count:
        raise UserError(f"{len(blend)} style weights given for {count} style images")
    if any(b < 0 for b in blend) or sum(blend) <= 0:
        raise UserError("style weights must be non-negative and not all zero")
    total = sum(blend)
    return [b / total for b in blend]


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
    model,
    preset: LossPreset,
    content: torch.Tensor,
    styles: list[torch.Tensor],
    blend=None,
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
    blend=None,
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


def style_moments(
    feats: dict[str, torch.Tensor],
    preset: LossPreset,
    guides: list[torch.Tensor | None],
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


def style_loss_from_moments(moments: list[dict[str, Moments]], targets: Targets, preset: LossPreset) -> torch.Tensor:
    """The (unweighted) style loss from per-region, per-layer statistics (summed over tiles if tiled)."""
    total = 0
    for stats, target, rw in zip(moments, targets.style, targets.region_weights):
        total = total + rw * sum(
            w * style_loss_of(stats[n], target[n], preset.style_norm, preset.style_loss)
            for n, w in preset.style_layers.items()
        )
    return total


def loss_terms(
    model, preset: LossPreset, image: torch.Tensor, targets: Targets, weights: LossWeights
) -> dict[str, torch.Tensor]:
    """Unweighted content, style and TV losses of ``image`` and their weighted total."""
    # Losses in fp32 whatever precision the network ran in (under autocast it may return bf16).
    feats = {name: at_least_fp32(f) for name, f in model(image, preset.layers).items()}
    content = sum(
        w * content_loss(feats[n], targets.content[n], preset.content_norm) for n, w in preset.content_layers.items()
    )
    style = style_loss_from_moments(style_moments(feats, preset, targets.guides), targets, preset)
    tv = tv_loss(image, preset.tv_kind)
    total = weights.content * content + weights.style * style + weights.tv * tv
    return {"content": content, "style": style, "tv": tv, "total": total}
