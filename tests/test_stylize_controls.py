"""The controls of issue 13, each checked by its effect, on a shallow VGG-19 trunk (random weights) at 48-64 px.

A shallow trunk (up to relu3_1) with --content-layers/--style-layers keeps these runs fast; the
options act the same way on the full network (their code does not depend on the depth).
"""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from nst_core.core.errors import UserError
from nst_core.image.color import color_statistics, match_color
from nst_core.image.io import pil_to_tensor, resize_max_side
from nst_core.model.weights import load_vgg
from nst_core.nst.losses import LossWeights, compute_targets, loss_terms
from nst_core.nst.stylize import StylizeConfig, parse_layers, prepare, prepare_inputs, stylize, targets_at
from nst_core.nst.stylize.loop import _Average, _make_optimizer

SHALLOW = {"content_layers": "relu2_1", "style_layers": "relu1_1,relu2_1,relu3_1"}


@pytest.fixture(scope="module")
def shallow():
    return load_vgg("random:0", last_layer="relu3_1")


def config(**changes) -> StylizeConfig:
    return StylizeConfig(**{"size": 64, "iterations": 3, **SHALLOW, **changes})


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def save_mask(path, columns: np.ndarray, height: int = 48) -> str:
    """A greyscale mask whose columns have the given values (0..255), the same on every row."""
    Image.fromarray(np.tile(columns.astype(np.uint8), (height, 1)), mode="L").save(path)
    return str(path)


def test_mask_keeps_the_content_where_black_and_blends_soft_edges(shallow, content_image, style_image, tmp_path):
    # Left 24 columns black, 8 columns mid-grey, right 32 white; noise init, so every stylized pixel moves.
    columns = np.r_[np.zeros(24), np.full(8, 128), np.full(32, 255)]
    mask = save_mask(tmp_path / "mask.png", columns)
    result = stylize(prepare(shallow, content_image, [style_image], config(init="noise", mask=mask, iterations=2)))
    out, content = pixels(result.image), pixels(content_image)
    deviation = np.abs(out - content).mean(axis=(0, 2))
    assert deviation[:24].max() <= 0.5  # black: the content, exactly (up to rounding)
    white = deviation[32:].mean()
    assert white > 20  # white: stylized (the noise start is nothing like the content)
    # Mid-grey: half way (the composite content + 0.5 * (image - content)); the image itself varies, hence the band.
    assert 0.3 * white < deviation[24:32].mean() < 0.7 * white


def test_region_styles_follow_their_masks(shallow, content_image, tmp_path):
    red = Image.new("RGB", (64, 64), (230, 40, 40))
    blue = Image.new("RGB", (64, 64), (40, 40, 230))
    left = save_mask(tmp_path / "left.png", np.r_[np.full(32, 255), np.zeros(32)])
    right = save_mask(tmp_path / "right.png", np.r_[np.zeros(32), np.full(32, 255)])

    def redder_on_the_left(masks) -> float:
        out = pixels(
            stylize(prepare(shallow, content_image, [red, blue], config(style_masks=masks, iterations=6))).image
        )
        redness = out[..., 0] - out[..., 2]
        return float(redness[:, :32].mean() - redness[:, 32:].mean())

    assert redder_on_the_left([left, right]) > redder_on_the_left([right, left]) + 5
    with pytest.raises(UserError, match="1 style masks given for 2 style images"):
        stylize(prepare(shallow, content_image, [red, blue], config(style_masks=[left])))


def test_histogram_matching_gives_the_style_the_contents_colours(shallow, content_image, style_image):
    warm = Image.fromarray((pixels(style_image) * [1.0, 0.6, 0.3]).astype(np.uint8))
    matched = match_color(warm, content_image)
    mean_m, cov_m = color_statistics(matched)
    mean_c, cov_c = color_statistics(content_image)
    assert np.abs(mean_m - mean_c).max() < 1.5
    assert np.abs(cov_m - cov_c).max() < 0.05 * np.abs(cov_c).max()
    assert np.abs(color_statistics(warm)[0] - mean_c).max() > 20  # it had to move

    def colour_distance(color: str) -> float:
        out = stylize(prepare(shallow, content_image, [warm], config(color=color, iterations=6))).image
        mean, cov = color_statistics(out)
        return float(np.abs(mean - mean_c).sum() + np.abs(cov - cov_c).sum() / 100)

    # The output keeps the content's colour statistics far better than when the style's warm palette pulls it.
    assert colour_distance("histogram") < 0.5 * colour_distance("none")


