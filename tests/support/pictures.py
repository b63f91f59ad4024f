"""Synthetic test pictures: one structured image per seed, and folders of calibration images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_image(width: int, height: int, seed: int) -> Image.Image:
    """A smooth, structured test picture (gradients plus blobs), deterministic per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(2, 8), rng.uniform(2, 8), rng.uniform(0, 6.28)
        channels.append(0.5 + 0.5 * np.sin(fx * x * 6.28 + phase) * np.cos(fy * y * 6.28))
    array = np.stack(channels, axis=2) * 255
    return Image.fromarray(array.clip(0, 255).astype(np.uint8))


def write_images(folder: Path, count: int, size: tuple[int, int] = (72, 56)) -> None:
    """Smooth random colour fields with stripes: some structure for Gram matrices to see.

    Shared by the calibration and fine-tuning tests.
    """
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
