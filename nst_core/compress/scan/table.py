"""A scan's results as a table: merging shards, proxy-vs-full agreement, choosing a profile.

The table depends only on the records' numbers, never on which shard or machine produced
them, so merging any sharding of a scan gives the same ``table.csv`` and ``table.json``.

Degradation (what "hurts" means when selecting a profile), per cell:

    content  = content_ratio - 1        the dense judge's content loss grew by this fraction
    style    = style_ratio - 1          the dense judge's style loss grew by this fraction
    ssim     = 1 - ssim                 SSIM against the dense output fell by this much
    worst    = max(content, style, ssim)      (default for full scans)
    proxy    = max(feature_distortion, gram_distortion)   (default for proxy scans)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nst_core.compress.pruning import Profile
from nst_core.compress.scan.folder import ScanError, cell_key, finished_records, load_scan_json, read_dense_info
from nst_core.core.files import atomic_write_text
from nst_core.model.layers import CONV_NAMES
from nst_core.model.weight_spec import is_random_source

JUDGED = ("content_ratio", "style_ratio", "ssim")
PROXY = ("feature_distortion", "gram_distortion", "proxy")
ABSOLUTE = ("judged_content", "judged_style")
DEGRADATIONS = ("worst", "content", "style", "ssim", "proxy")
TABLE_FORMAT = "nst-scan-table/1"


def degradation(metrics: dict, kind: str) -> float:
    """How much worse than dense a cell is, by one of :data:`DEGRADATIONS`; 0 = as good as dense."""
    try:
        if kind == "content":
            return metrics["content_ratio"] - 1.0
        if kind == "style":
            return metrics["style_ratio"] - 1.0
        if kind == "ssim":
            return 1.0 - metrics["ssim"]
        if kind == "worst":
            return max(degradation(metrics, k) for k in ("content", "style", "ssim"))
        if kind == "proxy":
            return max(metrics["feature_distortion"], metrics["gram_distortion"])
    except KeyError as exc:
        raise ScanError(
            f"degradation {kind!r} needs metric {exc.args[0]!r}, which this scan has not got (proxy-only scan?)"
        ) from None
    raise ScanError(f"unknown degradation {kind!r}; choose from {', '.join(DEGRADATIONS)}")


@dataclass
class ScanTable:
    """One row per finished cell of the grid, plus the scan's config and dense baseline."""

    scan: dict  # scan.json
    rows: list[dict]  # layer, sparsity, then metrics
    missing: list[str]  # cell keys of the grid without a record yet
    baseline: dict | None  # dense judged losses (full scans)

    @property
    def full(self) -> bool:
        """Whether cells were stylized and judged (``full`` mode), not only proxied."""
        return self.scan.get("mode") == "full"

    @property
    def metrics(self) -> list[str]:
        """The metric columns of the rows: judged ones (full scans) first, then the proxies."""
        names = list(PROXY)
        if self.full:
            names = [*JUDGED, *ABSOLUTE, *names]
        return names

    @property
    def default_degradation(self) -> str:
        """``worst`` for full scans, ``proxy`` for proxy scans."""
        return "worst" if self.full else "proxy"

    def layers(self) -> list[str]:
        """Layers with at least one finished cell, in network order."""
        present = {row["layer"] for row in self.rows}
        return [name for name in CONV_NAMES if name in present]

    def sparsities(self) -> list[float]:
        """Sparsity levels with at least one finished cell, ascending."""
        return sorted({row["sparsity"] for row in self.rows})

    def agreement(self) -> list[dict]:
        """:func:`rank_agreement` of the rows (full scans only: a proxy scan has nothing judged)."""
        return rank_agreement(self.rows) if self.full else []

    def to_dict(self) -> dict:
        """The contents of ``table.json``."""
        return {
            "format": TABLE_FORMAT,
            "config_hash": self.scan["config_hash"],
            "method": self.scan["method"],
            "mode": self.scan["mode"],
            "weights": self.scan["weights"],
            "meaningful": not is_random_source(str(self.scan["weights"])),
            "layers": self.scan["layers"],
            "sparsities": self.scan["sparsities"],
            "baseline": self.baseline,
            "metrics": self.metrics,
            "rows": self.rows,
            "missing": self.missing,
            "agreement": self.agreement(),
        }

    def to_csv(self) -> str:
        """The contents of ``table.csv``: one line per row, every digit kept."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        columns = ["layer", "sparsity", *self.metrics, "degradation"]
        writer.writerow(columns)
        for row in self.rows:
            # repr keeps every digit, so a table re-read from CSV is the table that was written.
            writer.writerow(
                [row["layer"], repr(row["sparsity"]), *(repr(row[m]) for m in self.metrics), repr(row["degradation"])]
            )
        return buffer.getvalue()

    def to_text(self) -> str:
        """The table for a terminal: rows, unfinished cells, and the proxy's rank agreement."""
        shown = [m for m in self.metrics if m not in ABSOLUTE]
        header = f"{'layer':<8} {'sparsity':>8} " + " ".join(f"{m:>18}" for m in shown) + f" {'degradation':>12}"
        lines = [header]
        for row in self.rows:
            lines.append(
                f"{row['layer']:<8} {row['sparsity']:>8.2f} "
                + " ".join(f"{row[m]:>18.4f}" for m in shown)
                + f" {row['degradation']:>12.4f}"
            )
        if self.missing:
            lines.append(
                f"{len(self.missing)} cell(s) not finished yet: "
                f"{', '.join(self.missing[:6])}{' ...' if len(self.missing) > 6 else ''}"
            )
        for item in self.agreement():
            lines.append(
                f"rank agreement {item['proxy']} vs {item['judged']}: Spearman {_fmt(item['spearman'])}, "
                f"Kendall {_fmt(item['kendall'])} over {item['cells']} cells"
            )
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def merge_scan(folder: str | os.PathLike) -> ScanTable:
    """Collect every shard's records of the folder's configuration into one table (grid order)."""
    folder = Path(folder)
    scan = load_scan_json(folder)
    records = finished_records(folder, scan["config_hash"])
    degradation_kind = "worst" if scan["mode"] == "full" else "proxy"
    rows, missing = [], []
    for layer in scan["layers"]:
        for sparsity in scan["sparsities"]:
            record = records.get(cell_key(layer, sparsity))
            if record is None:
                missing.append(cell_key(layer, sparsity))
                continue
            metrics = record["metrics"]
            row = {"layer": layer, "sparsity": float(sparsity), **{k: float(v) for k, v in sorted(metrics.items())}}
            row["degradation"] = degradation(metrics, degradation_kind)
            rows.append(row)
    baseline = None
    info = read_dense_info(folder, scan["config_hash"]) if scan["mode"] == "full" else None
    if info is not None:
        baseline = {
            "content": info["losses"]["content"],
            "style": info["losses"]["style"],
            "content_ratio": 1.0,
            "style_ratio": 1.0,
            "ssim": 1.0,
        }
    return ScanTable(scan, rows, missing, baseline)


