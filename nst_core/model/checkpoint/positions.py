"""Where a pruned conv's kept weights sit: bitmaps or relative indices (``gapsB``), whichever is smaller.

A bool mask is stored either as a bitmap (8 weights per byte) or, as Deep Compression stored
sparse weights, as the count of pruned weights skipped before each kept one, in B bits (1-8);
the all-ones entry means "skip 2^B - 1, no weight yet", for longer gaps.

>>> mask = torch.zeros(64, dtype=torch.bool)
>>> mask[[3, 40]] = True  # two kept weights of 64: 2 bytes of 4-bit gaps against an 8-byte bitmap
>>> encoding, data = encode_positions(mask)
>>> encoding, data.numel(), torch.equal(decode_positions(encoding, data, [64], "example"), mask)
('gaps4', 2, True)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nst_core.model.checkpoint.format import POSITION_ENCODINGS, CheckpointError


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """A bool mask as uint8 bytes, 8 flat elements per byte (``unpack_mask`` reverses it)."""
    return torch.from_numpy(np.packbits(mask.cpu().numpy().reshape(-1)))


def unpack_mask(bits: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """The bool mask of ``shape`` that :func:`pack_mask` packed."""
    mask = np.unpackbits(bits.numpy(), count=math.prod(shape)).astype(bool)
    return torch.from_numpy(mask).reshape(shape)


def _gap_counts(flat: np.ndarray) -> np.ndarray:
    """For each kept position of a flat bool mask: the pruned positions skipped since the previous one."""
    kept = np.flatnonzero(flat)
    return np.diff(kept, prepend=-1) - 1


def _gaps_bytes(gaps: np.ndarray, bits: int) -> int:
    """Size of the ``gaps{bits}`` encoding: one entry per kept weight plus one per escape."""
    escape = (1 << bits) - 1
    entries = gaps.size + int((gaps // escape).sum())
    return (entries * bits + 7) // 8


def _encode_gaps(gaps: np.ndarray, bits: int) -> np.ndarray:
    """Entries (escapes, then the remainder, per kept weight) packed MSB-first; padding bits are ones."""
    escape = (1 << bits) - 1
    escapes = gaps // escape
    entries = np.full(gaps.size + int(escapes.sum()), escape, dtype=np.int64)
    # Each kept weight's remainder entry comes after its escapes.
    entries[np.cumsum(escapes + 1) - 1] = gaps % escape
    shifts = np.arange(bits - 1, -1, -1)
    stream = ((entries[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)
    stream = np.concatenate([stream, np.ones(-stream.size % 8, dtype=np.uint8)])
    return np.packbits(stream)


def encode_positions(mask: torch.Tensor) -> tuple[str, torch.Tensor]:
    """(encoding, uint8 tensor): the kept positions of ``mask`` in the smallest of ``POSITION_ENCODINGS``.

    >>> encode_positions(torch.tensor([True, False, False, True]))[0]  # 1 byte either way: ties keep the bitmap
    'bitmap'
    """
    flat = mask.cpu().numpy().reshape(-1)
    gaps = _gap_counts(flat)
    sizes = {"bitmap": (flat.size + 7) // 8} | {f"gaps{b}": _gaps_bytes(gaps, b) for b in range(1, 9)}
    best = min(POSITION_ENCODINGS, key=lambda name: sizes[name])  # ties keep the earlier (bitmap first)
    if best == "bitmap":
        return best, pack_mask(mask)
    return best, torch.from_numpy(_encode_gaps(gaps, int(best[4:])))


def decode_positions(encoding: str, data: torch.Tensor, shape: list[int], where: str) -> torch.Tensor:
    """The bool mask of ``shape`` that ``encode_positions`` stored; malformed data raises CheckpointError.

    Memory is bounded by ``data``'s size (which the tensor table bounds by the conv's weight count).
    """
    count = math.prod(shape)
    if encoding == "bitmap":
        return unpack_mask(data, shape)
    bits = int(encoding[4:])
    escape = (1 << bits) - 1
    stream = np.unpackbits(data.numpy())
    entries = stream[: stream.size // bits * bits].reshape(-1, bits).astype(np.int64) @ (
        1 << np.arange(bits - 1, -1, -1)
    )
    is_value = entries < escape
    values_at = np.flatnonzero(is_value)
    trailing = entries.size - (values_at[-1] + 1 if values_at.size else 0)
    if trailing * bits >= 8:  # only the padding of the last byte may follow the last kept weight
        raise CheckpointError(f"{where}: corrupt positions: {trailing} entries after the last kept weight")
    positions = np.cumsum(entries + is_value)[is_value] - 1
    if positions.size and positions[-1] >= count:
        raise CheckpointError(
            f"{where}: corrupt positions: a kept weight at {int(positions[-1])}, the conv has {count} weights"
        )
    mask = np.zeros(count, dtype=bool)
    mask[positions] = True
    return torch.from_numpy(mask).reshape(shape)
