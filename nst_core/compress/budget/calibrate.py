"""A cost model fitted to this machine: time a few pruned networks, fit seconds to MACs and activation sizes.

The fitted :class:`nst_core.nst.cost.CostModel` also predicts the memory-bound parts (early layers at
full resolution, the optimiser step) that conv MACs alone miss.
"""

from __future__ import annotations

import itertools
import statistics

import numpy as np

from nst_core.compress.budget.speed import time_iterations
from nst_core.compress.pruning import Profile, prune
from nst_core.core.errors import UserError
from nst_core.model.vgg import VGGFeatures
from nst_core.nst.cost import CostModel, activation_elements, iteration_macs


def calibration_networks(model: VGGFeatures) -> list[VGGFeatures]:
    """The networks :func:`calibrate_cost_model` times: ``model``, 50% and 75% of every conv's filters removed,
    and 75% removed from the first two blocks only and from the last two only (so the fit can tell
    full-resolution layers, where activations are large and MACs few, from deep ones)."""
    early = [n for n in model.conv_names if n[4] in "12"]
    late = [n for n in model.conv_names if n[4] in "45"]
    return [
        model,
        prune(model, Profile.uniform("structured", model.conv_names, 0.5)),
        prune(model, Profile.uniform("structured", model.conv_names, 0.75)),
        prune(model, Profile.uniform("structured", early, 0.75)),
        prune(model, Profile.uniform("structured", late, 0.75)),
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
