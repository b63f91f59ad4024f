"""Budgeted structured pruning: choose every conv's width so a cost budget is met at the least predicted quality loss.

The pieces, in the order ``nst prune --target-speedup`` (and ``nst release``) use them:

1. **Sensitivity curves** (:class:`SensitivityCurves`): per conv, how much quality degrades
   when only that conv loses a fraction of its filters. From a structured scan folder
   (:func:`curves_from_scan`: judged degradation of a full scan, proxy distortion of a proxy
   scan), or measured here with the proxy (:func:`proxy_curves`: feature and Gram distortion,
   no optimisation), with filters ranked by any importance criterion.
2. **Allocation** (:func:`allocate_widths`): greedy over the curves. Start dense; repeatedly
   take 8 channels from the conv whose next step costs the least predicted degradation per
   unit of predicted cost saved, until the predicted cost meets the budget; then a local
   search gives channels back or moves 8 channels between two convs while that lowers the
   predicted degradation within the budget. The degradation
   of a network is predicted as the sum of its layers' own degradations (layers interact, so
   this is a ranking device, not a promise: judge the result). Widths stay multiples of 8 and
   no conv goes below the deepest level its curve measured.
3. **Pruning** (:func:`nst_core.compress.pruning.prune_to_widths` with the importance scores).
4. **Measurement** (:func:`measure_speedup`): stylization iterations of the dense and the
   pruned network, interleaved round by round, through the same ``stylize`` code users run.

The cost of a width choice comes from a :class:`nst_core.nst.cost.CostModel`: conv MACs alone by
default, or a model fitted to this machine's timings (:func:`calibrate_cost_model`), which
also predicts the memory-bound parts (early layers at full resolution, the optimiser step).

>>> from nst_core.model.weights import load_vgg
>>> result = budgeted_prune(load_vgg("random:0", last_layer="relu5_3"), target_speedup=3.0)  # doctest: +SKIP
>>> result.plan.predicted_speedup, result.pruned.widths                                       # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nst_core.compress.calibration import CalibrationImage, load_folder
from nst_core.compress.importance import calibration_pairs, filter_importance
from nst_core.compress.pruning import (
    CHANNEL_MULTIPLE,
    Profile,
    best_filters,
    channels_to_keep,
    prune_structured,
    prune_to_widths,
)
from nst_core.compress.scan.proxy import ProxyProbe
from nst_core.compress.scan.table import degradation, merge_scan
from nst_core.core.errors import UserError
from nst_core.image.io import tensor_to_pil
from nst_core.model.vgg import DENSE_WIDTHS, VGGFeatures
from nst_core.nst.cost import CostModel, activation_elements, iteration_macs
from nst_core.nst.losses import get_preset
from nst_core.nst.stylize import StylizeConfig, prepare, stylize

#: Fractions of filters removed at which the proxy measures each conv's curve.
PROXY_LEVELS = (0.25, 0.5, 0.625, 0.75, 0.875)


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
            f"--scan {folder}: the scan pruned {table.scan['method']!r}; a width budget needs a structured scan (--method structured)"
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
    alone (filters ranked by ``scores``, default L1; see :func:`zeroed_filters`) and take the larger of the feature and Gram
    distortion. ``content``/``styles`` are (1, 3, H, W) RGB 0..255 tensors."""
    loss_preset = get_preset(preset)
    probe = ProxyProbe(model, loss_preset, content, styles)
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
                distortion = degradation(probe.measure(model), "proxy")
            points.setdefault(layer, []).append((1.0 - kept / width, distortion))
    size = list(content.shape[-2:])
    return SensitivityCurves(points, {"proxy": "max(feature, gram) distortion", "levels": list(levels), "size": size})


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


@dataclass
class WidthPlan:
    """What :func:`allocate_widths` chose, and what it predicts."""

    widths: dict[str, int]
    size: tuple[int, int]  # (height, width) the cost is predicted at
    predicted_speedup: float
    predicted_macs: int  # conv MACs of one stylization iteration at ``size``
    dense_macs: int
    predicted_degradation: float  # sum over convs of each one's own curve value
    layer_degradation: dict[str, float]
    cost_model: dict
    budget: dict  # {"target_speedup": x} or {"target_macs": n}
    curves_source: dict

    def ratios(self) -> dict[str, float]:
        """Fraction of filters removed per conv (0 for untouched convs)."""
        return {name: 1.0 - w / DENSE_WIDTHS[name] for name, w in self.widths.items()}

    def to_profile(self) -> Profile:
        """The widths as a structured profile (``nst prune --profile`` reproduces them; filter choice by L1 there)."""
        return Profile("structured", {k: v for k, v in self.ratios().items() if v > 0}, {"budget": self.to_dict()})

    def to_dict(self) -> dict:
        """JSON-ready plan (reports, model cards)."""
        return {
            "widths": dict(self.widths),
            "size": list(self.size),
            "predicted_speedup": self.predicted_speedup,
            "predicted_macs": self.predicted_macs,
            "dense_macs": self.dense_macs,
            "predicted_degradation": self.predicted_degradation,
            "layer_degradation": dict(self.layer_degradation),
            "cost_model": dict(self.cost_model),
            "budget": dict(self.budget),
            "curves": dict(self.curves_source),
        }


