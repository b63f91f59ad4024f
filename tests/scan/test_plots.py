"""nst_core.compress.scan.plots: PNG curves and heatmap."""

from __future__ import annotations

import math

from PIL import Image

from nst_core.compress.scan import plot_scan, select_profile


def test_plots_of_a_synthetic_table_with_a_failed_cell_are_valid_pngs(tmp_path, synthetic_table):
    table = synthetic_table(
        [
            ("conv1_1", 0.5, 1.1, 1.2, 0.9),
            ("conv1_1", 0.9, math.inf, math.inf, 0.0),
            ("conv2_1", 0.5, 1.0, 1.0, 0.99),
            ("conv2_1", 0.9, 1.3, 1.1, 0.8),
        ]
    )
    for path in plot_scan(table, tmp_path):
        with Image.open(path) as img:
            img.verify()
    assert select_profile(table, 0.5).sparsity == {"conv1_1": 0.5, "conv2_1": 0.9}
