"""Pruning VGG-19: fine-grained magnitude pruning, structured filter pruning, and profiles.

Two methods, one idea each:

- **fine**: per conv weight, zero exactly ``round(s * n)`` weights of smallest ``|w|``.
  The network keeps its shape; ``model.masks`` (bool, True = kept) let training loops
  re-apply the zeros after every optimizer step (:func:`apply_masks`). Dense kernels
  still multiply the zeros, so this saves storage, not time.
- **structured**: remove whole output filters with the smallest L1 norm, and the matching
  input channels of the next conv. The result is an ordinary, physically smaller
  ``VGGFeatures`` (same class, smaller ``widths``) that runs faster with dense kernels;
  ``model.kept_channels`` says which teacher channels survived (fine-tuning needs that).

Both return a new network and never touch their input. Layers after ``model.last_layer``
are not in the network at all, so they are never pruned.

A :class:`Profile` is a method plus per-layer sparsity; it is what a scan selects, what
``nst prune`` applies and what fine-tuning and the app read:

>>> from nst_core.model.weights import load_vgg
>>> model = load_vgg("random:0", last_layer="relu4_2")
>>> pruned = prune(model, load_profile("seed"))
>>> print(sparsity_report(pruned).to_text())  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import torch

from nst_core.core.errors import UserError
from nst_core.core.files import atomic_write_text
from nst_core.core.validation import Fields, check_number, read_json_file, shown
from nst_core.model.layers import CONV_NAMES, DENSE_CONV_WEIGHTS, DENSE_WIDTHS
from nst_core.model.vgg import VGGFeatures
from nst_core.nst.cost import conv_macs

PROFILE_FORMAT = "nst-profile/1"
METHODS = ("fine", "structured")

#: Named per-layer sparsity profiles (fraction of weights zeroed for "fine").
#: "seed" is the profile the seed notebook settled on: 20,024,384 conv weights -> ~3.02M nonzeros.
PROFILES: dict[str, dict[str, float]] = {
    "seed": dict(
        zip(
            CONV_NAMES,
            (0.0, 0.9, 0.6, 0.6, 0.9, 0.8, 0.8, 0.7, 0.8, 0.8, 0.8, 0.9, 0.9, 0.9, 0.9, 0.85),
        )
    ),
}

#: Channel counts after structured pruning are multiples of this (friendly to SIMD/tensor cores).
CHANNEL_MULTIPLE = 8


class ProfileError(UserError):
    """A pruning profile or sparsity specification is malformed."""


@dataclass
class Profile:
    """How to prune: ``method`` ("fine" | "structured") and per-conv ``sparsity``.

    For "fine" a value is the fraction of weights zeroed; for "structured" the fraction of
    output filters removed. ``source`` says where the numbers came from (a named profile,
    a scan and its tolerance, ...), for metadata and model cards.
    """

    method: str
    sparsity: dict[str, float]
    source: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ProfileError(f"unknown pruning method {self.method!r}; choose from {', '.join(METHODS)}")
        self.sparsity = _validate_sparsity(self.sparsity, self.method)

    def to_dict(self) -> dict:
        """The JSON object ``save_profile`` writes."""
        return {
            "format": PROFILE_FORMAT,
            "method": self.method,
            "sparsity": dict(self.sparsity),
            "source": dict(self.source),
        }

    @classmethod
    def from_dict(cls, data: dict, origin: str = "profile") -> Profile:
        """A profile from its JSON object; errors name ``origin`` (e.g. the file it came from) and the field."""
        fields = Fields(data, origin, ProfileError)
        found = fields.get("format", None)
        if found != PROFILE_FORMAT:
            fields.fail("format", f"is {shown(found)}, expected {PROFILE_FORMAT!r}")
        method = fields.string("method", METHODS)
        sparsity = fields.mapping("sparsity")
        source = fields.mapping("source", {})
        try:
            return cls(method, sparsity, dict(source))
        except ProfileError as exc:
            raise ProfileError(f"{origin}: field 'sparsity': {exc}") from None


def _validate_sparsity(sparsity: dict, method: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in sparsity.items():
        if name not in DENSE_WIDTHS:
            raise ProfileError(f"unknown conv layer {shown(name)} in sparsity; valid names: {', '.join(CONV_NAMES)}")

        def refuse(problem: str, name=name) -> NoReturn:
            raise ProfileError(f"sparsity of {name} {problem}")

        value = check_number(value, refuse, 0.0, 1.0)
        if value == 1.0 and method != "fine":
            refuse("is 1.0; it must be in [0, 1): structured pruning keeps at least one filter")
        out[name] = value
    # Keep network order whatever order the user wrote.
    return {name: out[name] for name in CONV_NAMES if name in out}


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    """A named profile (see :data:`PROFILES`) or a profile JSON file.

    >>> load_profile("seed").sparsity["conv1_2"]
    0.9
    """
    key = str(name_or_path)
    if key in PROFILES:
        return Profile("fine", dict(PROFILES[key]), {"profile": key})
    path = Path(key)
    if not path.exists():
        raise ProfileError(f"no profile named {shown(key)} and no such file; named profiles: {', '.join(PROFILES)}")
    return Profile.from_dict(read_json_file(path, "a profile", ProfileError), origin=str(path))


def save_profile(profile: Profile, path: str | os.PathLike) -> None:
    """Write ``profile`` as JSON (format ``nst-profile/1``), atomically."""
    atomic_write_text(path, json.dumps(profile.to_dict(), indent=2) + "\n")


def resolve_sparsity(model: VGGFeatures, sparsity: dict | float | str, method: str = "fine") -> dict[str, float]:
    """Per-conv sparsity for the convs this network has.

    A float applies to every conv; a str names a profile (or a profile file); a dict
    lists layers (absent ones stay dense). Layers past ``model.last_layer`` are dropped:
    they are not part of a truncated network.
    """
    if isinstance(sparsity, str):
        sparsity = load_profile(sparsity).sparsity
    if isinstance(sparsity, (int, float)) and not isinstance(sparsity, bool):
        sparsity = {name: float(sparsity) for name in model.conv_names}
    if not isinstance(sparsity, dict):
        raise ProfileError(f"sparsity must be a dict, a number or a profile name, not {type(sparsity).__name__}")
    checked = _validate_sparsity(sparsity, method)
    present = set(model.conv_names)
    return {name: value for name, value in checked.items() if name in present}


def _stamp(model: VGGFeatures, method: str, sparsity: dict[str, float], extra: dict | None = None) -> None:
    provenance = dict(model.provenance)
    previous = provenance.get("method")
    if previous and previous != method:
        # Structured then fine is a valid pipeline; keep both stories.
        provenance[f"{previous}_sparsity"] = provenance.get("sparsity")
        method_label = f"{previous}+{method}"
    else:
        method_label = method
    provenance.update({"method": method_label, "sparsity": dict(sparsity)})
    provenance.update(extra or {})
    model.provenance = provenance


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
    realized: dict[str, float] = {}
    with torch.no_grad():
        if global_threshold is not None:
            if global_threshold < 0:
                raise ProfileError(f"global threshold must be >= 0, not {global_threshold}")
            for name, conv in pruned.convs().items():
                keep = conv.weight.abs() >= global_threshold
                masks[name] = keep & masks[name] if name in masks else keep
                conv.weight.mul_(masks[name])
                realized[name] = 1.0 - masks[name].sum().item() / masks[name].numel()
        else:
            for name, s in resolve_sparsity(pruned, sparsity, "fine").items():
                conv = pruned.conv(name)
                weight = conv.weight
                n = weight.numel()
                k = int(round(s * n))
                # Already-pruned weights are 0, so they sort first and stay pruned.
                order = torch.sort(weight.detach().abs().flatten().cpu(), stable=True).indices
                keep = torch.ones(n, dtype=torch.bool)
                keep[order[:k]] = False
                keep = keep.view_as(weight).to(weight.device)
                masks[name] = keep & masks[name] if name in masks else keep
                weight.mul_(masks[name])
                realized[name] = s
    pruned.masks = masks
    extra = {"global_threshold": float(global_threshold)} if global_threshold is not None else None
    _stamp(pruned, "fine", realized, extra)
    return pruned


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
    small = VGGFeatures(model.last_layer, widths=widths, pooling=model.pooling, preprocessing=model.preprocessing)
    small = small.to(device=reference.device, dtype=reference.dtype)

    masks: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        previous: torch.Tensor | None = None  # kept input channels (indices into the input network's channels)
        for name in names:
            src, dst = model.conv(name), small.conv(name)
            out_idx = local_keep[name].to(src.weight.device)
            weight = src.weight.index_select(0, out_idx)
            if previous is not None:
                weight = weight.index_select(1, previous)
            dst.weight.copy_(weight)
            dst.bias.copy_(src.bias.index_select(0, out_idx))
            if name in model.masks:
                mask = model.masks[name].index_select(0, out_idx.to(model.masks[name].device))
                if previous is not None:
                    mask = mask.index_select(1, previous.to(mask.device))
                masks[name] = mask
            previous = out_idx

    # Compose with an earlier structured pruning so indices always refer to the dense teacher.
    small.kept_channels = {
        name: (model.kept_channels[name][local_keep[name]] if name in model.kept_channels else local_keep[name]).long()
        for name in names
    }
    small.masks = masks
    small.weight_source = model.weight_source
    small.provenance = copy.deepcopy(model.provenance)
    small.train(model.training)
    for p_small, p_model in zip(small.parameters(), model.parameters()):
        p_small.requires_grad_(p_model.requires_grad)
    _stamp(small, "structured", stamped, {"widths": dict(widths)})
    return small


def prune(model: VGGFeatures, profile: Profile | str) -> VGGFeatures:
    """Apply a profile (or a profile name / path) with its method; returns a new network."""
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    if profile.method == "structured":
        pruned = prune_structured(model, profile.sparsity)
    else:
        pruned = prune_fine(model, profile.sparsity)
    if profile.source:
        pruned.provenance["profile_source"] = dict(profile.source)
    return pruned


@torch.no_grad()
def apply_masks(model: VGGFeatures) -> None:
    """Set every pruned weight back to exactly +0.0, in place (call after every optimizer step).

    ``masked_fill`` rather than a multiply, so no pruned weight becomes a -0.0 bit pattern.

    >>> optimizer.step(); apply_masks(student)  # doctest: +SKIP
    """
    for name, mask in model.masks.items():
        weight = model.conv(name).weight
        weight.masked_fill_(~mask.to(weight.device), 0.0)


@dataclass
class LayerSparsity:
    """Weight counts of one conv, a row of :class:`PruneReport`."""

    name: str
    weights: int  # weights this conv has now
    dense_weights: int  # weights the same conv has in the unpruned VGG-19
    nonzeros: int
    biases: int = 0  # never pruned, but stored: the seed's 20,024,384 "conv weights" include them
    filters: int = 0  # output channels now (fewer than dense when structured-pruned)
    macs: int = 0  # conv MACs of one stylization iteration (forward + backward to the image) at the report's size
    dense_macs: int = 0  # the same for the unpruned conv

    @property
    def dense_filters(self) -> int:
        """Output channels of this conv in the unpruned VGG-19."""
        return DENSE_WIDTHS[self.name]

    @property
    def sparsity(self) -> float:
        """Fraction of this conv's current weights that are zero (0 for a structured conv: it is smaller, not sparser)."""
        return 1.0 - self.nonzeros / self.weights if self.weights else 0.0

    @property
    def removed(self) -> float:
        """Fraction of the dense conv's weights that are gone: removed with their filter, or zero."""
        return 1.0 - self.nonzeros / self.dense_weights if self.dense_weights else 0.0


