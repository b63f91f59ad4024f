"""Loss values against hand-computed numbers, gradients, and the presets' exact settings."""

import pytest
import torch

from nst_core.core.errors import UserError
from nst_core.nst.losses import (
    PRESETS,
    LossWeights,
    StyleTarget,
    compute_targets,
    content_loss,
    get_preset,
    gram_matrix,
    guide_at,
    layer_moments,
    loss_terms,
    normalise_blend,
    style_layer_loss,
    style_loss_of,
    tv_loss,
)
from nst_core.nst.losses.statistics import _Gram


def test_gram_matrix_by_hand():
    # One image, two channels, 1x2 pixels: rows [1, 2] and [3, 4]; G = F F^T / (h*w).
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    assert torch.allclose(gram_matrix(f), torch.tensor([[[2.5, 5.5], [5.5, 12.5]]]))


def test_content_loss_by_hand():
    f = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3)
    zero = torch.zeros_like(f)
    assert content_loss(f, zero, "mse").item() == pytest.approx(14 / 3)
    assert content_loss(f, zero, "half_sum").item() == pytest.approx(7.0)


def test_style_layer_loss_by_hand():
    # One channel: G = 14/3; target 2/3 -> difference 4.
    f = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3)
    g = gram_matrix(f)
    target = torch.full_like(g, 2 / 3)
    assert style_layer_loss(g, target, "mse_c2").item() == pytest.approx(16.0)
    assert style_layer_loss(g, target, "paper").item() == pytest.approx(4.0)


def test_paper_style_loss_equals_unnormalised_formula():
    torch.manual_seed(0)
    f, a = torch.randn(1, 5, 4, 6), torch.randn(1, 5, 4, 6)
    n, m = 5, 4 * 6
    g_raw = f.view(5, m) @ f.view(5, m).T
    a_raw = a.view(5, m) @ a.view(5, m).T
    paper = ((g_raw - a_raw) ** 2).sum() / (4 * n**2 * m**2)
    ours = style_layer_loss(gram_matrix(f), gram_matrix(a), "paper")
    assert ours.item() == pytest.approx(paper.item(), rel=1e-5)


def test_tv_loss_by_hand():
    image = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    assert tv_loss(image, "l1").item() == pytest.approx(1.5 + 2.5)
    assert tv_loss(image, "squared").item() == pytest.approx(2.5 + 6.5)
    with pytest.raises(ValueError):
        tv_loss(image, "l3")


def test_tv_loss_has_a_gradient_through_loss_terms(random_model):
    preset = get_preset("seed")
    torch.manual_seed(0)
    content, style = torch.rand(1, 3, 32, 32) * 255, torch.rand(1, 3, 32, 32) * 255
    targets = compute_targets(random_model, preset, content, [style])
    image = (torch.rand(1, 3, 32, 32) * 255).requires_grad_(True)
    # Only the TV term is weighted: the image gradient must come from it alone, and be nonzero.
    terms = loss_terms(random_model, preset, image, targets, LossWeights(0.0, 0.0, 1.0))
    terms["total"].backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert terms["total"].item() == pytest.approx(terms["tv"].item())


