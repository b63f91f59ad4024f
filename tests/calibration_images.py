"""Small synthetic calibration images, shared by the calibration and fine-tuning tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_images(folder: Path, count: int, size: tuple[int, int] = (72, 56)) -> None:
    """Smooth random colour fields with stripes: some structure for Gram matrices to see."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        w, h = size
        y, x = np.mgrid[0:h, 0:w]
        freq = 0.1 + 0.05 * i
        base = rng.uniform(0, 255, 3)
        pixels = base + 80 * np.sin(freq * x[..., None] + np.arange(3) + i) * np.cos(freq * y[..., None])
        pixels += rng.normal(0, 20, (h, w, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"img{i}.png")
