"""PNG plots of a scan: per-layer curves of each metric vs sparsity, and a layer x sparsity heatmap.

matplotlib runs with the Agg backend (no display needed) through its object API, so plotting
never touches global pyplot state that a notebook or the app might be using. It is imported
only when a plot is drawn: it is the heaviest import of the package and most uses never plot.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from nst_core.compress.scan.folder import ScanError
from nst_core.compress.scan.table import JUDGED, PROXY, ScanTable, degradation
from nst_core.core.files import atomic_write_bytes
from nst_core.model.weight_spec import is_random_source

LABELS = {
    "content_ratio": "content-loss ratio vs dense (dense judge)",
    "style_ratio": "style-loss ratio vs dense (dense judge)",
    "ssim": "SSIM vs dense output",
    "feature_distortion": "content-feature distortion (proxy)",
    "gram_distortion": "Gram distortion (proxy)",
    "proxy": "mean proxy distortion",
}
# What the dense network scores on each metric: ratios and SSIM are 1, distortions 0.
DENSE_VALUE = {
    "content_ratio": 1.0,
    "style_ratio": 1.0,
    "ssim": 1.0,
    "feature_distortion": 0.0,
    "gram_distortion": 0.0,
    "proxy": 0.0,
}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # heavy, optional at import time: see the module docstring

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _title(table: ScanTable, what: str) -> str:
    scan = table.scan
    title = f"{what}: {scan['method']} pruning, one layer at a time ({scan['weights']} weights)"
    if is_random_source(str(scan["weights"])):
        title += "\nRANDOM WEIGHTS: mechanically right, visually meaningless"
    return title


def plot_curves(table: ScanTable, path: str | Path) -> Path:
    """One panel per metric, one line per layer; the dense value is a dashed line (and a point at 0)."""
    metrics = [*JUDGED, *PROXY[:2]] if table.full else list(PROXY[:2])
    layers = table.layers()
    columns = min(3, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    fig = _figure(5.0 * columns, 3.6 * rows + 0.6)
    import matplotlib  # heavy, optional at import time: see the module docstring

    colours = matplotlib.colormaps["viridis"]
    axes = fig.subplots(rows, columns, squeeze=False).flatten()
    for ax, metric in zip(axes, metrics):
        for i, layer in enumerate(layers):
            # A cell whose run failed (infinite ratio) has no point to draw; the heatmap shows it.
            points = sorted(
                (r["sparsity"], r[metric]) for r in table.rows if r["layer"] == layer and math.isfinite(r[metric])
            )
            xs = [0.0] + [p[0] for p in points]
            ys = [DENSE_VALUE[metric]] + [p[1] for p in points]
            ax.plot(xs, ys, marker="o", markersize=3, color=colours(i / max(1, len(layers) - 1)), label=layer)
        ax.axhline(DENSE_VALUE[metric], color="black", linestyle="--", linewidth=1, label="dense")
        ax.scatter([0.0], [DENSE_VALUE[metric]], color="black", zorder=5, s=25)
        ax.set_xlabel("sparsity of the pruned layer")
        ax.set_title(LABELS[metric], fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=6, ncol=2)
    fig.suptitle(_title(table, "Sensitivity"), fontsize=10)
    return _save(fig, Path(path))


def plot_heatmap(table: ScanTable, path: str | Path, metric: str | None = None) -> Path:
    """Layers (rows) x sparsities (columns), coloured by degradation; each cell annotated."""
    metric = metric or table.default_degradation
    layers, levels = table.layers(), table.sparsities()
    grid = np.full((len(layers), len(levels)), np.nan)
    for row in table.rows:
        grid[layers.index(row["layer"]), levels.index(row["sparsity"])] = degradation(row, metric)
    fig = _figure(max(6.5, 1.0 * len(levels) + 3.5), 0.42 * len(layers) + 1.9)
    ax = fig.subplots()
    shown = np.clip(grid, 0.0, None)  # negative degradation (better than dense) shows as 0
    finite = shown[np.isfinite(shown)]
    high = float(finite.max()) if finite.size else 1.0
    shown = np.where(np.isposinf(shown), high, shown)  # failed runs get the worst colour and read "inf"
    image = ax.imshow(shown, aspect="auto", cmap="magma_r", vmin=0.0)
    ax.set_xticks(range(len(levels)), [f"{s:.2f}" for s in levels])
    ax.set_yticks(range(len(layers)), layers)
    ax.set_xlabel("sparsity")
    ax.set_ylabel("pruned layer")
    for i in range(len(layers)):
        for j in range(len(levels)):
            value = grid[i, j]
            text = "-" if np.isnan(value) else f"{value:.3g}"
            dark = not np.isnan(value) and value > 0.6 * high
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    fig.colorbar(image, ax=ax, label=f"degradation ({metric})\n0 = as good as dense")
    ax.set_title(_title(table, "Degradation"), fontsize=9)
    return _save(fig, Path(path))


def plot_scan(table: ScanTable, folder: str | Path) -> list[Path]:
    """Write ``curves.png`` and ``heatmap.png`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not table.rows:
        raise ScanError("the scan has no finished cells to plot")
    return [plot_curves(table, folder / "curves.png"), plot_heatmap(table, folder / "heatmap.png")]
