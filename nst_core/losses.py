"""Content, style (Gram) and total-variation losses, and the presets that fix their numbers.

Every Gram matrix here is divided by h*w, so a style target computed on an image of one
size is comparable with a generated image of another (coarse-to-fine, style images of
other shapes). The paper's unnormalised form is recovered exactly by the ``gatys2016``
preset's style normalisation: sum((G_raw - A_raw)^2) / (4 N^2 M^2) == sum((G - A)^2) / (4 N^2)
when G = G_raw / M.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import UserError
from .vgg import deepest_layer, layer_index


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
    """G = F F^T / (h*w) with a one-product backward.

    Autograd's generic matmul backward computes two products (one per operand) although both
    operands are F; since dL/dF = (dG + dG^T) F / (h*w), one suffices. The gradient keeps F's layout.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> torch.Tensor:
        n, c, h, w = features.shape
        rows = _as_rows(features)
        ctx.save_for_backward(features)
        return rows @ rows.transpose(1, 2) / (h * w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (features,) = ctx.saved_tensors
        n, c, h, w = features.shape
        symmetric = (grad + grad.transpose(1, 2)) / (h * w)
        if features.is_contiguous():
            return (symmetric @ features.reshape(n, c, h * w)).reshape(n, c, h, w)
        # channels_last: (N, H*W, C) @ sym gives the gradient directly in the (N, H, W, C) memory order.
        by_pixel = features.permute(0, 2, 3, 1).reshape(n, h * w, c) @ symmetric
        return by_pixel.reshape(n, h, w, c).permute(0, 3, 1, 2)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) Gram matrices divided by H*W, always in fp32.

    Under bf16/fp16 autocast the sums over H*W products lose precision or overflow to inf
    (a known failure of fp16 style transfer), so autocast is switched off here.
    """
    with torch.autocast(features.device.type, enabled=False):
        return _Gram.apply(features.float())


def content_loss(features: torch.Tensor, target: torch.Tensor, norm: str) -> torch.Tensor:
    """Content loss of one layer: "mse" (seed) or "half_sum" (0.5 * sum of squares, the paper)."""
    if norm == "mse":
        return F.mse_loss(features, target)
    if norm == "half_sum":
        return 0.5 * (features - target).pow(2).sum()
    raise ValueError(f"unknown content normalisation {norm!r}")


def style_layer_loss(gram: torch.Tensor, target: torch.Tensor, norm: str) -> torch.Tensor:
    """Style loss of one layer's Gram matrix: "mse_c2" (seed: MSE / C^2) or "paper" (sum of squares / 4C^2)."""
    channels = gram.shape[-1]
    if norm == "mse_c2":
        return F.mse_loss(gram, target) / channels**2
    if norm == "paper":
        return (gram - target).pow(2).sum() / (4 * channels**2)
    raise ValueError(f"unknown style normalisation {norm!r}")


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
    """Content features and blended style Grams, computed once per scale without autograd."""

    content: dict[str, torch.Tensor]
    grams: dict[str, torch.Tensor]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the content, style and TV terms in the total loss."""

    content: float
    style: float
    tv: float

    @classmethod
    def from_preset(cls, preset: LossPreset, content=None, style=None, tv=None) -> "LossWeights":
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


@torch.no_grad()
def compute_targets(model, preset: LossPreset, content: torch.Tensor, styles: list[torch.Tensor], blend=None) -> Targets:
    """Targets for one scale: content features of ``content``, Grams of ``styles`` blended by weight."""
    content_feats = model(content, list(preset.content_layers))
    grams: dict[str, torch.Tensor] = {}
    for style, weight in zip(styles, normalise_blend(blend, len(styles))):
        feats = model(style, list(preset.style_layers))
        for name, f in feats.items():
            grams[name] = grams.get(name, 0) + weight * gram_matrix(f)
    return Targets(content={k: v.detach() for k, v in content_feats.items()}, grams=grams)


def loss_terms(model, preset: LossPreset, image: torch.Tensor, targets: Targets, weights: LossWeights) -> dict[str, torch.Tensor]:
    """Unweighted content, style and TV losses of ``image`` and their weighted total."""
    # Losses in fp32 whatever precision the network ran in (under autocast it may return bf16).
    feats = {name: f.float() for name, f in model(image, preset.layers).items()}
    content = sum(w * content_loss(feats[n], targets.content[n], preset.content_norm) for n, w in preset.content_layers.items())
    style = sum(
        w * style_layer_loss(gram_matrix(feats[n]), targets.grams[n], preset.style_norm) for n, w in preset.style_layers.items()
    )
    tv = tv_loss(image, preset.tv_kind)
    total = weights.content * content + weights.style * style + weights.tv * tv
    return {"content": content, "style": style, "tv": tv, "total": total}
