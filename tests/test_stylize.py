"""The optimisation loop with the real VGG-19 architecture and seeded random weights, at 64 px."""

import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from nst_core.core.errors import UserError
from nst_core.image.io import pil_to_tensor
from nst_core.model.weights import load_vgg
from nst_core.nst.losses import LossWeights, get_preset, loss_terms
from nst_core.nst.quality import Judge, ssim
from nst_core.nst.stylize import (
    StylizeConfig,
    prepare,
    prepare_inputs,
    scale_sizes,
    split_iterations,
    stylize,
    targets_at,
)


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def test_same_seed_same_image_and_other_seed_differs(random_model, content_image, style_image):
    config = StylizeConfig(size=64, iterations=4, init="noise", seed=7)
    a = stylize(prepare(random_model, content_image, [style_image], config))
    b = stylize(prepare(random_model, content_image, [style_image], config))
    c = stylize(
        prepare(random_model, content_image, [style_image], StylizeConfig(size=64, iterations=4, init="noise", seed=8))
    )
    assert np.array_equal(pixels(a.image), pixels(b.image))
    assert not np.array_equal(pixels(a.image), pixels(c.image))
    assert a.image.size == (64, 48)


@pytest.mark.slow
def test_style_loss_falls_over_20_iterations(random_model, content_image, style_image):
    result = stylize(prepare(random_model, content_image, [style_image], StylizeConfig(size=64, iterations=20)))
    styles = [h["style"] for h in result.history]
    assert len(result.history) == 20 and result.stopped == "done"
    assert styles[-1] < 0.7 * styles[0]
    assert set(result.timings) >= {"targets", "optimize", "total", "per_iteration"}


def test_lbfgs_reduces_the_total_loss(random_model, content_image, style_image):
    result = stylize(
        prepare(random_model, content_image, [style_image], StylizeConfig(size=64, iterations=6, optimizer="lbfgs"))
    )
    assert result.history[-1]["total"] < result.history[0]["total"]


def test_coarse_to_fine_ends_at_full_size():
    assert scale_sizes(64, 48, 3) == [(16, 12), (32, 24), (64, 48)]
    assert split_iterations(10, 3) == [3, 3, 4]


def test_multi_scale_runs_every_scale(content_image, style_image):
    model = load_vgg("random:0", last_layer="relu4_2")
    config = StylizeConfig(preset="seed", size=64, iterations=6, scales=2)
    with pytest.raises(UserError, match="needs relu5_3"):  # this network stops before the preset's deepest layer
        stylize(prepare(model, content_image, [style_image], config))
    model = load_vgg("random:0", last_layer="relu5_3")
    result = stylize(prepare(model, content_image, [style_image], config))
    assert [h["scale"] for h in result.history] == [0, 0, 0, 1, 1, 1]
    assert result.image.size == (64, 48)


def test_too_small_for_the_scales_is_a_clear_error(random_model, content_image, style_image):
    with pytest.raises(UserError, match="needs at least 16 px"):
        stylize(prepare(random_model, content_image, [style_image], StylizeConfig(size=64, iterations=3, scales=3)))


