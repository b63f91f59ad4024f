"""Width allocation: every conv's width chosen so a cost budget is met at the least predicted degradation.

Greedy over the sensitivity curves, then a local search (:func:`allocate_widths`). The degradation
of a network is predicted as the sum of its layers' own degradations (layers interact, so this is
a ranking device, not a promise: judge the result).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nst_core.compress.budget.curves import SensitivityCurves
from nst_core.compress.pruning import CHANNEL_MULTIPLE, Profile
from nst_core.core.errors import UserError
from nst_core.model.layers import DENSE_WIDTHS
from nst_core.nst.cost import CostModel, iteration_macs


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
    height, width = (size, size) if isinstance(size, int) else size
    dense = {name: DENSE_WIDTHS[name] for name in widths}
    model, budget, budget_note = _budget(dense, (height, width), target_speedup, target_macs, cost_model)
    current, layer_deg = _greedy(widths, curves, model, budget, (height, width), dense)
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


def _budget(
    dense: dict[str, int],
    size: tuple[int, int],
    target_speedup: float | None,
    target_macs: int | None,
    cost_model: CostModel | None,
) -> tuple[CostModel, float, dict]:
    """(the cost model that judges the budget, the budget in its units, the budget as the plan records it)."""
    if (target_speedup is None) == (target_macs is None):
        raise UserError("give exactly one of --target-speedup or --target-macs")
    if target_speedup is not None and not target_speedup > 1.0:
        raise UserError(f"--target-speedup must be > 1, not {target_speedup}")
    if target_macs is not None and not target_macs > 0:
        raise UserError(f"--target-macs must be > 0, not {target_macs}")
    if target_macs is not None:
        # A MAC budget is a budget of arithmetic, whatever the time model says.
        return CostModel.macs_only(), float(target_macs), {"target_macs": int(target_macs)}
    assert target_speedup is not None  # exactly one of the two, checked above
    model = cost_model or CostModel.macs_only()
    return model, model.iteration_cost(dense, *size) / target_speedup, {"target_speedup": float(target_speedup)}


def _greedy(
    widths: dict[str, int],
    curves: SensitivityCurves,
    model: CostModel,
    budget: float,
    size: tuple[int, int],
    dense: dict[str, int],
) -> tuple[dict[str, int], dict[str, float]]:
    """From ``widths``, take 8 channels at a time from the conv whose cut costs the least predicted
    degradation per unit of cost saved, until the cost meets ``budget``; the widths and each conv's degradation."""
    height, width = size
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
    return current, layer_deg


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
