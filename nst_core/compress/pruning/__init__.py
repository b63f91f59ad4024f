"""Pruning VGG-19: fine-grained magnitude pruning, structured filter pruning, profiles and reports.

Two methods, one idea each:

- **fine** (:mod:`.fine`): per conv weight, zero exactly ``round(s * n)`` weights of smallest
  ``|w|``. The network keeps its shape; ``model.masks`` (bool, True = kept) let training loops
  re-apply the zeros after every optimizer step (:func:`apply_masks`). Dense kernels still
  multiply the zeros, so this saves storage, not time.
- **structured** (:mod:`.structured`): remove whole output filters with the smallest L1 norm
  (or importance score), and the matching input channels of the next conv. The result is an
  ordinary, physically smaller ``VGGFeatures`` that runs faster with dense kernels;
  ``model.kept_channels`` says which teacher channels survived (fine-tuning needs that).

Both return a new network and never touch their input. Layers after ``model.last_layer``
are not in the network at all, so they are never pruned.

A :class:`Profile` (:mod:`.profile`) is a method plus how much of each conv to prune; it is
what a scan selects, what a budget chooses, what ``nst prune`` applies and what fine-tuning
and the app read. :func:`prune` (:mod:`.apply`) is the one way callers apply one: it picks the
method, so no caller outside this package does. :mod:`.report` counts what pruning left.

May import: ``core``, ``model``, ``nst`` (the cost model), never the rest of ``compress``.

>>> from nst_core.model.weights import load_vgg
>>> model = load_vgg("random:0", last_layer="relu4_2")
>>> pruned = prune(model, load_profile("seed"))
>>> print(sparsity_report(pruned).to_text())  # doctest: +SKIP
"""

from nst_core.compress.pruning.apply import prune
from nst_core.compress.pruning.fine import apply_masks, prune_fine, threshold_for_global_sparsity
from nst_core.compress.pruning.profile import (
    METHODS,
    PROFILE_FORMAT,
    PROFILES,
    Profile,
    ProfileError,
    load_profile,
    resolve_sparsity,
    save_profile,
)
from nst_core.compress.pruning.report import LayerSparsity, PruneReport, sparsity_report
from nst_core.compress.pruning.structured import (
    CHANNEL_MULTIPLE,
    best_filters,
    channels_to_keep,
    filter_l1_norms,
    prune_structured,
    prune_to_widths,
)

__all__ = [
    "CHANNEL_MULTIPLE",
    "METHODS",
    "PROFILES",
    "PROFILE_FORMAT",
    "LayerSparsity",
    "Profile",
    "ProfileError",
    "PruneReport",
    "apply_masks",
    "best_filters",
    "channels_to_keep",
    "filter_l1_norms",
    "load_profile",
    "prune",
    "prune_fine",
    "prune_structured",
    "prune_to_widths",
    "resolve_sparsity",
    "save_profile",
    "sparsity_report",
    "threshold_for_global_sparsity",
]
