"""The tiny scan the end-to-end tests run: real inputs, a 2 x 2 grid, 64 px, 2 iterations.

Seeded random VGG-19 weights stand in for the real ones (no downloads here). Every scan
subprocess runs with OMP_NUM_THREADS=1 (what torchrun sets), so runs in different processes
are bit-for-bit comparable.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTENT = str(ROOT / "examples/content/lakeside.jpg")
STYLE = str(ROOT / "examples/style/swirls.jpg")
GRID = ["--layers", "conv1_2,conv3_1", "--sparsities", "0.5,0.9"]
TINY = ["--size", "64", "--iterations", "2", "--weights", "random:0"]


def scan_args(out: Path) -> list[str]:
    """`nst` arguments that run the tiny scan into ``out``."""
    return ["scan", "run", "--content", CONTENT, "--style", STYLE, "--out", str(out), *GRID, *TINY]


def scan_env() -> dict:
    """The environment of a scan subprocess: one thread, unbuffered output."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
