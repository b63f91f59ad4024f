"""Budgeted pruning end to end: importance -> curves -> widths for the budget -> pruned network."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nst_core.compress.budget.allocate import WidthPlan, allocate_widths
from nst_core.compress.budget.curves import (
    CURVE_KINDS,
    PROXY_LEVELS,
    SensitivityCurves,
    curves_from_scan,
    gradient_curves,
    proxy_curves,
)
from nst_core.compress.calibration import CalibrationImage, load_folder
from nst_core.compress.importance import DEFAULT_CRITERION, calibration_pairs, filter_importance
from nst_core.compress.pruning import Profile, prune
from nst_core.core.errors import UserError
from nst_core.model.vgg import VGGFeatures
from nst_core.nst.cost import CostModel


@dataclass
class BudgetResult:
    """A budgeted network, its plan, and how its filters were chosen."""

    pruned: VGGFeatures
    plan: WidthPlan
    importance: str
    curves: SensitivityCurves


def calibration_tensors(images: list[CalibrationImage], max_styles: int = 3) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The proxy's inputs from calibration images: the first pair's content and up to ``max_styles`` styles."""
    pairs = calibration_pairs(images)
    styles: list[CalibrationImage] = []
    for _, style in pairs:
        if all(style is not s for s in styles):
            styles.append(style)
    content = pairs[0][0].pixels.unsqueeze(0)
    return content, [s.pixels.unsqueeze(0) for s in styles[:max_styles]]


def budgeted_prune(
    model: VGGFeatures,
    target_speedup: float | None = None,
    target_macs: int | None = None,
    importance: str = DEFAULT_CRITERION,
    images: str | Path | list[CalibrationImage] | None = None,
    scan: str | Path | None = None,
    size: int = 512,
    calibration_size: int = 128,
    cost_model: CostModel | None = None,
    preset: str = "seed",
    max_pairs: int | None = 4,
    levels: tuple[float, ...] = PROXY_LEVELS,
    curves: str = "proxy",
) -> BudgetResult:
    """Importance -> curves (the scan folder's, else the proxy's) -> widths for the budget -> pruned network.

    ``images`` is a calibration folder (default: the bundled examples) or images already loaded
    at ``calibration_size``; they rank filters (``activation``, ``taylor``) and feed the proxy.
    The cost is predicted at ``size`` x ``size`` px; the proxy measures each conv at ``levels``
    (fractions of filters removed; the deepest is as far as any conv may be cut). ``model`` is not changed.
    Without a scan, ``curves`` says how each conv's curve is measured: ``proxy`` (feature and Gram
    distortion) or ``gradient`` (the image-gradient error, :func:`gradient_curves`: slower, several
    forward and backward passes per cell).
    """
    if curves not in CURVE_KINDS:
        raise UserError(f"curves must be one of {', '.join(CURVE_KINDS)}, not {curves!r}")
    if isinstance(images, list):
        loaded = images
    elif importance != "l1" or scan is None:
        loaded = load_folder(images, max_side=calibration_size)
    else:
        loaded = []
    device = next(model.parameters()).device
    scores = filter_importance(model, importance, loaded, preset, max_pairs)
    if scan is not None:
        sensitivity = curves_from_scan(scan)
        if importance != sensitivity.source["importance"]:
            sensitivity.source["note"] = (
                f"the scan ranked filters by {sensitivity.source['importance']}; "
                f"the network keeps filters by {importance}"
            )
    else:
        content, styles = calibration_tensors(loaded)
        measure = gradient_curves if curves == "gradient" else proxy_curves
        sensitivity = measure(model, content.to(device), [s.to(device) for s in styles], scores, preset, levels)
        sensitivity.source["importance"] = importance
    plan = allocate_widths(model.widths, sensitivity, size, target_speedup, target_macs, cost_model)
    pruned = prune(model, Profile("structured", {}, widths=plan.widths), scores)
    pruned.provenance["budget"] = plan.to_dict()
    pruned.provenance["importance"] = importance
    return BudgetResult(pruned, plan, importance, sensitivity)