def test_several_styles_blend(random_model, content_image, style_image):
    other = style_image.transpose(0)
    preset = get_preset("seed")
    prepared = prepare_inputs(content_image, [style_image, other], 64, preserve_color=False)
    wh = prepared.content.size
    blended = targets_at(random_model, preset, prepared, wh, blend=[2, 1])
    first = targets_at(random_model, preset, replace(prepared, styles_seen=[style_image]), wh)
    second = targets_at(random_model, preset, replace(prepared, styles_seen=[other]), wh)
    for layer, gram in blended.grams.items():
        expected = (2 * first.grams[layer] + second.grams[layer]) / 3  # weights 2:1, normalised to sum 1
        assert torch.allclose(gram, expected, rtol=1e-5, atol=1e-6 * float(expected.abs().max())), layer
        assert not torch.allclose(first.grams[layer], second.grams[layer])  # the blend is not trivially equal

    # stylize optimises against exactly these targets: its first recorded style loss is theirs.
    result = stylize(
        prepare(
            random_model, content_image, [style_image, other], StylizeConfig(size=64, iterations=2, style_blend=[2, 1])
        )
    )
    assert len(result.history) == 2
    start = pil_to_tensor(prepared.content)
    own = loss_terms(random_model, preset, start, blended, LossWeights.from_preset(preset))
    assert result.history[0]["style"] == pytest.approx(float(own["style"]), rel=1e-4)
    with pytest.raises(UserError, match="1 style weights given for 2"):
        stylize(
            prepare(
                random_model, content_image, [style_image, other], StylizeConfig(size=64, iterations=2, style_blend=[1])
            )
        )


def test_preserve_color_keeps_the_content_chroma(random_model, content_image, style_image):
    previews = []
    config = StylizeConfig(size=64, iterations=5, preserve_color=True, preview_every=2)
    result = stylize(
        prepare(random_model, content_image, [style_image], config), callback=lambda p: previews.append(p.preview)
    )
    ref = np.asarray(content_image.resize(result.image.size).convert("YCbCr"), dtype=np.float64)

    def chroma_error(image):
        return np.abs(np.asarray(image.convert("YCbCr"), dtype=np.float64)[..., 1:] - ref[..., 1:]).mean()

    assert chroma_error(result.image) < 3.0  # chroma is the content's (rounding aside)
    # Previews show what the result will look like: in colour, not the grey luminance being optimised.
    shown = [p for p in previews if p is not None]
    assert len(shown) == 2 and all(chroma_error(p) < 3.0 for p in shown)
    grey = np.asarray(shown[0].convert("YCbCr"), dtype=np.float64)[..., 1:]
    assert np.abs(grey - 128).mean() > 5  # the test images are colourful, so a grey preview would fail


def test_cancel_stops_at_once(random_model, content_image, style_image):
    cancel = threading.Event()
    seen = []

    def on_progress(progress):
        seen.append(progress.iteration)
        if progress.iteration == 3:
            cancel.set()

    result = stylize(
        prepare(random_model, content_image, [style_image], StylizeConfig(size=64, iterations=50)),
        callback=on_progress,
        cancel=cancel,
    )
    assert result.stopped == "cancelled" and len(result.history) == 3 and seen == [1, 2, 3]


def test_previews_arrive_every_k_iterations(random_model, content_image, style_image):
    previews = []
    stylize(
        prepare(random_model, content_image, [style_image], StylizeConfig(size=64, iterations=4, preview_every=2)),
        callback=lambda p: previews.append((p.iteration, p.preview is not None, sorted(p.losses))),
    )
    assert [(i, has) for i, has, _ in previews] == [(1, False), (2, True), (3, False), (4, True)]
    assert previews[0][2] == ["content", "style", "total", "tv"]


@pytest.mark.slow
def test_tolerance_stops_early(random_model, content_image, style_image):
    result = stylize(
        prepare(random_model, content_image, [style_image], StylizeConfig(size=64, iterations=40, tolerance=10.0))
    )
    assert result.stopped == "converged" and len(result.history) == 11
    # Coarse to fine, a converged coarse scale hands on to the next instead of ending the run.
    two = stylize(
        prepare(
            random_model, content_image, [style_image], StylizeConfig(size=64, iterations=40, scales=2, tolerance=10.0)
        )
    )
    assert two.stopped == "converged" and [h["scale"] for h in two.history] == [0] * 11 + [1] * 11