def allocate_widths(
    widths: dict[str, int],
    curves: SensitivityCurves,
    size: int | tuple[int, int] = 512,
    target_speedup: float | None = None,
    target_macs: int | None = None,
    cost_model: CostModel | None = None,
) -> WidthPlan:
    """Greedy width allocation: cut 8 channels at a time where predicted degradation per cost saved is least.

    Exactly one of ``target_speedup`` (over dense VGG-19 at the same depth, by ``cost_model``,
    default MACs only) or ``target_macs`` (conv MACs of one iteration at ``size``) is the budget.
    Convs without a curve are not cut. Raises :class:`UserError` when even cutting every conv to its
    deepest measured level does not meet the budget.
    """
    if (target_speedup is None) == (target_macs is None):
        raise UserError("give exactly one of --target-speedup or --target-macs")
    if target_speedup is not None and not target_speedup > 1.0:
        raise UserError(f"--target-speedup must be > 1, not {target_speedup}")
    if target_macs is not None and not target_macs > 0:
        raise UserError(f"--target-macs must be > 0, not {target_macs}")
    height, width = (size, size) if isinstance(size, int) else size
    model = cost_model or CostModel.macs_only()
    dense = {name: DENSE_WIDTHS[name] for name in widths}
    if target_macs is not None:
        # A MAC budget is a budget of arithmetic, whatever the time model says.
        model = CostModel.macs_only()
        budget = float(target_macs)
        budget_note = {"target_macs": int(target_macs)}
    else:
        budget = model.iteration_cost(dense, height, width) / target_speedup
        budget_note = {"target_speedup": float(target_speedup)}

    current = dict(widths)
    cost = model.iteration_cost(current, height, width)
    layer_deg = {name: curves.degradation_at(name, 1.0 - current[name] / DENSE_WIDTHS[name]) for name in current}
    while cost > budget * (1 + 1e-12):
        best = None
        for name in current:
            if name not in curves.points or current[name] - CHANNEL_MULTIPLE < CHANNEL_MULTIPLE:
                continue
            trial = dict(current)
            trial[name] -= CHANNEL_MULTIPLE
            new_deg = curves.degradation_at(name, 1.0 - trial[name] / DENSE_WIDTHS[name])
            if not np.isfinite(new_deg):
                continue
            saved = cost - model.iteration_cost(trial, height, width)
            if saved <= 0:
                continue
            # Least degradation per cost saved; a free step (no measured loss) goes to the biggest saving.
            key = ((new_deg - layer_deg[name]) / saved, -saved)
            if best is None or key < best[0]:
                best = (key, name, trial, new_deg)
        if best is None:
            reachable = model.speedup(current, height, width, dense)
            raise UserError(
                f"the budget cannot be met: cutting every conv to the deepest level its curve measured "
                f"predicts {reachable:.2f}x; scan deeper sparsities or ask for less"
            )
        _, name, current, layer_deg[name] = best
        cost = model.iteration_cost(current, height, width)
    current, layer_deg = _refine(current, layer_deg, curves, model, budget, (height, width), widths)

    return WidthPlan(
        widths=current,
        size=(height, width),
        predicted_speedup=model.speedup(current, height, width, dense),
        predicted_macs=iteration_macs(current, height, width),
        dense_macs=iteration_macs(dense, height, width),
        predicted_degradation=float(sum(layer_deg.values())),
        layer_degradation=layer_deg,
        cost_model=model.to_dict(),
        budget=budget_note,
        curves_source=dict(curves.source),
    )


