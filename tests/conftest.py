"""Shared fixtures: the real VGG-19 architecture with seeded random weights, and small images.

Real weights cannot be downloaded on the machines this is built on; random weights exercise
every code path (results are mechanically right and visually meaningless).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np
import pytest
from PIL import Image

from nst_core.model.weights import load_vgg


@pytest.fixture(scope="session")
def random_model():
    """VGG-19 up to relu5_3 (the seed preset's deepest layer), seeded random weights."""
    return load_vgg("random:0", last_layer="relu5_3")


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


@pytest.fixture
def content_image():
    return make_image(64, 48, seed=1)


@pytest.fixture
def style_image():
    return make_image(64, 64, seed=2)
