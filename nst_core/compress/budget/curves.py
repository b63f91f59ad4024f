"""Sensitivity curves: per conv, how much quality degrades when only that conv loses a fraction of its filters.

From a structured scan folder (:func:`curves_from_scan`: judged degradation of a full scan, proxy
distortion of a proxy scan), or measured here without an optimisation, with filters ranked by any
importance criterion: with the scan's proxy (:func:`proxy_curves`: feature and Gram distortion) or
as the image-gradient error (:func:`gradient_curves`: how far the style-transfer loss's gradient with
respect to the image moves from the dense network's, which is what a loss network's output follows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nst_core.compress.pruning import best_filters, channels_to_keep
from nst_core.compress.scan.proxy import ProxyProbe
from nst_core.compress.scan.table import degradation, merge_scan
from nst_core.core.errors import UserError
from nst_core.model.layers import DENSE_WIDTHS
from nst_core.model.vgg import VGGFeatures
from nst_core.nst.losses import LossPreset, LossWeights, compute_targets, get_preset, image_gradient

#: Fractions of filters removed at which the proxy measures each conv's curve.
PROXY_LEVELS = (0.25, 0.5, 0.625, 0.75, 0.875)
#: How budgets measure curves when no scan is given: ``proxy`` (feature and Gram distortion) or ``gradient``.
CURVE_KINDS = ("proxy", "gradient")


@dataclass
class SensitivityCurves:
    """Per conv, (fraction of filters removed, degradation) points; 0 removed is 0 degradation."""

    points: dict[str, list[tuple[float, float]]]
    source: dict = field(default_factory=dict)  # where the numbers came from (scan folder, proxy settings, ...)

    def degradation_at(self, layer: str, removed: float) -> float:
        """Predicted degradation of ``layer`` alone with ``removed`` of its filters gone.

        Linear between measured levels, and never less than at a smaller removal (a measured
        dip is noise: losing more filters is not better). Past the deepest level: infinite.
        """
        if removed <= 1e-12:
            return 0.0
        levels = sorted(self.points.get(layer, []))
        if not levels or removed > levels[-1][0] + 1e-9:
            return float("inf")
        previous_x, previous_y, best = 0.0, 0.0, 0.0
        for x, y in levels:
            y = max(y, best) if np.isfinite(y) else float("inf")
            if removed <= x + 1e-12:
                if not np.isfinite(y):
                    return float("inf")
                share = (removed - previous_x) / (x - previous_x) if x > previous_x else 1.0
                return previous_y + share * (y - previous_y)
            previous_x, previous_y, best = x, y, y
        return float("inf")

    def to_dict(self) -> dict:
        """JSON-ready curves and source."""
        return {"points": {k: [list(p) for p in v] for k, v in self.points.items()}, "source": dict(self.source)}


def curves_from_scan(folder: str | Path, metric: str | None = None) -> SensitivityCurves:
    """Curves from a structured scan folder (``nst scan run --method structured``): its merged cells.

    ``metric`` is a :data:`nst_core.compress.scan.DEGRADATIONS` name; default ``worst`` for full scans,
    ``proxy`` for proxy scans (as ``nst scan select``).
    """
    table = merge_scan(folder)
    if table.scan["method"] != "structured":
        raise UserError(
            f"--scan {folder}: the scan pruned {table.scan['method']!r}; "
            "a width budget needs a structured scan (--method structured)"
        )
    if not table.rows:
        raise UserError(f"--scan {folder}: the scan has no finished cells")
    metric = metric or table.default_degradation
    points: dict[str, list[tuple[float, float]]] = {}
    for row in table.rows:
        # The scan's level is nominal; the filters actually removed are rounded to multiples of 8.
        width = DENSE_WIDTHS[row["layer"]]
        removed = 1.0 - channels_to_keep(width, float(row["sparsity"])) / width
        points.setdefault(row["layer"], []).append((removed, float(degradation(row, metric))))
    source = {
        "scan": str(folder),
        "config_hash": table.scan["config_hash"],
        "mode": table.scan["mode"],
        "importance": table.scan.get("importance", "l1"),
        "degradation": metric,
        "incomplete": bool(table.missing),
        "weights": table.scan["weights"],
    }
    return SensitivityCurves({k: sorted(v) for k, v in points.items()}, source)


def _per_cell(
    model: VGGFeatures,
    scores: dict[str, torch.Tensor] | None,
    levels: tuple[float, ...],
    layers: list[str] | None,
    measure: Callable[[], float],
) -> dict[str, list[tuple[float, float]]]:
    """Per conv and level: ``measure()`` while that conv alone keeps its best filters (:func:`zeroed_filters`)."""
    points: dict[str, list[tuple[float, float]]] = {}
    for layer in layers or model.conv_names:
        width = model.widths[layer]
        seen: set[int] = set()
        for level in levels:
            kept = channels_to_keep(width, level)
            if kept in seen or kept == width:
                continue  # rounding to multiples of 8 made two levels the same width
            seen.add(kept)
            with zeroed_filters(model, layer, best_filters(model, layer, kept, scores)):
                points.setdefault(layer, []).append((1.0 - kept / width, measure()))
    return points


def proxy_curves(
    model: VGGFeatures,
    content: torch.Tensor,
    styles: list[torch.Tensor],
    scores: dict[str, torch.Tensor] | None = None,
    preset: str = "seed",
    levels: tuple[float, ...] = PROXY_LEVELS,
    layers: list[str] | None = None,
) -> SensitivityCurves:
    """Curves measured with the scan's proxy (no optimisation): per conv and level, prune that conv
    alone (filters ranked by ``scores``, default L1; see :func:`zeroed_filters`) and take the larger
    of the feature and Gram distortion. ``content``/``styles`` are (1, 3, H, W) RGB 0..255 tensors."""
    probe = ProxyProbe(model, get_preset(preset), content, styles)
    points = _per_cell(model, scores, levels, layers, lambda: degradation(probe.measure(model), "proxy"))
    size = list(content.shape[-2:])
    return SensitivityCurves(points, {"proxy": "max(feature, gram) distortion", "levels": list(levels), "size": size})


class GradientProbe:
    """Image gradients of the preset's loss at fixed points: per style, the content with noise (where an
    optimisation starts) and a 50/50 content/style mix (where it goes); targets are the probed network's own."""

    def __init__(self, preset: LossPreset, content: torch.Tensor, styles: list[torch.Tensor]):
        self.preset, self.content, self.weights = preset, content, LossWeights.from_preset(preset)
        generator = torch.Generator().manual_seed(0)
        self.points = []
        for style in styles:
            resized = F.interpolate(style, size=content.shape[-2:], mode="bilinear", align_corners=False)
            noise = torch.randn(content.shape, generator=generator).to(content.device)
            self.points.append((style, (content + 20 * noise).clamp(0, 255)))
            self.points.append((style, 0.5 * content + 0.5 * resized))

    def gradients(self, model: VGGFeatures) -> list[torch.Tensor]:
        """``model``'s image gradient at every point."""
        out = []
        for style, image in self.points:
            targets = compute_targets(model, self.preset, self.content, [style])
            out.append(image_gradient(model, self.preset, image, targets, self.weights))
        return out


