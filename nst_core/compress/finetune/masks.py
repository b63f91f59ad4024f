"""Masks of fine-grained students during training: pruned weights get no gradient and stay exactly zero.

Gradients of pruned weights are zeroed before every Adam step (so Adam's moment estimates for
them stay zero and never revive them); the masks are re-applied after every step
(:func:`nst_core.compress.pruning.apply_masks`).
"""

from __future__ import annotations

from nst_core.core.errors import UserError
from nst_core.model.vgg import VGGFeatures


def zero_pruned_gradients(student: VGGFeatures) -> None:
    """Zero the gradient of every pruned weight, so Adam's moments for it stay exactly zero."""
    for name, mask in student.masks.items():
        grad = student.conv(name).weight.grad
        if grad is not None:
            grad.masked_fill_(~mask, 0.0)


def check_masks(student: VGGFeatures) -> None:
    """Raise if a pruned weight is not exactly zero (a corrupted or mismatched state)."""
    for name, mask in student.masks.items():
        weight = student.conv(name).weight
        if mask.shape != weight.shape:
            raise UserError(f"mask of {name} has shape {list(mask.shape)}, weight has {list(weight.shape)}")
        if bool((weight[~mask] != 0).any()):
            raise UserError(f"{name}: pruned weights are not zero; the weights do not belong to this mask")