def write_tables(table: ScanTable, folder: str | os.PathLike) -> list[Path]:
    """``table.csv`` and ``table.json`` in ``folder``, written atomically."""
    folder = Path(folder)
    csv_path, json_path = folder / "table.csv", folder / "table.json"
    atomic_write_text(csv_path, table.to_csv())
    atomic_write_text(json_path, json.dumps(table.to_dict(), indent=2, allow_nan=True) + "\n")
    return [csv_path, json_path]


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span (``[5, 7, 7] -> [1, 2.5, 2.5]``)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of each distinct value's last occurrence
    return ((last - counts + 1 + last) / 2)[inverse.ravel()]


def _paired_ranks(xs: list[float], ys: list[float]) -> tuple[np.ndarray, np.ndarray] | None:
    """Average ranks of both samples; None where no rank correlation is defined (< 2 pairs, a NaN)."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} values paired with {len(y)}")
    if len(x) < 2 or np.isnan(x).any() or np.isnan(y).any():
        return None
    # Ranks, not values, from here on: the order is the same and inf - inf (NaN) never happens.
    return _average_ranks(x), _average_ranks(y)


def spearman_rho(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation: Pearson's r of the average ranks (ties handled as scipy does).

    None when it is undefined: fewer than two pairs, a NaN, or a constant sample.
    """
    ranks = _paired_ranks(xs, ys)
    if ranks is None:
        return None
    rx, ry = (r - r.mean() for r in ranks)
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / denominator if denominator > 0 else None


