"""nst_core.compress.budget: curves, the greedy width allocation, the fitted cost model.

And `nst prune --target-speedup`.

Work is counted in MACs; no test asserts anything about wall time.
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from nst_core.cli import main
from nst_core.compress.budget import (
    GradientProbe,
    SensitivityCurves,
    SpeedMeasurement,
    allocate_widths,
    budgeted_prune,
    calibration_tensors,
    fit_cost_model,
    gradient_curves,
    measure_speedup,
    proxy_curves,
    zeroed_filters,
)
from nst_core.compress.calibration import CalibrationImage
from nst_core.compress.pruning import prune_structured, prune_to_widths
from nst_core.compress.scan import ProxyProbe
from nst_core.core.errors import UserError
from nst_core.model.weights import load_vgg
from nst_core.nst.cost import CostModel, activation_elements, iteration_macs
from nst_core.nst.losses import get_preset

SHALLOW = {"conv1_1": 64, "conv1_2": 64, "conv2_1": 128}


def _image(name: str, seed: int, size: int = 32) -> CalibrationImage:
    generator = torch.Generator().manual_seed(seed)
    return CalibrationImage(name, torch.rand((3, size, size), generator=generator) * 255)


def _convex(scale: dict[str, float]) -> SensitivityCurves:
    """Degradation scale[layer] * removed**2, measured at the usual levels."""
    levels = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)
    return SensitivityCurves({name: [(x, k * x * x) for x in levels] for name, k in scale.items()}, {"test": True})


def test_curves_interpolate_and_never_improve_with_more_pruning():
    curves = SensitivityCurves({"conv1_2": [(0.5, 0.4), (0.75, 0.2), (0.875, 1.0)]})
    assert curves.degradation_at("conv1_2", 0.0) == 0.0
    assert curves.degradation_at("conv1_2", 0.25) == pytest.approx(0.2)  # halfway from (0, 0) to (0.5, 0.4)
    assert curves.degradation_at("conv1_2", 0.75) == pytest.approx(0.4)  # the dip to 0.2 is not believed
    assert curves.degradation_at("conv1_2", 0.8125) == pytest.approx(0.7)
    assert curves.degradation_at("conv1_2", 0.9) == float("inf")  # deeper than measured
    assert curves.degradation_at("conv2_1", 0.25) == float("inf")  # never measured: not cut


def test_allocation_cuts_the_insensitive_layer_first_and_meets_the_budget():
    plan = allocate_widths(
        SHALLOW, _convex({"conv1_1": 50.0, "conv1_2": 0.01, "conv2_1": 50.0}), 64, target_speedup=1.5
    )
    assert plan.widths["conv1_2"] < 64 and plan.widths["conv1_1"] == 64 and plan.widths["conv2_1"] == 128
    assert plan.predicted_speedup >= 1.5
    assert plan.predicted_speedup == pytest.approx(
        iteration_macs(SHALLOW, 64, 64) / iteration_macs(plan.widths, 64, 64)
    )
    assert all(w % 8 == 0 for w in plan.widths.values())
    # One step of 8 channels fewer would have met it too? Then the greedy went one step too far.
    wider = {**plan.widths, "conv1_2": plan.widths["conv1_2"] + 8}
    assert iteration_macs(SHALLOW, 64, 64) / iteration_macs(wider, 64, 64) < 1.5


def test_greedy_allocation_is_close_to_the_best_width_choice():
    """On convex curves, greedy's predicted degradation is within 5% of a brute-force search over every width triple."""
    curves = _convex({"conv1_1": 3.0, "conv1_2": 1.0, "conv2_1": 2.0})
    plan = allocate_widths(SHALLOW, curves, 32, target_speedup=2.5)
    budget = iteration_macs(SHALLOW, 32, 32) / 2.5
    best = float("inf")
    for a, b, c in itertools.product(range(8, 65, 8), range(8, 65, 8), range(16, 129, 8)):
        widths = {"conv1_1": a, "conv1_2": b, "conv2_1": c}
        if iteration_macs(widths, 32, 32) <= budget:
            best = min(best, sum(curves.degradation_at(n, 1 - w / SHALLOW[n]) for n, w in widths.items()))
    assert best < float("inf") and plan.predicted_degradation <= best * 1.05


