"""The distillation loss: the student's activations and Gram matrices against the teacher's, each
normalised by the teacher's energy at that layer (a relative squared error, 0 = identical).

A structured student kept only some output channels of each conv; it is matched against the
teacher's activations at exactly those channels (``student.kept_channels``).

:func:`image_gradient_error` is the other objective a loss network can be fine-tuned for: the
student's image gradient of the style-transfer loss against the dense teacher's;
:func:`gradient_matching_loss` applies it to a training batch (``FinetuneConfig(objective="gradient")``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nst_core.model.layers import conv_feeding
from nst_core.model.vgg import VGGFeatures
from nst_core.nst.losses import (
    LossPreset,
    LossWeights,
    Targets,
    compute_targets,
    gram_matrix,
    image_gradient,
)
from nst_core.nst.network import FeatureNetwork

_EPS = 1e-12


@dataclass(frozen=True)
class DistillWeights:
    """How much the feature term and the Gram term count in the distillation loss."""

    feature: float = 1.0
    gram: float = 1.0


_EQUAL = DistillWeights()


def teacher_at_kept_channels(teacher_acts: dict[str, torch.Tensor], student: VGGFeatures) -> dict[str, torch.Tensor]:
    """Teacher activations restricted to the channels the (structured) student kept at each layer."""
    out = {}
    for layer, act in teacher_acts.items():
        kept = student.kept_channels.get(conv_feeding(layer, student.arch))
        out[layer] = act.index_select(1, kept.to(act.device)) if kept is not None else act
    return out


def relative_error(student: torch.Tensor, teacher: torch.Tensor, energy: torch.Tensor | None = None) -> torch.Tensor:
    """|s - t|^2 / |t|^2 (means), a scale-free distortion: 0 when equal, 1 when s = 0.

    ``energy`` replaces the teacher's mean square |t|^2 (distributed training passes the mean over all ranks).
    """
    energy = teacher.pow(2).mean() if energy is None else energy
    return F.mse_loss(student, teacher) / energy.clamp_min(_EPS)


def distillation_terms(
    student_acts: dict[str, torch.Tensor],
    teacher_acts: dict[str, torch.Tensor],
    weights: DistillWeights = _EQUAL,
    mean_over_ranks: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Feature and Gram terms (each a mean over layers) and their weighted total.

    ``teacher_acts`` must already be restricted to the student's kept channels.
    ``mean_over_ranks`` (distributed training) turns this rank's teacher energies into the
    whole batch's, so every rank divides by the same numbers the single-process run would.
    """
    pairs = []
    for layer, t in teacher_acts.items():
        s = student_acts[layer]
        if s.shape != t.shape:
            raise ValueError(
                f"layer {layer}: student activation {list(s.shape)} does not match teacher {list(t.shape)}"
            )
        pairs.append((s, t))
        pairs.append((gram_matrix(s), gram_matrix(t)))
    energies = torch.stack([t.detach().pow(2).mean() for _, t in pairs])
    if mean_over_ranks is not None:
        energies = mean_over_ranks(energies)  # one collective per step for every layer
    errors = [relative_error(s, t, energy) for (s, t), energy in zip(pairs, energies)]
    feature = torch.stack(errors[0::2]).mean()
    gram = torch.stack(errors[1::2]).mean()
    return {"feature": feature, "gram": gram, "total": weights.feature * feature + weights.gram * gram}


def image_gradient_error(
    student: FeatureNetwork,
    teacher_grad: torch.Tensor,
    image: torch.Tensor,
    targets: Targets,
    preset: LossPreset,
    weights: LossWeights,
) -> torch.Tensor:
    """|g_s - g_t|^2 / |g_t|^2 for the image gradients of the style-transfer loss: what a *loss network* must get right.

    A pruned network is only ever used to give the optimised image its gradient, so this is the
    distortion that decides its output: ``g_s`` is d(total loss)/d(image) of ``student`` under
    ``preset`` and ``weights`` with the student's own ``targets`` (held fixed: computed from the
    content and style images without autograd, as stylize does), ``teacher_grad`` the dense
    network's gradient of its own loss at the same ``image``. The result is differentiable in the
    student's weights (the image gradient is built with ``create_graph``), so backpropagating it
    trains the student; it is 0 when the gradients agree and 1 when the student's gradient is 0.
    Images worth matching at are those an optimisation visits: noisy content, content/style mixes,
    partially stylized images.
    """
    grad = image_gradient(student, preset, image, targets, weights, create_graph=True)
    return (grad - teacher_grad).pow(2).sum() / teacher_grad.pow(2).sum().clamp_min(_EPS)


#: Where on the way from a content crop to a style crop the image gradients are matched: (content share,
#: noise std in 0..255 pixel units). Noisy content is an optimisation's start, the mixes where it goes.
GRADIENT_POINTS = ((1.0, 25.0), (0.8, 10.0), (0.5, 0.0))


def gradient_matching_images(batch: torch.Tensor, seed: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(content, style, image) per crop of ``batch`` (B, 3, H, W): crop i is the content, crop i+1 the style.

    The image is a content/style mix with noise (one of :data:`GRADIENT_POINTS`), drawn from ``seed``
    alone, so a resumed run sees the same images.
    """
    generator = torch.Generator().manual_seed(seed)
    count, points = batch.shape[0], []
    for i in range(count):
        content, style = batch[i : i + 1], batch[(i + 1) % count : (i + 1) % count + 1]
        share, noise = GRADIENT_POINTS[int(torch.randint(len(GRADIENT_POINTS), (1,), generator=generator))]
        jitter = torch.randn(content.shape, generator=generator).to(content.device)
        image = (share * content + (1 - share) * style + noise * jitter).clamp(0, 255)
        points.append((content, style, image))
    return points


def gradient_matching_loss(
    teacher: FeatureNetwork,
    student: FeatureNetwork,
    batch: torch.Tensor,
    preset: LossPreset,
    weights: LossWeights,
    seed: int,
) -> dict[str, torch.Tensor]:
    """The mean :func:`image_gradient_error` over the batch's content/style/image triples (``total`` = ``gradient``).

    Each network computes its own targets from the same content and style crops, as a stylization with
    it would.
    """
    errors = []
    for content, style, image in gradient_matching_images(batch, seed):
        teacher_grad = image_gradient(
            teacher, preset, image, compute_targets(teacher, preset, content, [style]), weights
        )
        targets = compute_targets(student, preset, content, [style])
        errors.append(image_gradient_error(student, teacher_grad, image, targets, preset, weights))
    error = torch.stack(errors).mean()
    return {"gradient": error, "total": error}
