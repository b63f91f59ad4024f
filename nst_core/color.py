"""Colour preservation by luminance-only transfer (Gatys et al. 2016, "Preserving colour in NST").

Style is transferred on luminance alone; the output's luminance is then recombined with the
content's chroma, so the result keeps the photo's colours and takes only texture from the style.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# ITU-R BT.601 luma weights, as in YIQ/YCbCr.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def _luma(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64) @ _LUMA


def _grey_rgb(luma: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None], 3, axis=2))


def luminance_image(image: Image.Image) -> Image.Image:
    """The image's luminance as a grey RGB image (what the network sees)."""
    return _grey_rgb(_luma(image))


def match_luminance(style: Image.Image, content: Image.Image) -> Image.Image:
    """Style luminance shifted and scaled to the content's luminance mean and std, as grey RGB."""
    ys, yc = _luma(style), _luma(content)
    scaled = (ys - ys.mean()) / (ys.std() + 1e-8) * yc.std() + yc.mean()
    return _grey_rgb(scaled)


def combine_luminance_chroma(luminance_from: Image.Image, chroma_from: Image.Image) -> Image.Image:
    """YCbCr recombination: Y of the first image, Cb/Cr of the second (resized to match)."""
    y, _, _ = luminance_from.convert("YCbCr").split()
    _, cb, cr = chroma_from.convert("RGB").resize(luminance_from.size, Image.LANCZOS).convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")