def test_mac_budget_and_unreachable_budgets():
    half = iteration_macs(SHALLOW, 48, 48) // 2
    plan = allocate_widths(SHALLOW, _convex({"conv1_2": 1.0, "conv2_1": 1.0}), 48, target_macs=half)
    assert plan.predicted_macs <= half and plan.budget == {"target_macs": half}
    with pytest.raises(UserError, match="cannot be met"):  # conv1_2 alone, down to 8 channels, saves 6.6x
        allocate_widths(SHALLOW, _convex({"conv1_2": 1.0}), 48, target_speedup=8.0)
    with pytest.raises(UserError, match="exactly one"):
        allocate_widths(SHALLOW, _convex({"conv1_2": 1.0}), 48)
    with pytest.raises(UserError, match="must be > 1"):
        allocate_widths(SHALLOW, _convex({"conv1_2": 1.0}), 48, target_speedup=0.5)


def test_a_cost_model_with_fixed_time_asks_for_more_cutting():
    """Time that no pruning removes (the optimiser step, ...) makes a MAC-only 2x measure less than
    2x; a model that knows it cuts deeper for the same target."""
    curves = _convex({"conv1_2": 1.0, "conv2_1": 1.0})
    macs_only = allocate_widths(SHALLOW, curves, 64, target_speedup=2.0)
    dense_macs = iteration_macs(SHALLOW, 64, 64)
    timed = CostModel(1.0, 0.0, 0.1 * dense_macs, "test")
    with_fixed = allocate_widths(SHALLOW, curves, 64, target_speedup=2.0, cost_model=timed)
    assert with_fixed.predicted_macs < macs_only.predicted_macs
    assert timed.speedup(with_fixed.widths, 64, 64) >= 2.0 > timed.speedup(macs_only.widths, 64, 64)


