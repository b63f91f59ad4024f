"""nst_core.compress.scan.plots: PNG curves and heatmap."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
from PIL import Image

from nst_core.compress.scan import plot_scan, select_profile


def pixels_of_colour(path, colormap: str, value: float, tolerance: int = 12) -> int:
    """How many pixels of the PNG at ``path`` are within ``tolerance`` (per channel, 0-255) of ``colormap(value)``."""
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"), dtype=int)
    rgb = np.array([round(255 * c) for c in matplotlib.colormaps[colormap](float(value))[:3]])
    return int((np.abs(pixels - rgb).max(axis=2) <= tolerance).sum())


def test_plots_of_a_synthetic_table_with_a_failed_cell_are_valid_pngs(tmp_path, synthetic_table):
    table = synthetic_table(
        [
            ("conv1_1", 0.5, 1.1, 1.2, 0.9),
            ("conv1_1", 0.9, math.inf, math.inf, 0.0),
            ("conv2_1", 0.5, 1.0, 1.0, 0.99),
            ("conv2_1", 0.9, 1.3, 1.1, 0.8),
        ]
    )
    paths = plot_scan(table, tmp_path)
    for path in paths:
        with Image.open(path) as img:
            img.verify()
    assert select_profile(table, 0.5).sparsity == {"conv1_1": 0.5, "conv2_1": 0.9}
    # Drawn, not just valid: each layer's curve in its colour (viridis, first and last layer; ~2,700
    # pixels each when measured), and each heatmap cell in the colour of its degradation (the worst of
    # content - 1, style - 1, 1 - SSIM; 0.01, 0.2 and 0.3 = the highest, which the failed cell shares;
    # ~25,000 pixels a cell, 54,000 for the two darkest with the black text). A blank plot has none of them.
    curves, heatmap = paths
    assert pixels_of_colour(curves, "viridis", 0.0) > 500 and pixels_of_colour(curves, "viridis", 1.0) > 500
    for degradation, least in ((0.01, 15_000), (0.2, 15_000), (0.3, 40_000)):
        assert pixels_of_colour(heatmap, "magma_r", degradation / 0.3) > least, degradation
