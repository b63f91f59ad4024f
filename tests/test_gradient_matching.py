"""The loss-network fine-tuning objective: image gradients of the style-transfer loss, student vs dense teacher.

Seeded random VGG-19 weights truncated at relu2_1 and 32 px images, so it runs in a second on two CPU cores.
"""

from __future__ import annotations

import torch

from nst_core.compress.finetune import image_gradient_error
from nst_core.compress.pruning import prune_structured
from nst_core.model.weights import load_vgg
from nst_core.nst.losses import LossPreset, LossWeights, compute_targets, loss_terms

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
