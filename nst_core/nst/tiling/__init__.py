"""Tiles for images too large to stylize whole: geometry, the tiled network and objective, and the plan.

A tile is a window of the image processed by the network on its own; its *core* is the part
whose features count. Cores partition the image, so statistics summed over cores are the
statistics of the whole image; the rest of the window (the halo) gives the core's features
context, so they match the whole image's features closely.

Every core edge inside the image and every window origin lies on a multiple of the deepest
pooling stride (``stride``: 16 up to relu5_x), so each layer's pooling windows inside a tile
are those of the whole image and a core maps to a whole number of feature pixels at every
layer: feature crops are exact. The grid is shifted by a random multiple of the stride each
iteration (:func:`tile_grid` with a seeded generator), so no seam stays in one place.

- ``grid``: :class:`Tile`, :func:`tile_grid`, halos from receptive fields.
- ``tiled_network``: :class:`TiledNetwork` (features and summed statistics), :func:`tiled_targets`.
- ``evaluator``: :class:`TiledEvaluator`, the objective of one scale tile by tile.
- ``plan``: :class:`TilePlan` and :func:`plan_tiles`, which scales to tile within a memory budget.
"""

from nst_core.nst.tiling.evaluator import TiledEvaluator
from nst_core.nst.tiling.grid import (
    Tile,
    check_tile,
    crop_core,
    exact_halo,
    halo_for,
    layer_factor,
    receptive_field,
    stride_of,
    tile_grid,
    whole_pixels,
)
from nst_core.nst.tiling.plan import MAX_SCALES, TilePlan, iteration_macs_tiled, plan_tiles
from nst_core.nst.tiling.tiled_network import EvaluationCancelled, TiledNetwork, measure_macs_per_second, tiled_targets

__all__ = [
    "MAX_SCALES",
    "EvaluationCancelled",
    "Tile",
    "TilePlan",
    "TiledEvaluator",
    "TiledNetwork",
    "check_tile",
    "crop_core",
    "exact_halo",
    "halo_for",
    "iteration_macs_tiled",
    "layer_factor",
    "measure_macs_per_second",
    "plan_tiles",
    "receptive_field",
    "stride_of",
    "tile_grid",
    "tiled_targets",
    "whole_pixels",
]