def _refine(
    current: dict[str, int],
    layer_deg: dict[str, float],
    curves: SensitivityCurves,
    model: CostModel,
    budget: float,
    size: tuple[int, int],
    start: dict[str, int],
) -> tuple[dict[str, int], dict[str, float]]:
    """Local search after the greedy pass: give 8 channels back to one conv, or move 8 channels
    from one conv to another, whenever that lowers the predicted degradation within the budget.

    The greedy pass stops on the step that crosses the budget, which can overshoot (a big last
    step) or leave an early choice that later ones made worse; these moves undo both.
    """
    height, width = size

    def deg(name: str, w: int) -> float:
        return curves.degradation_at(name, 1.0 - w / DENSE_WIDTHS[name])

    def allowed(name: str, w: int) -> bool:
        return CHANNEL_MULTIPLE <= w <= start[name] and (w == start[name] or name in curves.points)

    improved = True
    while improved:
        improved = False
        best: tuple[float, dict[str, int]] | None = None
        names = list(current)
        moves = [(up, None) for up in names] + [(up, down) for up in names for down in names if up != down]
        for up, down in moves:
            trial = dict(current)
            trial[up] += CHANNEL_MULTIPLE
            if down is not None:
                trial[down] -= CHANNEL_MULTIPLE
            if not all(allowed(n, trial[n]) for n in (up, down) if n is not None):
                continue
            change = deg(up, trial[up]) - layer_deg[up] + (deg(down, trial[down]) - layer_deg[down] if down else 0.0)
            if not change < -1e-12 or model.iteration_cost(trial, height, width) > budget * (1 + 1e-12):
                continue
            if best is None or change < best[0]:
                best = (change, trial)
        if best is not None:
            current = best[1]
            layer_deg = {name: deg(name, w) for name, w in current.items()}
            improved = True
    return current, layer_deg


@dataclass
class SpeedMeasurement:
    """Seconds per stylization iteration of the dense and the pruned network, one pair per interleaved round."""

    size: tuple[int, int]
    dense_rounds: list[float]
    pruned_rounds: list[float]

    @property
    def dense_s(self) -> float:
        """Median seconds per iteration of the dense network."""
        return statistics.median(self.dense_rounds)

    @property
    def pruned_s(self) -> float:
        """Median seconds per iteration of the pruned network."""
        return statistics.median(self.pruned_rounds)

    @property
    def samples(self) -> int:
        """Rounds measured (each network once per round)."""
        return len(self.dense_rounds)

    @property
    def speedup(self) -> float:
        """Median over rounds of dense / pruned seconds within the round: a round's two networks ran
        back to back, so a machine that got busier between rounds changes both alike."""
        return statistics.median(d / p for d, p in zip(self.dense_rounds, self.pruned_rounds))

    def to_dict(self) -> dict:
        """JSON-ready measurement."""
        return {
            "size": list(self.size),
            "dense_s_per_it": self.dense_s,
            "pruned_s_per_it": self.pruned_s,
            "measured_speedup": self.speedup,
            "samples": self.samples,
            "dense_rounds": list(self.dense_rounds),
            "pruned_rounds": list(self.pruned_rounds),
        }