def test_fit_recovers_the_coefficients_that_made_the_times():
    widths = [
        SHALLOW,
        {k: v // 2 for k, v in SHALLOW.items()},
        {k: v // 4 for k, v in SHALLOW.items()},
        {"conv1_1": 64, "conv1_2": 16, "conv2_1": 128},
    ]
    a, b, c = 2e-9, 3e-7, 0.05
    seconds = [a * iteration_macs(w, 64, 64) + b * sum(activation_elements(w, 64, 64).values()) + c for w in widths]
    model = fit_cost_model(widths, seconds, 64)
    assert (model.mac_s, model.element_s, model.fixed_s) == pytest.approx((a, b, c), rel=1e-6)
    nonsense = fit_cost_model(widths[:3], [1.0, 2.0, 3.0], 64)  # slower with fewer MACs: no negative coefficient
    assert min(nonsense.mac_s, nonsense.element_s, nonsense.fixed_s) >= 0 and nonsense.mac_s > 0
    with pytest.raises(UserError, match="one positive time per network"):
        fit_cost_model(widths[:2], [1.0, 0.0], 64)


@pytest.mark.slow
def test_zeroing_filters_gives_the_pruned_networks_proxy():
    """The proxy curves gate filters of the dense network instead of building a network per cell."""
    dense = load_vgg("random:0", last_layer="relu5_3")
    content, styles = calibration_tensors(
        [_image("content/a.png", 0), _image("style/b.png", 1), _image("style/c.png", 2)]
    )
    probe = ProxyProbe(dense, get_preset("seed"), content, styles)
    pruned = prune_structured(dense, {"conv3_1": 0.625})
    with zeroed_filters(dense, "conv3_1", pruned.kept_channels["conv3_1"]):
        gated = probe.measure(dense)
    assert gated == pytest.approx(probe.measure(pruned), rel=1e-5)
    assert probe.measure(dense)["proxy"] == 0.0  # the hook is gone after the block
    curves = proxy_curves(dense, content, styles, layers=["conv3_1"], levels=(0.5, 0.625))
    assert [x for x, _ in curves.points["conv3_1"]] == [0.5, 0.625]
    assert curves.points["conv3_1"][1][1] == pytest.approx(
        max(gated["feature_distortion"], gated["gram_distortion"]), rel=1e-5
    )


def test_gradient_curves_measure_the_image_gradients_change_and_nothing_past_the_loss():
    """A conv after the deepest layer the loss reads changes no gradient (0 exactly); the first conv does, more
    the more of it is cut; a bad kind of curve is refused by name."""
    dense = load_vgg("random:0")  # VGG-19 to conv5_4: the seed preset reads up to relu5_3
    content, styles = calibration_tensors(
        [_image("content/a.png", 0), _image("style/b.png", 1), _image("style/c.png", 2)]
    )
    curves = gradient_curves(dense, content, styles, layers=["conv5_4", "conv1_1"], levels=(0.25, 0.875))
    assert curves.source["proxy"] == "image-gradient error"
    assert curves.points["conv5_4"] == [(0.25, 0.0), (0.875, 0.0)]
    (light, mild), (heavy, severe) = curves.points["conv1_1"]
    assert (light, heavy) == (0.25, 0.875) and 0 < mild < severe
    probe = GradientProbe(get_preset("seed"), content, styles)
    assert len(probe.points) == 2 * len(styles)  # noisy content and a content/style mix per style
    with pytest.raises(UserError, match="curves must be one of proxy, gradient"):
        budgeted_prune(dense, target_speedup=2.0, images=[_image("content/a.png", 0)], curves="judged")


@pytest.mark.slow
def test_measure_speedup_times_both_networks(tmp_path):
    dense = load_vgg("random:0", last_layer="relu5_3")
    speed = measure_speedup(dense, prune_to_widths(dense, {"conv1_2": 16}), size=32, iterations=1, rounds=1)
    assert speed.samples == 1 and speed.dense_s > 0 and speed.pruned_s > 0
    assert speed.to_dict()["measured_speedup"] == pytest.approx(speed.dense_s / speed.pruned_s)
    # With several rounds the speedup is the median of each round's own ratio, not a ratio of medians.
    rounds = SpeedMeasurement((64, 64), [1.0, 4.0, 2.0], [0.5, 1.0, 1.0])
    assert rounds.speedup == 2.0 and rounds.dense_s / rounds.pruned_s == 2.0 and rounds.samples == 3
    assert SpeedMeasurement((64, 64), [1.0, 9.0], [1.0, 1.0]).speedup == 5.0


@pytest.mark.slow
def test_cli_budgeted_prune_meets_the_target_and_reports_it(tmp_path, capsys):
    report, cost_file = tmp_path / "r.json", tmp_path / "cost.json"
    # A cost model from a file: MACs plus a fixed part the size of 10% of dense's MACs (so it must cut deeper).
    dense_macs = iteration_macs(load_vgg("random:0", last_layer="relu5_3").widths, 64, 64)
    cost_file.write_text(json.dumps(CostModel(1.0, 0.0, 0.1 * dense_macs, "test file").to_dict()))
    args = [
        "prune",
        "--weights",
        "random:0",
        "--method",
        "structured",
        "--target-speedup",
        "2.5",
        "--size",
        "64",
        "--calibration-size",
        "32",
        "--measure-iterations",
        "1",
        "--measure-rounds",
        "1",
        "--json",
        str(report),
        "--cost-model",
        str(cost_file),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    data = json.loads(report.read_text())
    widths = data["budget"]["widths"]
    assert all(w % 8 == 0 for w in widths.values())
    dense = {name: w for name, w in load_vgg("random:0", last_layer="relu5_3").widths.items()}
    assert (iteration_macs(dense, 64, 64) + 0.1 * dense_macs) / (
        iteration_macs(widths, 64, 64) + 0.1 * dense_macs
    ) >= 2.5
    assert data["budget"]["cost_model"]["source"] == "test file"
    assert data["report"]["total_macs"] == iteration_macs(widths, 64, 64)
    assert data["measured"]["samples"] == 1 and "measured at 64x64 px" in out and "predicted speedup" in out
    # No --importance: filters ranked by activation on the bundled examples (the real-weight choice).
    assert "activation importance" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--target-speedup", "3"], "add --method structured"),
        (["--sparsity", "0.5", "--importance", "taylor"], "needs --method structured"),
        (["--sparsity", "0.5", "--method", "structured", "--scan", "x"], "needs --target-speedup"),
        (["--target-speedup", "3", "--method", "structured", "--scan", "/nonexistent"], "no such scan folder"),
        (["--target-speedup", "0.5", "--method", "structured", "--calibration-size", "32"], "must be > 1"),
        (["--target-speedup", "3", "--method", "structured", "--cost-model", "/nonexistent.json"], "no such file"),
        (["--sparsity", "0.5", "--method", "structured", "--curves", "gradient"], "needs --target-speedup"),
        (["--target-speedup", "3", "--method", "structured", "--scan", "x", "--curves", "gradient"], "choose one"),
    ],
)
def test_cli_refuses_options_that_need_each_other(args, message, capsys):
    assert main(["prune", "--weights", "random:0", *args]) == 2
    assert message in capsys.readouterr().err
