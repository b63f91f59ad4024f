"""Content, style (Gram or mean-covariance) and total-variation losses, and the presets that fix their numbers.

- ``presets``: :class:`LossPreset` (layers, weights, normalisations), :data:`PRESETS`, :class:`LossWeights`.
- ``statistics``: Gram matrices and additive feature :class:`Moments` (fp32; tiles sum to the whole).
- ``style``: the style losses by name (:data:`STYLE_LOSSES`) and the style targets they compare with.
- ``objective``: content and TV losses, :class:`Targets`, and :func:`loss_terms`, the whole objective.

Every public name is importable from ``nst_core.nst.losses``:

>>> from nst_core.nst.losses import STYLE_LOSSES, get_preset
>>> sorted(STYLE_LOSSES), get_preset("gatys2016").style_norm
(['gram', 'meancov'], 'paper')
"""

from nst_core.nst.losses.objective import (
    Targets,
    blend_moments,
    compute_targets,
    content_loss,
    image_gradient,
    loss_terms,
    normalise_blend,
    style_loss_from_moments,
    targets_from_stats,
    tv_loss,
)
from nst_core.nst.losses.presets import PRESETS, LossPreset, LossWeights, get_preset
from nst_core.nst.losses.statistics import Moments, at_least_fp32, gram_matrix, guide_at, layer_moments, style_moments
from nst_core.nst.losses.style import (
    STYLE_LOSSES,
    StyleLayerLoss,
    StyleLoss,
    StyleTarget,
    style_layer_loss,
    style_loss_of,
    symmetric_sqrt,
    wasserstein_layer_loss,
)

__all__ = [
    "PRESETS",
    "STYLE_LOSSES",
    "LossPreset",
    "LossWeights",
    "Moments",
    "StyleLayerLoss",
    "StyleLoss",
    "StyleTarget",
    "Targets",
    "at_least_fp32",
    "blend_moments",
    "compute_targets",
    "content_loss",
    "get_preset",
    "gram_matrix",
    "guide_at",
    "image_gradient",
    "layer_moments",
    "loss_terms",
    "normalise_blend",
    "style_layer_loss",
    "style_loss_from_moments",
    "style_loss_of",
    "style_moments",
    "symmetric_sqrt",
    "targets_from_stats",
    "tv_loss",
    "wasserstein_layer_loss",
]