def gradient_curves(
    model: VGGFeatures,
    content: torch.Tensor,
    styles: list[torch.Tensor],
    scores: dict[str, torch.Tensor] | None = None,
    preset: str = "seed",
    levels: tuple[float, ...] = PROXY_LEVELS,
    layers: list[str] | None = None,
) -> SensitivityCurves:
    """Curves as the image-gradient error: per conv and level, prune that conv alone (filters ranked by
    ``scores``, default L1) and take the mean |g - g_dense|^2 / |g_dense|^2 over :class:`GradientProbe`'s
    points. They cost a forward and backward pass per point and cell (about 5x the proxy's time). On the
    trained VGG-16 their conv-MAC budgets judged better than the proxy's at 2x and far worse at 3x and 4x
    (docs/pruning.md), so the proxy is the default."""
    probe = GradientProbe(get_preset(preset), content, styles)
    reference = probe.gradients(model)

    def error() -> float:
        pruned = probe.gradients(model)
        return float(
            np.mean([float((g - r).pow(2).sum() / r.pow(2).sum().clamp_min(1e-30)) for g, r in zip(pruned, reference)])
        )

    points = _per_cell(model, scores, levels, layers, error)
    size = list(content.shape[-2:])
    return SensitivityCurves(points, {"proxy": "image-gradient error", "levels": list(levels), "size": size})


@contextmanager
def zeroed_filters(model: VGGFeatures, layer: str, kept: torch.Tensor) -> Iterator[None]:
    """Within the block, conv ``layer`` of ``model`` outputs 0 at every channel not in ``kept``.

    A removed filter (and its bias) makes its ReLU output exactly 0, and the next conv then
    sums over one fewer input channel: the same activations as the structurally pruned
    network, zero-filled (what the proxy compares), without building one network per cell.
    """
    conv = model.conv(layer)
    mask = torch.zeros(1, conv.out_channels, 1, 1, device=conv.weight.device, dtype=conv.weight.dtype)
    mask[:, kept.to(conv.weight.device)] = 1.0
    handle = conv.register_forward_hook(lambda _module, _inputs, output: output * mask)
    try:
        yield
    finally:
        handle.remove()