def test_style_targets_are_computed_at_the_scaled_size(shallow, content_image, style_image):
    preset = config().loss_preset()
    wh = (64, 48)
    for changes, side in (({"style_scale": 0.5}, 32), ({"style_size": 40}, 40), ({}, 64)):
        c = config(**changes)
        prepared = prepare_inputs(
            content_image, [style_image], 64, False, style_scale=c.style_scale, style_size=c.style_size
        )
        targets = targets_at(shallow, preset, prepared, wh)
        by_hand = style_image.resize((side, side), Image.LANCZOS)
        expected = compute_targets(shallow, preset, pil_to_tensor(content_image), [pil_to_tensor(by_hand)])
        for layer, gram in targets.grams.items():
            assert torch.allclose(gram, expected.grams[layer], rtol=1e-5), (changes, layer)
    # At half the output size (a coarse scale) the style shrinks with it.
    prepared = prepare_inputs(content_image, [style_image], 64, False, style_scale=0.5)
    assert prepared.style_side(32) == 16 and resize_max_side(style_image, 64).size == (64, 64)


def test_init_from_an_image_starts_there(shallow, content_image, style_image, tmp_path):
    start = tmp_path / "start.png"
    style_image.resize((64, 48)).save(start)
    result = stylize(prepare(shallow, content_image, [style_image], config(init=str(start), iterations=1, lr=1e-4)))
    assert np.abs(pixels(result.image) - pixels(Image.open(start))).max() <= 1
    with pytest.raises(UserError, match="init must be one of content, palette, noise, style or an image file"):
        config(init=str(tmp_path / "missing.png")).validate()


def test_layer_lists_are_parsed_validated_and_used(shallow, content_image, style_image):
    assert parse_layers("relu3_1:0.5,relu4_1", "style layers") == {"relu3_1": 0.5, "relu4_1": 0.5}
    assert parse_layers("relu1_1,relu2_1", "style layers") == {"relu1_1": 0.5, "relu2_1": 0.5}
    assert parse_layers("relu4_2", "content layers", default_weight=1.0) == {"relu4_2": 1.0}
    for text, message in (
        ("relu9_1", "unknown VGG-19 layer 'relu9_1'"),
        ("relu1_1,relu1_1", "given twice"),
        ("relu1_1:x", "must be a number"),
        ("relu1_1:0", "all zero"),
        ("relu1_1,", "comma-separated"),
    ):
        with pytest.raises(UserError, match=message):
            parse_layers(text, "style layers")
    c = config(style_layers="relu1_1:2,relu3_1")
    preset = c.loss_preset()
    assert preset.style_layers == {"relu1_1": 2.0, "relu3_1": 0.5} and preset.content_layers == {"relu2_1": 1.0}
    result = stylize(prepare(shallow, content_image, [style_image], replace(c, iterations=1)))
    prepared = prepare_inputs(content_image, [style_image], 64, False)
    own = loss_terms(
        shallow,
        preset,
        pil_to_tensor(content_image),
        targets_at(shallow, preset, prepared, (64, 48)),
        LossWeights.from_preset(preset),
    )
    assert result.history[0]["style"] == pytest.approx(float(own["style"]), rel=1e-4)
    with pytest.raises(UserError, match="network stops at relu3_1 but preset 'seed' needs relu4_1"):
        stylize(prepare(shallow, content_image, [style_image], config(style_layers="relu4_1")))


def test_meancov_loss_is_optimised(shallow, content_image, style_image):
    result = stylize(prepare(shallow, content_image, [style_image], config(style_loss="meancov", iterations=6)))
    styles = [h["style"] for h in result.history]
    assert styles[-1] < 0.8 * styles[0]
    gram = stylize(prepare(shallow, content_image, [style_image], config(iterations=1)))
    assert result.history[0]["style"] != pytest.approx(gram.history[0]["style"], rel=0.1)  # another loss