@dataclass
class PruneReport:
    """Per-conv weight counts of a network, and totals against dense VGG-19 (same depth)."""

    rows: list[LayerSparsity]
    size: tuple[int, int] = (512, 512)  # (height, width) the MACs are counted at

    @property
    def total_macs(self) -> int:
        """Conv MACs of one stylization iteration of this network at ``size``."""
        return sum(r.macs for r in self.rows)

    @property
    def total_dense_macs(self) -> int:
        """The same for dense VGG-19 up to the same layer."""
        return sum(r.dense_macs for r in self.rows)

    @property
    def predicted_speedup(self) -> float:
        """Dense MACs / these MACs: the per-iteration speedup that less arithmetic predicts."""
        return self.total_dense_macs / self.total_macs if self.total_macs else float("inf")

    @property
    def total_weights(self) -> int:
        """Conv weights this network has (fewer than dense when structured-pruned)."""
        return sum(r.weights for r in self.rows)

    @property
    def total_dense_weights(self) -> int:
        """Conv weights of dense VGG-19 up to the same layer."""
        return sum(r.dense_weights for r in self.rows)

    @property
    def total_nonzeros(self) -> int:
        """Conv weights that are not zero."""
        return sum(r.nonzeros for r in self.rows)

    @property
    def total_biases(self) -> int:
        """Conv biases this network has (never pruned)."""
        return sum(r.biases for r in self.rows)

    @property
    def total_dense_parameters(self) -> int:
        """Dense conv weights plus biases (20,024,384 for all 16 convs)."""
        return self.total_dense_weights + sum(DENSE_WIDTHS[r.name] for r in self.rows)

    @property
    def total_kept_parameters(self) -> int:
        """Nonzero conv weights plus all biases (~3.02M for the seed profile)."""
        return self.total_nonzeros + self.total_biases

    @property
    def sparsity(self) -> float:
        """Fraction of the dense network's conv weights that are gone or zero."""
        return 1.0 - self.total_nonzeros / self.total_dense_weights if self.total_dense_weights else 0.0

    @property
    def compression(self) -> float:
        """Dense conv weights / nonzero conv weights (6.64x for the seed profile)."""
        return self.total_dense_weights / self.total_nonzeros if self.total_nonzeros else float("inf")

    def to_dict(self) -> dict:
        """Rows and totals as JSON-ready values (what ``nst prune --json`` writes under "report")."""
        return {
            "layers": [
                {
                    "name": r.name,
                    "weights": r.weights,
                    "dense_weights": r.dense_weights,
                    "nonzeros": r.nonzeros,
                    "biases": r.biases,
                    "sparsity": r.sparsity,
                    "filters": r.filters,
                    "dense_filters": r.dense_filters,
                    "removed": r.removed,
                    "macs": r.macs,
                    "dense_macs": r.dense_macs,
                }
                for r in self.rows
            ],
            "total_weights": self.total_weights,
            "total_dense_weights": self.total_dense_weights,
            "total_nonzeros": self.total_nonzeros,
            "total_dense_parameters": self.total_dense_parameters,
            "total_kept_parameters": self.total_kept_parameters,
            "sparsity": self.sparsity,
            "compression": self.compression,
            "mac_size": list(self.size),
            "total_macs": self.total_macs,
            "total_dense_macs": self.total_dense_macs,
            "predicted_speedup": self.predicted_speedup,
        }

    def to_text(self) -> str:
        """A plain-text table, one row per conv, then totals and compression (what ``nst prune`` prints)."""
        h, w = self.size
        header = f"{'layer':<8} {'filters':>11} {'weights':>10} {'nonzeros':>10} {'removed':>8} {'GMAC/it':>8}"
        lines = [header, "-" * len(header)]
        for r in self.rows:
            filters = f"{r.filters}/{r.dense_filters}"
            lines.append(
                f"{r.name:<8} {filters:>11} {r.weights:>10,} {r.nonzeros:>10,} {r.removed:>8.1%} {r.macs / 1e9:>8.2f}"
            )
        lines.append("-" * len(header))
        kept_filters = f"{sum(r.filters for r in self.rows)}/{sum(r.dense_filters for r in self.rows)}"
        lines.append(
            f"{'total':<8} {kept_filters:>11} {self.total_weights:>10,} {self.total_nonzeros:>10,} "
            f"{self.sparsity:>8.1%} {self.total_macs / 1e9:>8.2f}"
        )
        # 'removed' is against dense VGG-19: a structured conv is smaller, not sparser.
        if self.total_weights != self.total_dense_weights:
            lines.append(f"dense VGG-19 convs to this depth: {self.total_dense_weights:,} weights")
        lines.append(
            f"compression vs dense: {self.compression:.2f}x "
            f"({self.total_dense_weights:,} -> {self.total_nonzeros:,} nonzero conv weights; "
            f"with biases {self.total_dense_parameters:,} -> {self.total_kept_parameters:,} parameters)"
        )
        lines.append(
            f"work per stylization iteration at {w}x{h} px: {self.total_dense_macs / 1e9:.2f} -> {self.total_macs / 1e9:.2f} "
            f"GMAC (conv forward + backward to the image): predicted speedup {self.predicted_speedup:.2f}x"
            + (
                "; zeros inside a conv still cost MACs with dense kernels"
                if self.total_nonzeros < self.total_weights
                else ""
            )
        )
        return "\n".join(lines)


def sparsity_report(model: VGGFeatures, size: int | tuple[int, int] = 512) -> PruneReport:
    """Per conv: filters, weights, nonzeros (counted from the weights, not the masks), and the MACs of
    one stylization iteration at ``size`` (a side in px, or (height, width)) against dense VGG-19.

    >>> print(sparsity_report(prune_structured(model, 0.5)).to_text())  # doctest: +SKIP
    """
    height, width = (size, size) if isinstance(size, int) else size
    macs = conv_macs(model.widths, height, width)
    dense_macs = conv_macs({name: DENSE_WIDTHS[name] for name in model.widths}, height, width)
    rows = []
    for name, conv in model.convs().items():
        weight = conv.weight.detach()
        biases = conv.bias.numel() if conv.bias is not None else 0
        rows.append(
            LayerSparsity(
                name,
                weight.numel(),
                DENSE_CONV_WEIGHTS[name],
                int(torch.count_nonzero(weight)),
                biases,
                filters=conv.out_channels,
                macs=2 * macs[name],
                dense_macs=2 * dense_macs[name],
            )
        )
    return PruneReport(rows, (height, width))