def _timing_images(size: int) -> tuple[Image.Image, Image.Image]:
    """A square content and style image of ``size`` px: seeded noise (timing does not depend on pixel values)."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand((2, 1, 3, size, size), generator=generator) * 255
    return tensor_to_pil(noise[0]), tensor_to_pil(noise[1])


def time_iterations(
    models: list[VGGFeatures], size: int, iterations: int = 2, rounds: int = 2, preset: str = "seed"
) -> list[list[float]]:
    """Seconds per stylization iteration (Adam, ``preset`` losses, ``size`` x ``size`` px) of each model,
    one sample per round, the models taking turns within each round so machine load hits all alike.
    An untimed warm-up run of each comes first."""
    content, style = _timing_images(size)
    config = StylizeConfig(size=size, iterations=iterations, preset=preset)
    for model in models:
        stylize(prepare(model, content, [style], StylizeConfig(size=size, iterations=1, preset=preset)))
    samples: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for index, model in enumerate(models):
            samples[index].append(stylize(prepare(model, content, [style], config)).timings["per_iteration"])
    return samples


def measure_speedup(
    dense: VGGFeatures, pruned: VGGFeatures, size: int = 512, iterations: int = 2, rounds: int = 2, preset: str = "seed"
) -> SpeedMeasurement:
    """Measured per-iteration speedup of ``pruned`` over ``dense`` at ``size`` x ``size`` px (see :func:`time_iterations`)."""
    if iterations < 1 or rounds < 1:
        raise UserError("measuring speed needs at least 1 iteration and 1 round")
    dense_t, pruned_t = time_iterations([dense, pruned], size, iterations, rounds, preset)
    return SpeedMeasurement((size, size), dense_t, pruned_t)


def calibration_networks(model: VGGFeatures) -> list[VGGFeatures]:
    """The networks :func:`calibrate_cost_model` times: ``model``, 50% and 75% of every conv's filters removed,
    and 75% removed from the first two blocks only and from the last two only (so the fit can tell
    full-resolution layers, where activations are large and MACs few, from deep ones)."""
    early = [n for n in model.conv_names if n[4] in "12"]
    late = [n for n in model.conv_names if n[4] in "45"]
    return [
        model,
        prune_structured(model, 0.5),
        prune_structured(model, 0.75),
        prune_structured(model, {n: 0.75 for n in early}),
        prune_structured(model, {n: 0.75 for n in late}),
    ]


def calibrate_cost_model(
    model: VGGFeatures, size: int = 512, iterations: int = 2, rounds: int = 2, preset: str = "seed"
) -> CostModel:
    """A :class:`CostModel` fitted to this machine: time :func:`calibration_networks` at ``size`` and fit
    seconds = a*MACs + b*elements + c by least squares with every coefficient >= 0 (see :func:`fit_cost_model`)."""
    networks = calibration_networks(model)
    seconds = [statistics.median(s) for s in time_iterations(networks, size, iterations, rounds, preset)]
    source = f"cost model fitted to {len(networks)} networks at {size} px, {rounds} rounds x {iterations} iterations"
    return fit_cost_model([n.widths for n in networks], seconds, size, source)


def fit_cost_model(widths: list[dict[str, int]], seconds: list[float], size: int, source: str = "fitted") -> CostModel:
    """Least-squares ``seconds = a*MACs + b*elements + c`` over networks of the given widths timed at ``size``
    px, every coefficient >= 0: the best fit over the subsets of terms that include the MACs."""
    if len(widths) != len(seconds) or not seconds or min(seconds) <= 0:
        raise UserError(f"a cost model needs one positive time per network, not {seconds} for {len(widths)} networks")
    features = np.array(
        [[iteration_macs(w, size, size), sum(activation_elements(w, size, size).values()), 1.0] for w in widths],
        dtype=float,
    )
    scale = features.max(axis=0)
    y = np.array(seconds, dtype=float)
    best: tuple[float, np.ndarray] | None = None
    for k in range(1, 4):
        for subset in itertools.combinations(range(3), k):
            if 0 not in subset:
                continue  # the MAC term is what pruning removes; a fit without it predicts nothing
            columns = list(subset)
            x = features[:, columns] / scale[columns]
            coef, *_ = np.linalg.lstsq(x, y, rcond=None)
            if (coef < 0).any():
                continue
            residual = float(((x @ coef - y) ** 2).sum())
            if best is None or residual < best[0] - 1e-12 * max(1.0, float((y**2).sum())):
                full = np.zeros(3)
                full[columns] = coef / scale[columns]
                best = (residual, full)
    assert best is not None  # the MACs-only fit of positive times has a positive coefficient
    mac_s, element_s, fixed_s = (float(v) for v in best[1])
    return CostModel(mac_s, element_s, fixed_s, source)


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
    importance: str = "l1",
    images: str | Path | list[CalibrationImage] | None = None,
    scan: str | Path | None = None,
    size: int = 512,
    calibration_size: int = 128,
    cost_model: CostModel | None = None,
    preset: str = "seed",
    max_pairs: int | None = 4,
    levels: tuple[float, ...] = PROXY_LEVELS,
) -> BudgetResult:
    """Importance -> curves (the scan folder's, else the proxy's) -> widths for the budget -> pruned network.

    ``images`` is a calibration folder (default: the bundled examples) or images already loaded
    at ``calibration_size``; they rank filters (``activation``, ``taylor``) and feed the proxy.
    The cost is predicted at ``size`` x ``size`` px; the proxy measures each conv at ``levels``
    (fractions of filters removed; the deepest is as far as any conv may be cut). ``model`` is not changed.
    """
    if isinstance(images, list):
        loaded = images
    elif importance != "l1" or scan is None:
        loaded = load_folder(images, max_side=calibration_size)
    else:
        loaded = []
    device = next(model.parameters()).device
    scores = filter_importance(model, importance, loaded, preset, max_pairs)
    if scan is not None:
        curves = curves_from_scan(scan)
        if importance != curves.source["importance"]:
            curves.source["note"] = (
                f"the scan ranked filters by {curves.source['importance']}; the network keeps filters by {importance}"
            )
    else:
        content, styles = calibration_tensors(loaded)
        curves = proxy_curves(model, content.to(device), [s.to(device) for s in styles], scores, preset, levels)
        curves.source["importance"] = importance
    plan = allocate_widths(model.widths, curves, size, target_speedup, target_macs, cost_model)
    pruned = prune_to_widths(model, plan.widths, scores)
    pruned.provenance["budget"] = plan.to_dict()
    pruned.provenance["importance"] = importance
    return BudgetResult(pruned, plan, importance, curves)