def test_tv_weight_smooths_the_output(random_model, content_image, style_image):
    def tv(image):
        a = pixels(image).astype(np.float64)
        return np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean()

    base = StylizeConfig(size=64, iterations=8, init="noise", tv_weight=0.0)
    rough = stylize(prepare(random_model, content_image, [style_image], base)).image
    smooth = stylize(
        prepare(random_model, content_image, [style_image], StylizeConfig(**{**vars(base), "tv_weight": 1e6}))
    ).image
    assert tv(smooth) < tv(rough)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"optimizer": "sgd"}, "optimizer must be one of"),
        ({"size": 4}, "size must be between"),
        ({"iterations": 0}, "iterations must be between"),
        ({"lr": -1.0}, "learning rate must be positive"),
        ({"tv_weight": -1.0}, "tv weight must be non-negative"),
        ({"preset": "x"}, "unknown loss preset"),
    ],
)
def test_bad_settings_are_named(random_model, content_image, style_image, change, message):
    with pytest.raises(UserError, match=message):
        stylize(prepare(random_model, content_image, [style_image], StylizeConfig(**change)))


def test_judge_scores_dense_against_itself_as_one(random_model, content_image, style_image):
    dense = stylize(prepare(random_model, content_image, [style_image], StylizeConfig(size=64, iterations=3))).image
    judge = Judge(random_model, "seed", content_image, [style_image], size=64)
    assert judge.compare(dense, dense) == {
        "content_ratio": 1.0,
        "style_ratio": 1.0,
        "ssim": pytest.approx(1.0),
        "perceptual": pytest.approx(0.0, abs=1e-6),
    }
    # The content itself has zero content loss, so its ratio against the stylized image is below 1.
    assert judge.compare(content_image, dense)["content_ratio"] < 1.0


def test_ssim_bounds(content_image, style_image):
    assert ssim(content_image, content_image) == pytest.approx(1.0)
    assert ssim(content_image, style_image) < 0.5


@pytest.mark.slow
def test_channels_last_and_bf16_autocast_agree_with_fp32(random_model, content_image, style_image):
    """The fast paths compute the same thing.

    channels_last only reorders memory, so the first loss (the same start image through both layouts) agrees
    to float rounding. After that Adam amplifies rounding: it moves each pixel by about lr per step whatever
    the gradient's size, so a sign that a different summation order flips moves a pixel the other way; CI
    measured 0.16% apart after 8 steps, so later fp32 losses must agree within 1%. bf16 keeps 8 significant
    bits (relative rounding 2^-9, about 0.2%) in conv inputs and weights; through 13 convs that grows
    to about 1% in the deep features (measured: at most 1.2% over these 8 iterations), so the loss
    curves must agree within 3%. Gram matrices and losses stay fp32, so no term is ever non-finite.
    Pixels are not compared for bf16: Adam moves each pixel by about lr per step whatever the gradient's
    size, so a gradient sign that rounding flips moves a pixel the other way.
    """
    runs = {
        (precision, channels_last): stylize(
            prepare(
                random_model,
                content_image,
                [style_image],
                StylizeConfig(size=64, iterations=8, precision=precision, channels_last=channels_last),
            )
        )
        for precision in ("fp32", "bf16")
        for channels_last in (False, True)
    }
    reference = runs[("fp32", False)]
    for key, result in runs.items():
        assert all(np.isfinite(list(h.values())).all() for h in result.history), key
        first, later = (1e-4, 1e-2) if key[0] == "fp32" else (3e-2, 3e-2)
        for ours, theirs in zip(result.history, reference.history):
            tolerance = first if ours["iteration"] == result.history[0]["iteration"] else later
            assert ours["total"] == pytest.approx(theirs["total"], rel=tolerance), (key, ours["iteration"])
    same_layout = np.abs(pixels(runs[("fp32", True)].image) - pixels(reference.image))
    assert same_layout.mean() < 3.0  # of 255; measured up to 1.24 (the sign flips above)
    assert runs[("bf16", True)].history[-1]["total"] < runs[("bf16", True)].history[0]["total"]  # bf16 still optimises
    with pytest.raises(UserError, match="precision must be one of fp32, bf16"):
        StylizeConfig(precision="fp16").validate()
