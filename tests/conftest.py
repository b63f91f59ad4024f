"""Shared fixtures: the real VGG-19 architecture with seeded random weights, and small images.

Real weights cannot be downloaded on the machines this is built on; random weights exercise
every code path (results are mechanically right and visually meaningless).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest

from nst_core.model.weights import load_vgg

from support.pictures import make_image


@pytest.fixture(scope="session")
def random_model():
    """VGG-19 up to relu5_3 (the seed preset's deepest layer), seeded random weights."""
    return load_vgg("random:0", last_layer="relu5_3")


@pytest.fixture
def content_image():
    return make_image(64, 48, seed=1)


@pytest.fixture
def style_image():
    return make_image(64, 64, seed=2)
