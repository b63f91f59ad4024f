"""Colour control: luminance-only transfer and colour histogram matching (Gatys et al., "Preserving colour in NST").

Luminance: style is transferred on luminance alone; the output's luminance is then recombined with
the content's chroma, so the result keeps the photo's colours and takes only texture from the style.
Histogram: the style image is recoloured before optimisation so its RGB mean and covariance are the
content's; the output then has the content's palette and the style's texture, in full colour.
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
    _, cb, cr = (
        chroma_from.convert("RGB").resize(luminance_from.size, Image.Resampling.LANCZOS).convert("YCbCr").split()
    )
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")


def color_statistics(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Mean (3,) and covariance (3, 3) of an image's RGB pixels."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3)
    return pixels.mean(axis=0), np.cov(pixels, rowvar=False, bias=True)


def _sqrtm(matrix: np.ndarray, inverse: bool = False) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    values = np.maximum(values, 1e-6)  # a flat (e.g. grey) image has a singular covariance
    return (vectors * (values ** (-0.5 if inverse else 0.5))) @ vectors.T


def match_color(style: Image.Image, content: Image.Image) -> Image.Image:
    """The style image recoloured so its RGB mean and covariance are the content's (Gatys et al. 2017, "colour
    histogram matching")."""
    return recolor(style, *color_statistics(content))


def recolor(image: Image.Image, mean: np.ndarray, cov: np.ndarray) -> Image.Image:
    """``image`` with its RGB mean and covariance set to ``mean`` and ``cov``: x -> C^1/2 C_x^-1/2 (x - m_x) + m,
    with symmetric square roots, which changes the colours least among the linear maps that match the
    statistics of a "white" image."""
    mean_x, cov_x = color_statistics(image)
    transform = _sqrtm(cov) @ _sqrtm(cov_x, inverse=True)
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    matched = (pixels - mean_x) @ transform.T + mean
    return Image.fromarray(np.clip(np.rint(matched), 0, 255).astype(np.uint8))


def blended_statistics(images: list[Image.Image], weights: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """RGB mean and covariance of the images' pixels pooled with these weights (the moments of the mixture).

    >>> grey, white = Image.new("RGB", (4, 4), (0, 0, 0)), Image.new("RGB", (4, 4), (200, 200, 200))
    >>> mean, cov = blended_statistics([grey, white], [1.0, 1.0])
    >>> mean.tolist(), round(float(cov[0, 0]))
    ([100.0, 100.0, 100.0], 10000)
    """
    shares = np.asarray(weights, dtype=np.float64) / float(sum(weights))
    stats = [color_statistics(image) for image in images]
    mean = sum(w * m for w, (m, _) in zip(shares, stats))
    second = sum(w * (c + np.outer(m, m)) for w, (m, c) in zip(shares, stats))
    return mean, second - np.outer(mean, mean)
