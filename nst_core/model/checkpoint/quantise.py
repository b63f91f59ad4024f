"""Quantised weight storage: int8 with a scale per output channel, or a 4-bit k-means codebook per conv.

int8       ``round(w / scale)`` per output channel, ``scale = max |w| / 127``; the int8 values
           take the float values' place and the scales hang off the weight's key (``.scale``).
codebook4  a 16-entry codebook per conv found by 1-D k-means (linear initialisation, as Deep
           Compression found best) and 4-bit indices, two per byte, low nibble first
           (``.codebook``, ``.codes``).

>>> channels = torch.tensor([0, 0, 1])  # the output channel of each value
>>> stored = quantise(torch.tensor([1.0, -0.5, 0.25]), channels, 2, "int8")
>>> stored[""].tolist(), dequantise(stored, channels, 3, "int8").tolist()
([127, -64, 127], [1.0, -0.5039370059967041, 0.25])
"""

from __future__ import annotations

import math

import torch

from nst_core.model.checkpoint.format import (
    CODEBOOK_SIZE,
    CODEBOOK_SUFFIX,
    CODES_SUFFIX,
    QUANTISED_DTYPES,
    SCALE_SUFFIX,
    CheckpointError,
)

_KMEANS_ITERATIONS = 30


def kmeans_codebook(
    values: torch.Tensor, size: int = CODEBOOK_SIZE, iterations: int = _KMEANS_ITERATIONS
) -> torch.Tensor:
    """A sorted codebook of ``size`` fp32 entries for the 1-D ``values``: Lloyd's k-means from a linear start.

    In one dimension each cluster is an interval of the sorted values, so every iteration is a
    search and a prefix sum (no n x k distance matrix). Deterministic.
    """
    if values.numel() == 0:
        return torch.zeros(size)
    ordered = values.detach().double().reshape(-1).sort().values
    prefix = torch.cat([torch.zeros(1, dtype=torch.float64), ordered.cumsum(0)])
    centroids = torch.linspace(float(ordered[0]), float(ordered[-1]), size, dtype=torch.float64)
    for _ in range(iterations):
        edges = torch.searchsorted(ordered, (centroids[1:] + centroids[:-1]) / 2)
        edges = torch.cat([torch.zeros(1, dtype=torch.long), edges, torch.tensor([ordered.numel()])])
        counts = edges[1:] - edges[:-1]
        sums = prefix[edges[1:]] - prefix[edges[:-1]]
        updated = torch.where(counts > 0, sums / counts.clamp_min(1), centroids).sort().values
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids.float()


def _nearest(values: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest entry of the sorted ``codebook`` for each value."""
    return torch.searchsorted((codebook[1:] + codebook[:-1]) / 2, values.contiguous()).clamp_(0, codebook.numel() - 1)


def _pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    codes = codes.to(torch.uint8)
    if codes.numel() % 2:
        codes = torch.cat([codes, torch.zeros(1, dtype=torch.uint8)])
    return (codes[0::2] | (codes[1::2] << 4)).contiguous()


def _unpack_nibbles(packed: torch.Tensor, count: int) -> torch.Tensor:
    return torch.stack([packed & 15, packed >> 4], dim=1).reshape(-1)[:count].long()


def quantise(values: torch.Tensor, channels: torch.Tensor, out_channels: int, dtype: str) -> dict[str, torch.Tensor]:
    """Stored form of the fp32 ``values`` (any shape; ``channels`` holds each one's output channel).

    Returns suffix -> tensor: int8 gives ``""`` (int8 values, ``values``'s shape) and ``.scale``;
    codebook4 gives ``.codes`` and ``.codebook``. ``dequantise`` reverses it (up to the rounding).
    """
    flat = values.detach().float().reshape(-1)
    if dtype == "int8":
        peak = torch.zeros(out_channels).scatter_reduce_(0, channels, flat.abs(), "amax")
        scale = peak / 127
        per_value = scale[channels]
        q = torch.where(per_value > 0, flat / per_value.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros(()))
        return {"": q.round().clamp_(-127, 127).to(torch.int8).reshape(values.shape), SCALE_SUFFIX: scale}
    if dtype == "codebook4":
        codebook = kmeans_codebook(flat)
        return {CODES_SUFFIX: _pack_nibbles(_nearest(flat, codebook)), CODEBOOK_SUFFIX: codebook}
    raise CheckpointError(f"unknown quantised dtype {dtype!r}; choose from {', '.join(QUANTISED_DTYPES)}")


def dequantise(stored: dict[str, torch.Tensor], channels: torch.Tensor, count: int, dtype: str) -> torch.Tensor:
    """The fp32 values (flat, ``count`` of them) that ``quantise`` stored as ``stored`` (suffix -> tensor)."""
    if dtype == "int8":
        return stored[""].reshape(-1).float() * stored[SCALE_SUFFIX].float()[channels]
    return stored[CODEBOOK_SUFFIX].float()[_unpack_nibbles(stored[CODES_SUFFIX], count)]


def output_channels(shape: list[int], flat_positions: torch.Tensor | None) -> torch.Tensor:
    """The output channel of each stored value: of every weight, or of those at ``flat_positions``."""
    per_channel = math.prod(shape[1:])
    if flat_positions is None:
        return torch.arange(shape[0]).repeat_interleave(per_channel)
    return flat_positions // per_channel


def relative_error(decoded: torch.Tensor, original: torch.Tensor) -> float:
    norm = float(original.double().norm())
    return float((decoded.double() - original.double()).norm()) / norm if norm > 0 else 0.0
