"""Applying a profile: the one entry point every caller prunes through, which picks the method."""

from __future__ import annotations

import torch

from nst_core.compress.pruning.fine import prune_fine, threshold_for_global_sparsity
from nst_core.compress.pruning.profile import Profile, ProfileError, load_profile
from nst_core.compress.pruning.structured import prune_structured, prune_to_widths
from nst_core.model.vgg import VGGFeatures


def prune(model: VGGFeatures, profile: Profile | str, scores: dict[str, torch.Tensor] | None = None) -> VGGFeatures:
    """Apply a profile (or a profile name / path) with its method; returns a new network, ``model`` is untouched.

    ``scores`` (from :func:`nst_core.compress.importance.filter_importance`) rank the filters a
    structured profile removes (default: their L1 norm); fine-grained pruning ranks weights by
    magnitude and takes none. The profile's ``source``, if any, is recorded in the pruned
    network's ``provenance["profile_source"]``.

    >>> from nst_core.model.weights import load_vgg
    >>> dense = load_vgg("random:0", last_layer="relu2_1")
    >>> prune(dense, Profile.uniform("structured", dense.conv_names, 0.5)).widths
    {'conv1_1': 32, 'conv1_2': 32, 'conv2_1': 64}
    """
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    if profile.method == "structured":
        if profile.widths is not None:
            pruned = prune_to_widths(model, profile.widths, scores)
        else:
            pruned = prune_structured(model, profile.sparsity, scores)
    else:
        if scores is not None:
            raise ProfileError("importance scores rank filters: only a structured profile uses them")
        if profile.global_sparsity is not None:
            pruned = prune_fine(model, global_threshold=threshold_for_global_sparsity(model, profile.global_sparsity))
        else:
            pruned = prune_fine(model, profile.sparsity)
    if profile.source:
        pruned.provenance["profile_source"] = dict(profile.source)
    return pruned
