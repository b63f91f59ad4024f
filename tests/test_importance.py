"""nst_core.compress.importance: each criterion checked against its definition, computed another way."""

from __future__ import annotations

import copy

import pytest
import torch

from nst_core.compress.calibration import CalibrationImage
from nst_core.compress.importance import CRITERIA, IMPORTANCE, calibration_pairs, criteria_help, filter_importance
from nst_core.compress.pruning import filter_l1_norms, prune_structured, prune_to_widths
from nst_core.core.errors import UserError
from nst_core.model.weights import load_vgg
from nst_core.nst.losses import LossWeights, compute_targets, get_preset, loss_terms


def _image(name: str, seed: int, size: int = 32) -> CalibrationImage:
    generator = torch.Generator().manual_seed(seed)
    return CalibrationImage(name, torch.rand((3, size, size), generator=generator) * 255)


@pytest.fixture(scope="module")
def model():
    return load_vgg("random:0", last_layer="relu5_3")


def test_calibration_pairs_from_content_and_style_folders_or_neighbours():
    folder = [
        _image("content/a.png", 0),
        _image("content/b.png", 1),
        _image("style/x.png", 2),
        _image("style/y.png", 3),
    ]
    pairs = calibration_pairs(folder)
    assert [(c.name, s.name) for c, s in pairs] == [
        ("content/a.png", "style/x.png"),
        ("content/a.png", "style/y.png"),
        ("content/b.png", "style/x.png"),
        ("content/b.png", "style/y.png"),
    ]
    assert len(calibration_pairs(folder, max_pairs=3)) == 3
    flat = [_image("p.png", 0), _image("q.png", 1), _image("r.png", 2)]
    assert [(c.name, s.name) for c, s in calibration_pairs(flat)] == [
        ("p.png", "q.png"),
        ("q.png", "r.png"),
        ("r.png", "p.png"),
    ]
    with pytest.raises(UserError, match="at least 2 calibration images"):
        calibration_pairs(flat[:1])


def test_l1_scores_are_the_filter_norms_and_decide_structured_pruning(model):
    scores = filter_importance(model, "l1")
    assert torch.equal(scores["conv3_1"], filter_l1_norms(model.conv("conv3_1")).cpu())
    assert torch.equal(
        prune_structured(model, 0.5, scores).kept_channels["conv3_1"],
        prune_structured(model, 0.5).kept_channels["conv3_1"],
    )


def test_scores_choose_the_kept_filters(model):
    """The highest-scored filters stay: with scores rising with the index, the last ones."""
    scores = {name: torch.arange(width, dtype=torch.float32) for name, width in model.widths.items()}
    small = prune_to_widths(model, {"conv2_1": 40, "conv3_1": 8}, scores)
    assert small.kept_channels["conv2_1"].tolist() == list(range(88, 128))
    assert small.kept_channels["conv3_1"].tolist() == list(range(248, 256))
    assert torch.equal(small.conv("conv2_2").weight, model.conv("conv2_2").weight[:, 88:])  # its inputs went too
    assert torch.equal(small.conv("conv3_1").weight, model.conv("conv3_1").weight[248:])
    with pytest.raises(UserError, match="width of conv2_1"):
        prune_to_widths(model, {"conv2_1": 129})


def test_activation_scores_are_mean_relu_outputs(model):
    images = [_image("a.png", 0), _image("b.png", 1)]
    scores = filter_importance(model, "activation", images)
    with torch.no_grad():
        expected = sum(model(im.pixels.unsqueeze(0), ["relu2_2"])["relu2_2"].mean(dim=(0, 2, 3)) for im in images) / 2
    assert torch.allclose(scores["conv2_2"], expected, rtol=1e-5, atol=1e-6)


def test_taylor_score_is_the_loss_change_of_scaling_a_filter(model):
    """|dL/dgate_c| equals the derivative of the loss with respect to scaling filter c (weights and
    bias) of a conv: compared here with a central finite difference on a copy of the network."""
    preset = get_preset("seed")
    content, style = _image("content/c.png", 5), _image("style/s.png", 6)
    scores = filter_importance(model, "taylor", [content, style], preset)
    c, s = content.pixels.unsqueeze(0), style.pixels.unsqueeze(0)
    # The same targets in float64, so the finite difference below is not drowned by float32 rounding.
    targets_double = compute_targets(copy.deepcopy(model).double(), preset, c.double(), [s.double()])
    weights = LossWeights.from_preset(preset)
    image = (c + s) / 2  # the evaluation point the criterion documents

    def loss(net) -> float:
        terms = loss_terms(net, preset, image.double(), targets_double, weights)
        return float(weights.content * terms["content"] + weights.style * terms["style"])

    for layer in ("conv2_1", "conv4_2"):
        top = int(scores[layer].argmax())
        eps = 1e-4
        values = []
        for sign in (1, -1):
            net = copy.deepcopy(model).double()
            with torch.no_grad():
                net.conv(layer).weight[top] *= 1 + sign * eps
                net.conv(layer).bias[top] *= 1 + sign * eps
            values.append(loss(net))
        finite_difference = abs(values[0] - values[1]) / (2 * eps)
        assert scores[layer][top].item() == pytest.approx(finite_difference, rel=1e-3)
        assert scores[layer][top] > 0


def test_criteria_rank_filters_differently_and_bad_requests_are_refused(model):
    images = [_image("content/a.png", 0), _image("style/b.png", 1)]
    kept = {
        c: prune_structured(model, {"conv3_1": 0.5}, filter_importance(model, c, images)).kept_channels["conv3_1"]
        for c in ("l1", "activation", "taylor")
    }
    assert not torch.equal(kept["l1"], kept["activation"]) and not torch.equal(kept["activation"], kept["taylor"])
    with pytest.raises(UserError, match="unknown importance criterion"):
        filter_importance(model, "random")
    with pytest.raises(UserError, match="needs calibration images"):
        filter_importance(model, "taylor", [])
    with pytest.raises(UserError, match="stops at relu2_1"):
        filter_importance(load_vgg("random:0", last_layer="relu2_1"), "taylor", images)


def test_one_table_names_every_criterion_for_scoring_and_help():
    assert CRITERIA == tuple(IMPORTANCE) == ("l1", "activation", "taylor")
    assert all(name == c.name and c.help for name, c in IMPORTANCE.items())
    text = criteria_help("rank filters by", "--images")
    assert all(f"{c.name} ({c.help})" in text for c in IMPORTANCE.values()) and text.endswith("--images")
    assert [name for name, c in IMPORTANCE.items() if not c.needs_images] == ["l1"]