def kendall_tau_b(xs: list[float], ys: list[float]) -> float | None:
    """Kendall's tau-b (scipy's default): (concordant - discordant) / sqrt(pairs untied in x * pairs untied in y).

    A pair tied in x or y counts as neither concordant nor discordant, and tau-b's denominator
    leaves it out, so a monotone relation with ties still scores 1 (tau-a would not).
    None when it is undefined: fewer than two pairs, a NaN, or a constant sample.
    """
    ranks = _paired_ranks(xs, ys)
    if ranks is None:
        return None
    pairs = np.triu_indices(len(ranks[0]), k=1)  # every unordered pair once
    sx, sy = (np.sign(r[:, None] - r[None, :])[pairs] for r in ranks)
    untied_x, untied_y = np.count_nonzero(sx), np.count_nonzero(sy)
    if untied_x == 0 or untied_y == 0:
        return None
    return float(sx @ sy) / math.sqrt(float(untied_x) * float(untied_y))


def rank_agreement(rows: list[dict]) -> list[dict]:
    """Spearman's rho and Kendall's tau-b of each proxy with the judged degradation it stands for."""
    pairs = (
        ("feature_distortion", "content", "content_ratio - 1"),
        ("gram_distortion", "style", "style_ratio - 1"),
        ("proxy", "ssim", "1 - ssim"),
        ("proxy", "worst", "worst degradation"),
    )
    out = []
    for proxy, kind, label in pairs:
        xs = [row[proxy] for row in rows]
        ys = [degradation(row, kind) for row in rows]
        spearman = kendall = None
        if len(rows) >= 3 and len(set(xs)) > 1 and len(set(ys)) > 1:
            spearman = spearman_rho(xs, ys)
            kendall = kendall_tau_b(xs, ys)
        out.append({"proxy": proxy, "judged": label, "spearman": spearman, "kendall": kendall, "cells": len(rows)})
    return out


def select_sparsity(levels: list[tuple[float, float]], tolerance: float) -> float:
    """Highest sparsity reached by climbing the levels while degradation stays <= tolerance.

    ``levels`` are (sparsity, degradation). The climb stops at the first level that fails,
    so a noisy pass above a failure is not trusted. 0.0 (dense) if even the lowest fails.
    """
    chosen = 0.0
    for sparsity, value in sorted(levels):
        if not (value <= tolerance):  # NaN fails too
            break
        chosen = sparsity
    return chosen


def select_profile(table: ScanTable, tolerance: float, metric: str | None = None) -> Profile:
    """Per scanned layer, the highest sparsity whose degradation stays within ``tolerance``.

    >>> profile = select_profile(merge_scan("runs/scan"), tolerance=0.1)   # doctest: +SKIP
    >>> save_profile(profile, "runs/scan/profile.json")                    # doctest: +SKIP
    """
    if not tolerance >= 0:
        raise ScanError(f"tolerance must be >= 0, not {tolerance}")
    if not table.rows:
        raise ScanError("the scan has no finished cells to select from")
    metric = metric or table.default_degradation
    by_layer: dict[str, list[tuple[float, float]]] = {}
    for row in table.rows:
        by_layer.setdefault(row["layer"], []).append((row["sparsity"], degradation(row, metric)))
    sparsity = {layer: select_sparsity(by_layer[layer], tolerance) for layer in table.layers()}
    source = {
        "scan": table.scan["config_hash"],
        "mode": table.scan["mode"],
        "weights": table.scan["weights"],
        "tolerance": tolerance,
        "degradation": metric,
        "sparsities": table.scan["sparsities"],
        "incomplete": bool(table.missing),
        "note": "each layer chosen alone; pruning several layers together can degrade more than any one of them",
    }
    return Profile(table.scan["method"], sparsity, source)
