"""Structured pruning: remove whole output filters and the matching input channels of the next conv.

The result is an ordinary, physically smaller ``VGGFeatures`` (same class, smaller ``widths``)
that runs faster with dense kernels; ``model.kept_channels`` says which teacher channels
survived (fine-tuning needs that). Filters are ranked by importance scores (see
:mod:`nst_core.compress.importance`), by default their L1 norm.
"""

from __future__ import annotations

import copy

import torch

from nst_core.compress.pruning.profile import ProfileError, resolve_sparsity
from nst_core.compress.pruning.provenance import stamp
from nst_core.core.validation import shown
from nst_core.model.vgg import VGGFeatures

#: Channel counts after structured pruning are multiples of this (friendly to SIMD/tensor cores).
CHANNEL_MULTIPLE = 8


def channels_to_keep(width: int, ratio: float) -> int:
    """Output channels left when removing ``ratio`` of ``width`` filters: a multiple of 8, at least 8."""
    if ratio <= 0.0:
        return width
    keep = int(round(width * (1.0 - ratio) / CHANNEL_MULTIPLE)) * CHANNEL_MULTIPLE
    return min(width, max(CHANNEL_MULTIPLE, keep))


def filter_l1_norms(conv: torch.nn.Conv2d) -> torch.Tensor:
    """L1 norm of each output filter (over input channels and the 3x3 kernel)."""
    return conv.weight.detach().abs().sum(dim=(1, 2, 3))


def prune_structured(
    model: VGGFeatures, ratio: dict | float | str, scores: dict[str, torch.Tensor] | None = None
) -> VGGFeatures:
    """A physically smaller copy of ``model`` with its least important output filters removed.

    ``ratio`` (per conv or uniform) is the fraction of output filters to remove; the
    channels left are rounded to a multiple of 8 and never fewer than 8. The matching
    input channels of the next conv go too, so the network stays a chain. Filters are
    ranked by ``scores`` (one value per output filter of each conv, larger = more
    important: see :mod:`nst_core.compress.importance`), by default their L1 norm. Each layer's
    filters are ranked in the input network (not after the previous layer lost channels),
    so a layer's choice does not depend on what other layers do: a scan that prunes one
    layer picks the same filters a full profile does.
    ``kept_channels[name]`` (sorted LongTensor) maps each remaining channel to the
    teacher channel it came from, for every conv.

    >>> from nst_core.model.weights import load_vgg
    >>> small = prune_structured(load_vgg("random:0", last_layer="relu2_1"), 0.5)
    >>> small.widths
    {'conv1_1': 32, 'conv1_2': 32, 'conv2_1': 64}
    """
    ratios = resolve_sparsity(model, ratio, "structured")
    keep = {name: channels_to_keep(model.widths[name], ratios.get(name, 0.0)) for name in model.conv_names}
    return _keep_filters(model, keep, scores, {name: ratios[name] for name in model.conv_names if name in ratios})


def prune_to_widths(
    model: VGGFeatures, widths: dict[str, int], scores: dict[str, torch.Tensor] | None = None
) -> VGGFeatures:
    """Structured pruning to exact output widths (what a budget chooses); convs not named keep theirs.

    Each width must be between 1 and the conv's current width. Filters are ranked as in
    :func:`prune_structured`.

    >>> from nst_core.model.weights import load_vgg
    >>> prune_to_widths(load_vgg("random:0", last_layer="relu1_2"), {"conv1_2": 24}).widths
    {'conv1_1': 64, 'conv1_2': 24}
    """
    keep = dict(model.widths)
    for name, width in widths.items():
        if name not in keep:
            raise ProfileError(f"conv {shown(name)} is not in this network (it has {', '.join(model.conv_names)})")
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= keep[name]:
            raise ProfileError(f"width of {name} must be an integer in [1, {keep[name]}], not {shown(width)}")
        keep[name] = width
    removed = {
        name: 1.0 - keep[name] / model.widths[name] for name in model.conv_names if keep[name] != model.widths[name]
    }
    return _keep_filters(model, keep, scores, removed)


def best_filters(
    model: VGGFeatures, name: str, keep: int, scores: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """Sorted indices of the ``keep`` highest-scored output filters of conv ``name`` (default score: L1 norm).

    >>> from nst_core.model.weights import load_vgg
    >>> best_filters(load_vgg("random:0", last_layer="relu1_1"), "conv1_1", 3).tolist()
    [12, 33, 46]
    """
    conv = model.conv(name)
    width = conv.out_channels
    if keep >= width:
        return torch.arange(width)
    score = filter_l1_norms(conv) if scores is None else scores[name]
    if score.shape != (width,):
        raise ProfileError(f"importance scores of {name} have shape {tuple(score.shape)}, expected ({width},)")
    # Highest score first; the stable sort keeps the lower index on ties.
    order = torch.sort(-score.detach().float().cpu(), stable=True).indices
    return torch.sort(order[:keep]).values


def _keep_filters(
    model: VGGFeatures, keep: dict[str, int], scores: dict[str, torch.Tensor] | None, stamped: dict[str, float]
) -> VGGFeatures:
    """The copy of ``model`` that keeps the ``keep[name]`` best-scored output filters of every conv."""
    names = model.conv_names
    local_keep = {name: best_filters(model, name, keep[name], scores) for name in names}

    widths = {name: int(local_keep[name].numel()) for name in names}
    reference = next(model.parameters())
    small = VGGFeatures(
        model.last_layer, widths=widths, pooling=model.pooling, preprocessing=model.preprocessing, arch=model.arch
    )
    small = small.to(device=reference.device, dtype=reference.dtype)
    small.masks = _copy_kept(model, small, local_keep)

    # Compose with an earlier structured pruning so indices always refer to the dense teacher.
    small.kept_channels = {
        name: (model.kept_channels[name][local_keep[name]] if name in model.kept_channels else local_keep[name]).long()
        for name in names
    }
    small.weight_source = model.weight_source
    small.provenance = copy.deepcopy(model.provenance)
    small.train(model.training)
    for p_small, p_model in zip(small.parameters(), model.parameters()):
        p_small.requires_grad_(p_model.requires_grad)
    stamp(small, "structured", stamped, {"widths": dict(widths)})
    return small


@torch.no_grad()
def _copy_kept(model: VGGFeatures, small: VGGFeatures, local_keep: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copy the kept filters' weights and biases of ``model`` into ``small``; return ``model``'s masks cut alike."""
    masks: dict[str, torch.Tensor] = {}
    previous: torch.Tensor | None = None  # kept input channels (indices into the input network's channels)
    for name in model.conv_names:
        src, dst = model.conv(name), small.conv(name)
        out_idx = local_keep[name].to(src.weight.device)
        weight = src.weight.index_select(0, out_idx)
        if previous is not None:
            weight = weight.index_select(1, previous)
        dst.weight.copy_(weight)
        assert src.bias is not None and dst.bias is not None  # every VGG conv has a bias
        dst.bias.copy_(src.bias.index_select(0, out_idx))
        if name in model.masks:
            mask = model.masks[name].index_select(0, out_idx.to(model.masks[name].device))
            if previous is not None:
                mask = mask.index_select(1, previous.to(mask.device))
            masks[name] = mask
        previous = out_idx
    return masks
