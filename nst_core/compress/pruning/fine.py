"""Fine-grained magnitude pruning: zero the smallest weights of each conv and keep masks of the rest.

The network keeps its shape; ``model.masks`` (bool, True = kept) let training loops re-apply the
zeros after every optimizer step (:func:`apply_masks`). Dense kernels still multiply the zeros, so
this saves storage, not time.
"""

from __future__ import annotations

import copy

import torch

from nst_core.compress.pruning.profile import ProfileError, resolve_sparsity
from nst_core.compress.pruning.provenance import stamp
from nst_core.model.vgg import VGGFeatures


def prune_fine(
    model: VGGFeatures,
    sparsity: dict | float | str | None = None,
    global_threshold: float | None = None,
) -> VGGFeatures:
    """A copy of ``model`` with the smallest-magnitude weights of each conv zeroed.

    Per conv with sparsity ``s`` and ``n`` weights, exactly ``round(s * n)`` weights are
    zeroed: those with smallest ``|w|``, ties broken by flat index (a stable sort), so the
    result is deterministic. Biases are kept. With ``global_threshold`` instead, every
    conv weight with ``|w| < global_threshold`` is zeroed (one threshold for the whole
    network, as in global magnitude pruning; see :func:`threshold_for_global_sparsity`).
    ``masks`` (bool, True = kept) and ``provenance`` are set on the copy.

    >>> from nst_core.model.weights import load_vgg
    >>> pruned = prune_fine(load_vgg("random:0", last_layer="relu1_2"), {"conv1_2": 0.5})
    >>> int((pruned.conv("conv1_2").weight == 0).sum())
    18432
    """
    if (sparsity is None) == (global_threshold is None):
        raise ProfileError("give exactly one of a sparsity (dict, number or profile name) or a global threshold")
    pruned = copy.deepcopy(model)
    masks = dict(pruned.masks)
    with torch.no_grad():
        if global_threshold is not None:
            realized = _zero_below(pruned, masks, global_threshold)
        else:
            assert sparsity is not None  # exactly one of the two, checked above
            realized = _zero_smallest(pruned, masks, resolve_sparsity(pruned, sparsity, "fine"))
    pruned.masks = masks
    extra = {"global_threshold": float(global_threshold)} if global_threshold is not None else None
    stamp(pruned, "fine", realized, extra)
    return pruned


def _zero_below(model: VGGFeatures, masks: dict[str, torch.Tensor], threshold: float) -> dict[str, float]:
    """Zero every conv weight with ``|w| < threshold`` in place, updating ``masks``; the realised sparsity per conv."""
    if threshold < 0:
        raise ProfileError(f"global threshold must be >= 0, not {threshold}")
    realized = {}
    for name, conv in model.convs().items():
        keep = conv.weight.abs() >= threshold
        masks[name] = keep & masks[name] if name in masks else keep
        conv.weight.mul_(masks[name])
        realized[name] = 1.0 - masks[name].sum().item() / masks[name].numel()
    return realized


def _zero_smallest(model: VGGFeatures, masks: dict[str, torch.Tensor], sparsity: dict[str, float]) -> dict[str, float]:
    """Zero the ``round(s * n)`` smallest weights of each conv in place, updating ``masks``; returns ``sparsity``."""
    for name, s in sparsity.items():
        weight = model.conv(name).weight
        n = weight.numel()
        k = int(round(s * n))
        # Already-pruned weights are 0, so they sort first and stay pruned.
        order = torch.sort(weight.detach().abs().flatten().cpu(), stable=True).indices
        keep = torch.ones(n, dtype=torch.bool)
        keep[order[:k]] = False
        keep = keep.view_as(weight).to(weight.device)
        masks[name] = keep & masks[name] if name in masks else keep
        weight.mul_(masks[name])
    return dict(sparsity)


def threshold_for_global_sparsity(model: VGGFeatures, sparsity: float) -> float:
    """The ``|w|`` threshold that zeroes about ``sparsity`` of all conv weights together."""
    if not 0.0 <= sparsity <= 1.0:
        raise ProfileError(f"global sparsity must be in [0, 1], not {sparsity}")
    magnitudes = torch.cat([conv.weight.detach().abs().flatten().cpu() for conv in model.convs().values()])
    k = int(round(sparsity * magnitudes.numel()))
    if k == 0:
        return 0.0
    if k >= magnitudes.numel():
        return float("inf")
    ordered = torch.sort(magnitudes).values
    # Midway between the last pruned and first kept magnitude, so |w| < t zeroes exactly k (barring ties).
    return float((ordered[k - 1] + ordered[k]) / 2)


@torch.no_grad()
def apply_masks(model: VGGFeatures) -> None:
    """Set every pruned weight back to exactly +0.0, in place (call after every optimizer step).

    ``masked_fill`` rather than a multiply, so no pruned weight becomes a -0.0 bit pattern.

    >>> optimizer.step(); apply_masks(student)  # doctest: +SKIP
    """
    for name, mask in model.masks.items():
        weight = model.conv(name).weight
        weight.masked_fill_(~mask.to(weight.device), 0.0)
