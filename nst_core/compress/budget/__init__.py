"""Budgeted structured pruning: choose every conv's width so a cost budget is met at the least predicted quality loss.

The pieces, in the order ``nst prune --target-speedup`` (and ``nst release``) use them:

1. **Sensitivity curves** (:mod:`.curves`, :class:`SensitivityCurves`): per conv, how much quality degrades
   when only that conv loses a fraction of its filters. From a structured scan folder
   (:func:`curves_from_scan`: judged degradation of a full scan, proxy distortion of a proxy
   scan), or measured here without an optimisation, with filters ranked by any importance criterion:
   with the proxy (:func:`proxy_curves`: feature and Gram distortion) or as the image-gradient error
   (:func:`gradient_curves`: the style-transfer loss's gradient with respect to the image against the
   dense network's; ``budgeted_prune(curves="gradient")``).
2. **Allocation** (:mod:`.allocate`, :func:`allocate_widths`): greedy over the curves. Start dense; repeatedly
   take 8 channels from the conv whose next step costs the least predicted degradation per
   unit of predicted cost saved, until the predicted cost meets the budget; then a local
   search gives channels back or moves 8 channels between two convs while that lowers the
   predicted degradation within the budget. The degradation
   of a network is predicted as the sum of its layers' own degradations (layers interact, so
   this is a ranking device, not a promise: judge the result). Widths stay multiples of 8 and
   no conv goes below the deepest level its curve measured.
3. **Pruning** (:mod:`.pipeline`, :func:`budgeted_prune`): :func:`nst_core.compress.pruning.prune`
   with a profile of the chosen widths and the importance scores.
4. **Measurement** (:mod:`.speed`, :func:`measure_speedup`): stylization iterations of the dense and the
   pruned network, interleaved round by round, through the same ``stylize`` code users run.

The cost of a width choice comes from a :class:`nst_core.nst.cost.CostModel`: conv MACs alone by
default, or a model fitted to this machine's timings (:mod:`.calibrate`), which
also predicts the memory-bound parts (early layers at full resolution, the optimiser step).

May import: ``core``, ``model``, ``image``, ``nst`` and, in ``compress``, pruning, importance,
calibration and the scan's proxy and table.

>>> from nst_core.model.weights import load_vgg
>>> result = budgeted_prune(load_vgg("random:0", last_layer="relu5_3"), target_speedup=3.0)  # doctest: +SKIP
>>> result.plan.predicted_speedup, result.pruned.widths                                       # doctest: +SKIP
"""

from nst_core.compress.budget.allocate import WidthPlan, allocate_widths
from nst_core.compress.budget.calibrate import calibrate_cost_model, calibration_networks, fit_cost_model
from nst_core.compress.budget.curves import (
    CURVE_KINDS,
    PROXY_LEVELS,
    GradientProbe,
    SensitivityCurves,
    curves_from_scan,
    gradient_curves,
    proxy_curves,
    zeroed_filters,
)
from nst_core.compress.budget.pipeline import BudgetResult, budgeted_prune, calibration_tensors
from nst_core.compress.budget.speed import SpeedMeasurement, measure_speedup, time_iterations

__all__ = [
    "CURVE_KINDS",
    "GradientProbe",
    "gradient_curves",
    "PROXY_LEVELS",
    "BudgetResult",
    "SensitivityCurves",
    "SpeedMeasurement",
    "WidthPlan",
    "allocate_widths",
    "budgeted_prune",
    "calibrate_cost_model",
    "calibration_networks",
    "calibration_tensors",
    "curves_from_scan",
    "fit_cost_model",
    "measure_speedup",
    "proxy_curves",
    "time_iterations",
    "zeroed_filters",
]