def test_ema_result_is_the_average_of_the_iterates(shallow, content_image, style_image):
    decay = 0.6
    first = pixels(stylize(prepare(shallow, content_image, [style_image], config(iterations=1))).image)
    second = pixels(stylize(prepare(shallow, content_image, [style_image], config(iterations=2))).image)
    averaged = pixels(stylize(prepare(shallow, content_image, [style_image], config(iterations=2, ema=decay))).image)
    # Bias-corrected EMA of two iterates: (d x1 + x2) / (1 + d); the inputs were rounded to 8 bits.
    assert np.abs(averaged - (decay * first + second) / (1 + decay)).max() <= 1.01
    assert np.abs(averaged - second).mean() > 0.5
    average = _Average(torch.zeros(1), 0.5)
    for value in (2.0, 4.0):
        average.update(torch.tensor([value]))
    assert average.value().item() == pytest.approx((0.5 * 2 + 4) / 1.5)


def test_replicate_padding_changes_only_the_border(shallow):
    image = torch.rand(1, 3, 20, 20) * 255
    zeros = shallow(image, ["relu1_1"])["relu1_1"]
    replicate = shallow(image, ["relu1_1"], first_padding="replicate")["relu1_1"]
    assert torch.allclose(zeros[..., 1:-1, 1:-1], replicate[..., 1:-1, 1:-1], atol=1e-4)
    assert not torch.allclose(zeros[..., 0, :], replicate[..., 0, :], atol=1e-2)


def test_sqrt2_scales_and_adam_state_carried(shallow, content_image, style_image):
    c = config(scale_spacing="sqrt2", min_size=32)
    assert c.scale_sizes(64, 48) == [(32, 24), (45, 34), (64, 48)]
    assert config(scales=3).scale_sizes(64, 48) == [(16, 12), (32, 24), (64, 48)]
    assert config(scales=2, scale_spacing="sqrt2").scale_sizes(64, 48) == [(45, 34), (64, 48)]
    coarse = torch.rand(1, 3, 12, 16, requires_grad=True)
    adam = torch.optim.Adam([coarse], lr=1.0)
    coarse.grad = torch.ones_like(coarse)
    adam.step()
    fine = torch.rand(1, 3, 24, 32, requires_grad=True)
    carried = _make_optimizer(config(), fine, adam.state[coarse]).state[fine]
    assert carried["step"].item() == 1 and carried["exp_avg"].shape == fine.shape
    assert torch.allclose(carried["exp_avg"], torch.full_like(fine, 0.1))  # (1 - beta1) * grad, resized
    result = stylize(prepare(shallow, content_image, [style_image], replace(c, iterations=6)))
    assert [h["scale"] for h in result.history] == [0, 0, 1, 1, 2, 2] and result.image.size == (64, 48)


@pytest.mark.slow
def test_same_seed_same_image_with_every_control(shallow, content_image, style_image, tmp_path):
    mask = save_mask(tmp_path / "m.png", np.linspace(0, 255, 64))
    c = config(
        init="noise",
        seed=5,
        mask=mask,
        ema=0.8,
        scale_spacing="sqrt2",
        min_size=45,
        style_loss="meancov",
        padding="replicate",
        color="histogram",
        style_scale=0.75,
        iterations=4,
    )
    a, b = (pixels(stylize(prepare(shallow, content_image, [style_image], c)).image) for _ in range(2))
    assert np.array_equal(a, b)
    assert not np.array_equal(
        a, pixels(stylize(prepare(shallow, content_image, [style_image], replace(c, seed=6))).image)
    )


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"style_scale": 0.0}, "style scale must be between"),
        ({"style_size": 40, "style_scale": 2.0}, "style size and style scale"),
        ({"ema": 1.0}, "ema decay must be between 0 and 1"),
        ({"min_size": 32, "scales": 2}, "min size and scales"),
        ({"scale_spacing": "sqrt2"}, "scale spacing needs several scales"),
        ({"scale_spacing": "3"}, "scale spacing must be one of 2, sqrt2"),
        ({"preserve_color": True, "color": "histogram"}, "contradict"),
        ({"style_loss": "l2"}, "style loss must be one of gram, meancov"),
        ({"padding": "reflect"}, "padding must be one of zeros, replicate"),
        ({"mask": "nowhere.png"}, "mask nowhere.png: no such file"),
        ({"content_layers": "relu4_9"}, "content layers: unknown VGG-19 layer"),
        ({"min_size": 8}, "min size must be between 16"),
    ],
)
def test_bad_controls_are_named(changes, message):
    with pytest.raises(UserError, match=message):
        config(**changes).validate()