def test_seed_preset_numbers():
    seed = PRESETS["seed"]
    assert seed.content_layers == {"relu4_2": 1.0}
    assert seed.style_layers == {n: 0.2 for n in ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")}
    assert (seed.content_weight, seed.style_weight, seed.tv_weight) == (5.0, 100.0, 0.001)
    assert (seed.content_norm, seed.style_norm) == ("mse", "mse_c2")
    assert seed.last_layer == "relu5_3"


def test_gatys2016_preset_numbers():
    paper = PRESETS["gatys2016"]
    assert paper.content_layers == {"relu4_2": 1.0}
    assert paper.style_layers == {n: 0.2 for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")}
    assert paper.content_weight / paper.style_weight == pytest.approx(1e-3)
    assert (paper.content_norm, paper.style_norm, paper.tv_weight) == ("half_sum", "paper", 0.0)
    assert paper.layers == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
    assert paper.last_layer == "relu5_1"


def test_unknown_preset_is_a_user_error():
    with pytest.raises(UserError, match="unknown loss preset 'nope'"):
        get_preset("nope")


def test_targets_are_computed_without_autograd(random_model):
    preset = get_preset("seed")
    content, style = torch.rand(1, 3, 32, 32) * 255, torch.rand(1, 3, 32, 32) * 255
    targets = compute_targets(random_model, preset, content, [style])
    assert all(not t.requires_grad for t in [*targets.content.values(), *targets.grams.values()])


def test_style_blend_mixes_grams_by_weight(random_model):
    preset = get_preset("seed")
    content = torch.rand(1, 3, 32, 32) * 255
    a, b = torch.rand(1, 3, 32, 32) * 255, torch.rand(1, 3, 32, 32) * 255
    ta = compute_targets(random_model, preset, content, [a])
    tb = compute_targets(random_model, preset, content, [b])
    mixed = compute_targets(random_model, preset, content, [a, b], blend=[3, 1])
    for name in preset.style_layers:
        assert torch.allclose(mixed.grams[name], 0.75 * ta.grams[name] + 0.25 * tb.grams[name], rtol=1e-5)


def test_blend_validation():
    assert normalise_blend(None, 2) == [0.5, 0.5]
    with pytest.raises(UserError, match="2 style weights given for 3"):
        normalise_blend([1, 1], 3)
    with pytest.raises(UserError, match="non-negative"):
        normalise_blend([1, -1], 2)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_gram_backward_matches_autograd_in_both_layouts(layout):
    """The one-product Gram backward gives autograd's gradient, for NCHW and channels_last features."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 5, 4, 3, generator=generator, dtype=torch.float64).contiguous(memory_format=layout)
    features.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: _Gram.apply(f), (features,))
    weights = torch.randn(2, 5, 5, generator=generator, dtype=torch.float64)  # not symmetric on purpose
    (gram_matrix(features.float()) * weights.float()).sum().backward()
    ours = features.grad.clone()
    features.grad = None
    flat = features.reshape(2, 5, 12)
    ((flat @ flat.transpose(1, 2) / 12) * weights).sum().backward()
    assert torch.allclose(ours.double(), features.grad, atol=1e-5)


def test_gram_stays_fp32_and_finite_under_autocast():
    """Half-precision Gram sums overflow (fp16) or lose digits; the Gram is computed in fp32 regardless."""
    big = torch.full((1, 8, 64, 64), 300.0, dtype=torch.bfloat16)  # sum of 4096 products of 9e4: 3.7e8
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gram = gram_matrix(big)
    assert gram.dtype == torch.float32 and torch.isfinite(gram).all()
    assert torch.allclose(gram, torch.full((1, 8, 8), 300.0**2))


def test_moments_of_tiles_add_up_to_the_whole():
    """Statistics are sums over pixels: the moments of two halves, with one common scale, are the whole's."""
    generator = torch.Generator().manual_seed(1)
    features = torch.rand(1, 6, 8, 10, generator=generator)
    guide = torch.rand(1, 1, 8, 10, generator=generator)
    for g in (None, guide):
        whole = layer_moments(features, g)
        scale = 1 / 80
        left = layer_moments(features[..., :4], None if g is None else g[..., :4], scale)
        right = layer_moments(features[..., 4:], None if g is None else g[..., 4:], scale)
        total = left + right
        for a, b in ((total.count, whole.count), (total.first, whole.first), (total.second, whole.second)):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
        assert torch.allclose(total.gram(), whole.gram(), rtol=1e-5)
    assert torch.equal(layer_moments(features).gram(), gram_matrix(features))  # the unguided Gram, bit for bit


def test_guided_moments_weight_pixels_by_hand():
    # Two pixels, one channel, values 1 and 3; guide 1 and 0: only the first pixel counts.
    f = torch.tensor([1.0, 3.0]).view(1, 1, 1, 2)
    m = layer_moments(f, torch.tensor([1.0, 0.0]).view(1, 1, 1, 2))
    assert m.gram().item() == pytest.approx(1.0) and m.mean().item() == pytest.approx(1.0)
    m = layer_moments(f, torch.tensor([0.5, 0.5]).view(1, 1, 1, 2))
    assert m.mean().item() == pytest.approx(2.0) and m.covariance().item() == pytest.approx(1.0)


def test_guided_gram_backward_matches_autograd():
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(1, 4, 3, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    guide = torch.rand(1, 1, 3, 5, generator=generator, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: _Gram.apply(f, guide, 0.3), (features,))


def test_guide_follows_the_pooling():
    guide = torch.zeros(1, 1, 16, 16)
    guide[..., :, :8] = 1.0
    assert guide_at(guide, "relu1_1").shape[-1] == 16
    deep = guide_at(guide, "relu3_1")  # two poolings: 4x4, left half covered
    assert deep.shape[-2:] == (4, 4) and torch.equal(deep[0, 0, 0], torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_wasserstein_loss_is_zero_on_its_target_and_positive_elsewhere():
    generator = torch.Generator().manual_seed(3)
    a = torch.rand(1, 5, 12, 12, generator=generator)
    b = torch.rand(1, 5, 12, 12, generator=generator) * 2 + 1
    target = StyleTarget(layer_moments(a).normalised())
    assert style_loss_of(layer_moments(a), target, "mse_c2", "meancov").item() == pytest.approx(0.0, abs=1e-4)
    # Two Gaussians that differ only in their means: W2^2 = |m1 - m2|^2, per channel.
    shifted = layer_moments(a + 1.0)
    assert style_loss_of(shifted, target, "mse_c2", "meancov").item() == pytest.approx(1.0, rel=1e-3)
    moved = layer_moments(b.requires_grad_(True))
    loss = style_loss_of(moved, target, "mse_c2", "meancov")
    loss.backward()
    assert loss.item() > 0.1 and torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0
