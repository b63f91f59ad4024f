"""Fixtures shared by the scan tests: one finished tiny scan, and synthetic tables."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from nst_core.compress.scan import ScanTable, degradation

from support.tiny_scan import scan_args, scan_env


@pytest.fixture(scope="session")
def entry(tmp_path_factory) -> Path:
    """A script that runs `nst` (torchrun needs a script path, not a console entry point)."""
    path = tmp_path_factory.mktemp("bin") / "nst_entry.py"
    path.write_text("import sys\nfrom nst_core.cli import main\nsys.exit(main())\n")
    return path


@pytest.fixture(scope="session")
def reference(tmp_path_factory, entry) -> Path:
    """One uninterrupted single-process run of the tiny grid."""
    out = tmp_path_factory.mktemp("reference") / "scan"
    done = subprocess.run(
        [sys.executable, str(entry), *scan_args(out)], env=scan_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert (out / "table.csv").exists() and (out / "table.json").exists()  # a complete grid is merged at the end
    return out


def _synthetic_table(rows: list[tuple[str, float, float, float, float]], mode: str = "full") -> ScanTable:
    scan = {
        "config_hash": "f" * 16,
        "method": "fine",
        "mode": mode,
        "weights": "random:0",
        "layers": sorted({r[0] for r in rows}),
        "sparsities": sorted({r[1] for r in rows}),
    }
    out = []
    for layer, sparsity, content_ratio, style_ratio, ssim in rows:
        row = {
            "layer": layer,
            "sparsity": sparsity,
            "content_ratio": content_ratio,
            "style_ratio": style_ratio,
            "ssim": ssim,
            "feature_distortion": content_ratio - 1,
            "gram_distortion": style_ratio - 1,
            "proxy": 0.0,
        }
        row["degradation"] = degradation(row, "worst")
        out.append(row)
    return ScanTable(scan, out, [], None)


@pytest.fixture
def synthetic_table() -> Callable[..., ScanTable]:
    """Build a full-scan table from (layer, sparsity, content_ratio, style_ratio, ssim) rows.

    The proxies copy the judged numbers (feature = content_ratio - 1, gram = style_ratio - 1)
    and the mean proxy is constant 0.
    """
    return _synthetic_table
