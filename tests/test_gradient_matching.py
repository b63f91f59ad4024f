"""The loss-network fine-tuning objective: image gradients of the style-transfer loss, student vs dense teacher,
and training with it (``FinetuneConfig(objective="gradient")``).

Seeded random VGG-19 weights (mechanics only: the real-weight effect is in bench/bench_finetune_objective.py)
and 32 px images, so each test runs in seconds on two CPU cores.
"""

from __future__ import annotations

import json

import pytest
import torch

from nst_core.cli import main
from nst_core.compress.calibration import CropSampler, load_folder
from nst_core.compress.finetune import FinetuneConfig, gradient_matching_loss, image_gradient_error, train
from nst_core.compress.pruning import prune_structured
from nst_core.core.errors import UserError
from nst_core.model.vgg import load_checkpoint
from nst_core.model.weights import load_vgg
from nst_core.nst.losses import LossPreset, LossWeights, compute_targets, get_preset, loss_terms

from support.pictures import write_images

PRESET = LossPreset(
    name="shallow",
    content_layers={"relu2_1": 1.0},
    style_layers={"relu1_1": 0.5, "relu2_1": 0.5},
    content_weight=5.0,
    style_weight=1e2,
    tv_weight=0.0,
    content_norm="mse",
    style_norm="mse_c2",
)
WEIGHTS = LossWeights.from_preset(PRESET)


def _images():
    generator = torch.Generator().manual_seed(0)
    content = torch.rand((1, 3, 32, 32), generator=generator) * 255
    style = torch.rand((1, 3, 32, 32), generator=generator) * 255
    image = (0.7 * content + 0.3 * style).requires_grad_(True)
    return content, style, image


def _teacher_grad(teacher, content, style, image):
    targets = compute_targets(teacher, PRESET, content, [style])
    (grad,) = torch.autograd.grad(loss_terms(teacher, PRESET, image, targets, WEIGHTS)["total"], image)
    return grad


def test_the_teacher_matches_itself_exactly():
    teacher = load_vgg("random:0", last_layer="relu2_1")
    content, style, image = _images()
    grad = _teacher_grad(teacher, content, style, image)
    targets = compute_targets(teacher, PRESET, content, [style])
    assert float(image_gradient_error(teacher, grad, image, targets, PRESET, WEIGHTS)) < 1e-10


def test_the_error_reaches_the_students_weights_and_a_step_down_its_gradient_lowers_it():
    teacher = load_vgg("random:0", last_layer="relu2_1")
    student = prune_structured(teacher, 0.5)
    content, style, image = _images()
    grad = _teacher_grad(teacher, content, style, image)
    targets = compute_targets(student, PRESET, content, [style])  # held fixed, as in the objective
    params = list(student.parameters())
    for p in params:
        p.requires_grad_(True)
    error = image_gradient_error(student, grad, image, targets, PRESET, WEIGHTS)
    weight_grads = torch.autograd.grad(error, params)  # through the image gradient (double backward)
    assert float(error) > 0.05
    assert all(float(g.abs().sum()) > 0 for g in weight_grads)
    norm = torch.sqrt(sum(g.pow(2).sum() for g in weight_grads))
    with torch.no_grad():
        for p, g in zip(params, weight_grads):
            p -= 1e-4 * g / norm
    after = image_gradient_error(student, grad, image, targets, PRESET, WEIGHTS)
    assert float(after) < float(error)
    assert image.grad is None  # the image is only read


# ------------------------------------------------------------------- FinetuneConfig(objective="gradient")
# The whole seed preset (content relu4_2, style relu1_1..relu5_1) on a seeded random VGG-19 and 32 px crops:
# the objective needs every layer the loss reads, and at 32 px the network is still cheap.


@pytest.fixture(scope="module")
def full_teacher():
    return load_vgg("random:0", last_layer=get_preset("seed").last_layer)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crops")
    write_images(folder, 4)
    return load_folder(folder, max_side=48)


def _gradient_config(**overrides) -> FinetuneConfig:
    base = dict(objective="gradient", steps=8, batch_size=2, crop_size=32, lr=1e-3, checkpoint_every=3, seed=1)
    base.update(overrides)
    return FinetuneConfig(**base)


def _held_batch(images) -> torch.Tensor:
    """Crops the training run never draws (another seed's sampler), as a fixed yardstick."""
    return CropSampler(images, 32, 4, seed=99, scale_range=(0.5, 1.0), flip=False).batch(0)


def test_gradient_objective_training_lowers_the_gradient_error_on_unseen_crops(full_teacher, crops):
    student = prune_structured(full_teacher, 0.5)
    preset = get_preset("seed")
    weights = LossWeights.from_preset(preset)
    held = _held_batch(crops)
    before = float(gradient_matching_loss(full_teacher, student, held, preset, weights, seed=7)["total"])
    run = train(full_teacher, student, crops, _gradient_config(steps=12), progress=False)
    after = float(gradient_matching_loss(full_teacher, student, held, preset, weights, seed=7)["total"])
    assert set(run.history[-1]) == {"step", "lr", "gradient", "total"}
    assert after < 0.8 * before, (before, after)


def test_gradient_objective_resumes_to_identical_weights(full_teacher, crops, tmp_path):
    config = _gradient_config(steps=5, checkpoint_every=2)
    straight = prune_structured(full_teacher, 0.5)
    train(full_teacher, straight, crops, config, progress=False)
    state = tmp_path / "state.pt"
    first = prune_structured(full_teacher, 0.5)
    assert not train(full_teacher, first, crops, config, state_path=state, stop_after=3, progress=False).finished
    resumed = prune_structured(full_teacher, 0.5)
    assert train(full_teacher, resumed, crops, config, state_path=state, progress=False).resumed_from == 3
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    # A distillation run is a different run: its state is not resumed by it.
    with pytest.raises(UserError, match="different fine-tuning run"):
        train(
            full_teacher,
            prune_structured(full_teacher, 0.5),
            crops,
            _gradient_config(objective="distill", steps=5, checkpoint_every=2),
            state_path=state,
            progress=False,
        )


def test_gradient_objective_refuses_a_layer_list_and_unknown_objectives():
    with pytest.raises(UserError, match="takes no list of layers"):
        _gradient_config(layers=["relu1_1"]).validate()
    with pytest.raises(UserError, match="objective must be one of distill, gradient"):
        _gradient_config(objective="lpips").validate()


def test_nst_finetune_objective_gradient_trains_and_records_it(tmp_path, capsys):
    """The command line: the objective reaches training, the history and the checkpoint's provenance."""
    folder = tmp_path / "images"
    write_images(folder, 4)
    profile = tmp_path / "profile.json"
    profile.write_text('{"format": "nst-profile/1", "method": "structured", "sparsity": {"conv1_2": 0.5}}')
    out, log = tmp_path / "g.safetensors", tmp_path / "g.json"
    args = [
        "finetune", "--profile", str(profile), "--weights", "random:0", "--images", str(folder), "--steps", "2",
        "--batch-size", "2", "--crop-size", "32", "--eval-size", "32", "--judge-size", "32",
        "--judge-iterations", "2", "--dtype", "fp32", "--objective", "gradient", "--log-json", str(log), "-o", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    history = json.loads(log.read_text())["history"]
    assert [sorted(h) for h in history] == [["gradient", "lr", "step", "total"]] * 2
    method = load_checkpoint(out).provenance["finetune"]["method"]
    assert method.startswith("image-gradient matching")
    assert main([*args[:-2], "--layers", "relu1_1", "-o", str(out)]) == 2
    assert "takes no list of layers" in capsys.readouterr().err