def test_style_too_small_for_the_network_is_named(shallow, content_image, style_image):
    with pytest.raises(UserError, match="style images too small"):
        stylize(
            prepare(shallow, content_image, [style_image], config(style_scale=0.1, scales=2))
        )  # 3 px at 32 px; relu3_1 needs 4


def test_lr_decay_shrinks_the_last_steps(shallow, content_image, style_image):
    """Adam's steps are about the learning rate in size, so with the rate decayed to 1% the last step
    moves the image far less than the last step of a constant rate (previews after every iteration)."""

    def last_step(**changes) -> float:
        shown = []
        c = config(iterations=12, preview_every=1, **changes)
        stylize(prepare(shallow, content_image, [style_image], c), callback=lambda p: shown.append(pixels(p.preview)))
        return float(np.abs(shown[-1] - shown[-2]).mean())

    assert last_step(lr_decay=0.01) < 0.2 * last_step()
    with pytest.raises(UserError, match="lr decay"):
        config(lr_decay=1.5).validate()


def test_a_pyramid_moves_whole_regions_and_still_lowers_the_loss(shallow, content_image, style_image):
    """One Adam step on the pixels changes each pixel by about the learning rate, independently (fine
    detail); on a 4-level pyramid the coarse levels move blocks, so the change keeps more of its size after
    8x8 averaging. The image is the composite of the levels, and the run minimises the same objective."""

    def first_step(levels: int) -> torch.Tensor:
        image = pil_to_tensor(content_image).requires_grad_(True)
        start = image.detach().clone()
        optimizer = _make_optimizer(config(pyramid_levels=levels), image, None)
        gradient = torch.randn_like(image)  # any gradient: the step's shape is what differs

        def closure() -> float:
            image.grad = gradient.clone()
            return 0.0

        optimizer.step(closure)
        return image.detach() - start

    def coarse_share(change: torch.Tensor) -> float:
        return float(torch.nn.functional.avg_pool2d(change, 8).abs().mean() / change.abs().mean())

    assert coarse_share(first_step(4)) > 3 * coarse_share(first_step(1))
    pyramid = _make_optimizer(config(pyramid_levels=3), torch.rand(1, 3, 20, 28) * 255, None)
    assert torch.allclose(pyramid.compose(), pyramid.image)  # the finest level starts as the image
    result = stylize(prepare(shallow, content_image, [style_image], config(iterations=20, pyramid_levels=4)))
    assert result.history[-1]["total"] < 0.6 * result.history[0]["total"]  # pixels: 0.55 in the same 20 steps
    assert np.isfinite(pixels(result.image)).all()
    with pytest.raises(UserError, match="pyramid"):
        config(pyramid_levels=3, optimizer="lbfgs").validate()


def test_the_palette_start_is_the_content_in_the_styles_colours(content_image, style_image):
    """--init palette: the content's layout (its luminance pattern) in the style's RGB mean and covariance;
    two styles give the colours of their pooled pixels."""
    from nst_core.image.color import blended_statistics
    from nst_core.nst.stylize.inputs import initial_image, load_run_inputs

    def start(styles, **changes) -> torch.Tensor:
        inputs = load_run_inputs(content_image, styles, config(init="palette", **changes))
        return initial_image(inputs, (64, 48), torch.Generator().manual_seed(0))[0]

    def stats(image: torch.Tensor):
        return color_statistics(Image.fromarray(image.permute(1, 2, 0).round().clamp(0, 255).byte().numpy()))

    def luma(image: torch.Tensor) -> np.ndarray:
        return (image * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0).flatten().numpy()

    image = start([style_image])
    mean, cov = stats(image)
    style_mean, style_cov = color_statistics(resize_max_side(style_image, 64))
    assert np.abs(mean - style_mean).max() < 4 and np.abs(cov - style_cov).max() < 0.1 * np.abs(style_cov).max()
    content = pil_to_tensor(content_image)[0]
    assert abs(np.corrcoef(luma(image), luma(content))[0, 1]) > 0.8  # still the content's picture
    other = Image.new("RGB", (64, 48), (110, 160, 90))  # colours the recolouring need not clip
    two_mean, _ = stats(start([style_image, other], style_blend=[1.0, 3.0]))
    expected, _ = blended_statistics([resize_max_side(style_image, 64), other], [1.0, 3.0])
    assert np.abs(two_mean - expected).max() < 4
