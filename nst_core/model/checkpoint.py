"""The checkpoint format: a VGG-19 trunk (dense, fine-grained or structured pruned) as safetensors.

One file holds tensors and a string->string header; nothing is pickled. Two encodings:

dense   ``features.N.weight`` / ``features.N.bias`` as full tensors. Keys match torchvision, so
        ``nst_core.model.weights.load_vgg("file.safetensors")`` reads a dense checkpoint as plain weights.
packed  for each conv that has a fine-grained mask: the positions of the kept weights and
        ``features.N.weight.values`` (the kept weights in flat order). Positions are stored
        per conv in whichever is smaller (header field ``positions``): ``bitmap``, the bool mask
        bit-packed into ``features.N.weight.mask``, or ``gapsB``, relative indices as Deep
        Compression stored them: for each kept weight the count of pruned weights skipped
        since the previous one, in B bits (1-8), where the all-ones entry means "skip 2^B - 1,
        no weight yet" (for longer gaps); packed MSB-first into ``features.N.weight.gaps``.

Weights are stored in fp32, fp16 or bf16, or (packed only) quantised:

int8       ``round(w / scale)`` per output channel, ``scale = max |w| / 127`` stored as
           ``features.N.weight.scale`` (fp32); the int8 values take the float values' place.
codebook4  a 16-entry codebook per conv found by 1-D k-means over its stored weights (linear
           initialisation, as Deep Compression found best), ``features.N.weight.codebook``
           (fp32), and 4-bit indices, two per byte (low nibble first), ``features.N.weight.codes``.

Biases stay in the float dtype (fp32 for the quantised ones: a few KiB). Loading gives back
exactly the stored values, decoded to fp32 (the dtype the network computes in); quantised
files record each conv's relative reconstruction error in the header (``quantisation``).
Structured networks store their smaller shapes, and ``kept_channels.<conv>`` (int64) records
which teacher channels each conv kept. Everything is a plain safetensors tensor, so any
safetensors reader opens every file.

The header records the format and version, architecture (widths, last layer, pooling), weight
source and preprocessing, per-layer sparsity, pruning provenance, judged metrics, and a SHA-256
of the tensor bytes so a corrupted file is detected instead of silently loaded. Format version
2 added the ``positions`` and ``quantisation`` fields; version 1 files (bitmaps, float values) load as before.

>>> from nst_core.model.weights import load_vgg
>>> path = save_checkpoint(load_vgg("random:0", "relu2_1"), "/tmp/tiny.safetensors", dtype="fp32")
>>> load_checkpoint(path).widths["conv2_1"]
128
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch

from nst_core import __version__
from nst_core.core.devices import resolve_device
from nst_core.core.errors import UserError, first_line
from nst_core.core.files import atomic_path
from nst_core.core.validation import Fields, cut, parse_json, shown
from nst_core.model.vgg import (
    DENSE_WIDTHS,
    LAYER_NAMES,
    POOLINGS,
    PREPROCESSINGS,
    Preprocessing,
    VGGFeatures,
    convs_up_to,
    freeze,
    layer_index,
)

FORMAT_NAME = "nst-vgg19-checkpoint"
FORMAT_VERSION = 2
ENCODINGS = ("packed", "dense")
#: Float storage dtypes (any encoding).
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: Quantised storage (packed encoding only), decoded to fp32 on load.
QUANTISED_DTYPES = ("int8", "codebook4")
#: Every ``dtype`` ``save_checkpoint`` takes.
STORED_DTYPES = (*DTYPES, *QUANTISED_DTYPES)
CODEBOOK_SIZE = 16
POSITION_ENCODINGS = ("bitmap", *(f"gaps{bits}" for bits in range(1, 9)))

_MASK_SUFFIX = ".mask"
_GAPS_SUFFIX = ".gaps"
_VALUES_SUFFIX = ".values"
_SCALE_SUFFIX = ".scale"
_CODES_SUFFIX = ".codes"
_CODEBOOK_SUFFIX = ".codebook"
_KMEANS_ITERATIONS = 30
_KEPT_PREFIX = "kept_channels."
_CHUNK_BYTES = 1 << 20
# safetensors refuses headers above 100 MB; anything near that is not ours.
_MAX_HEADER_BYTES = 100_000_000
# Bytes per element of each safetensors dtype (sub-byte and newer ones are left to safetensors).
_SAFETENSORS_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
_SAFETENSORS_DTYPE = {"fp32": "F32", "fp16": "F16", "bf16": "BF16"}


class CheckpointError(UserError):
    """A checkpoint file is missing, corrupt, truncated, foreign, or disagrees with itself."""


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------


def layer_sparsity(model: VGGFeatures) -> dict[str, dict]:
    """Per conv: shape, weight count, kept (nonzero or masked-in) count and sparsity."""
    table = {}
    for name in model.conv_names:
        weight = model.conv(name).weight.detach()
        kept = int(model.masks[name].sum()) if name in model.masks else int(torch.count_nonzero(weight))
        total = weight.numel()
        table[name] = {
            "shape": list(weight.shape),
            "weights": total,
            "kept": kept,
            "sparsity": round(1.0 - kept / total, 6),
        }
    return table


def _pruning_method(model: VGGFeatures) -> str:
    if "method" in model.provenance:
        return str(model.provenance["method"])
    if model.masks and model.kept_channels:
        return "structured+fine"
    if model.masks:
        return "fine"
    if model.kept_channels:
        return "structured"
    return "none"


def _weight_key(name: str) -> str:
    return f"features.{layer_index(name)}.weight"


def _bias_key(name: str) -> str:
    return f"features.{layer_index(name)}.bias"


def _check_masks(model: VGGFeatures) -> None:
    for name, mask in model.masks.items():
        if name not in model.widths:
            raise CheckpointError(f"mask for {name} but the network ends at {model.last_layer}")
        weight = model.conv(name).weight
        if mask.dtype != torch.bool or tuple(mask.shape) != tuple(weight.shape):
            raise CheckpointError(
                f"mask for {name} must be a bool tensor of shape {list(weight.shape)}, got {mask.dtype} {list(mask.shape)}"
            )


def _pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """A bool mask as uint8 bytes, 8 flat elements per byte (``_unpack_mask`` reverses it)."""
    return torch.from_numpy(np.packbits(mask.cpu().numpy().reshape(-1)))


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

    >>> encode_positions(torch.tensor([True, False, False, True]))[0]
    'gaps2'
    """
    flat = mask.cpu().numpy().reshape(-1)
    gaps = _gap_counts(flat)
    sizes = {"bitmap": (flat.size + 7) // 8} | {f"gaps{b}": _gaps_bytes(gaps, b) for b in range(1, 9)}
    best = min(POSITION_ENCODINGS, key=lambda name: sizes[name])  # ties keep the earlier (bitmap first)
    if best == "bitmap":
        return best, _pack_mask(mask)
    return best, torch.from_numpy(_encode_gaps(gaps, int(best[4:])))


def decode_positions(encoding: str, data: torch.Tensor, shape: list[int], where: str) -> torch.Tensor:
    """The bool mask of ``shape`` that ``encode_positions`` stored; malformed data raises CheckpointError.

    Memory is bounded by ``data``'s size (which the tensor table bounds by the conv's weight count).
    """
    count = math.prod(shape)
    if encoding == "bitmap":
        return _unpack_mask(data, shape)
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
        return {"": q.round().clamp_(-127, 127).to(torch.int8).reshape(values.shape), _SCALE_SUFFIX: scale}
    if dtype == "codebook4":
        codebook = kmeans_codebook(flat)
        return {_CODES_SUFFIX: _pack_nibbles(_nearest(flat, codebook)), _CODEBOOK_SUFFIX: codebook}
    raise CheckpointError(f"unknown quantised dtype {dtype!r}; choose from {', '.join(QUANTISED_DTYPES)}")


def dequantise(stored: dict[str, torch.Tensor], channels: torch.Tensor, count: int, dtype: str) -> torch.Tensor:
    """The fp32 values (flat, ``count`` of them) that ``quantise`` stored as ``stored`` (suffix -> tensor)."""
    if dtype == "int8":
        return stored[""].reshape(-1).float() * stored[_SCALE_SUFFIX].float()[channels]
    return stored[_CODEBOOK_SUFFIX].float()[_unpack_nibbles(stored[_CODES_SUFFIX], count)]


def check_storage(encoding: str, dtype: str) -> None:
    """Raise CheckpointError unless ``encoding`` and ``dtype`` are known and go together (before any work)."""
    if encoding not in ENCODINGS:
        raise CheckpointError(f"unknown encoding {encoding!r}; choose from {', '.join(ENCODINGS)}")
    if dtype not in STORED_DTYPES:
        raise CheckpointError(f"unknown dtype {dtype!r}; choose from {', '.join(STORED_DTYPES)}")
    if dtype in QUANTISED_DTYPES and encoding != "packed":
        raise CheckpointError(
            f"dtype {dtype} needs the packed encoding (the dense encoding keeps float tensors that plain-weight readers load)"
        )


def _output_channels(shape: list[int], flat_positions: torch.Tensor | None) -> torch.Tensor:
    """The output channel of each stored value: of every weight, or of those at ``flat_positions``."""
    per_channel = math.prod(shape[1:])
    if flat_positions is None:
        return torch.arange(shape[0]).repeat_interleave(per_channel)
    return flat_positions // per_channel


def _relative_error(decoded: torch.Tensor, original: torch.Tensor) -> float:
    norm = float(original.double().norm())
    return float((decoded.double() - original.double()).norm()) / norm if norm > 0 else 0.0


def checkpoint_tensors(model: VGGFeatures, encoding: str, dtype: str) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors to store and facts the header needs (``masks_from_zeros`` for dense; ``positions``
    and, for quantised dtypes, each conv's relative reconstruction error ``quantisation``)."""
    check_storage(encoding, dtype)
    _check_masks(model)
    quantised = dtype in QUANTISED_DTYPES
    torch_dtype = torch.float32 if quantised else DTYPES[dtype]
    tensors: dict[str, torch.Tensor] = {}
    masks_from_zeros = True
    positions: dict[str, str] = {}
    errors: dict[str, float] = {}
    for name in model.conv_names:
        conv = model.conv(name)
        wkey = _weight_key(name)
        weight = conv.weight.detach().cpu().float()
        shape = list(weight.shape)
        mask = model.masks.get(name)
        tensors[_bias_key(name)] = conv.bias.detach().cpu().to(torch_dtype).contiguous()
        if mask is not None:
            mask = mask.cpu()
            # The masked-out weights must be zero, or the file would not be the network.
            weight = torch.where(mask, weight, torch.zeros(()))
        packed = encoding == "packed" and mask is not None
        if packed:
            positions[name], tensors[wkey + (_MASK_SUFFIX if positions[name] == "bitmap" else _GAPS_SUFFIX)] = (
                encode_positions(mask)
            )
        stored = weight[mask] if packed else weight  # the kept values in flat order, or every weight
        if quantised:
            flat_positions = mask.reshape(-1).nonzero().reshape(-1) if packed else None
            channels = _output_channels(shape, flat_positions)
            parts = quantise(stored, channels, shape[0], dtype)
            values_key = wkey + _VALUES_SUFFIX if packed else wkey
            for suffix, tensor in parts.items():
                # int8 values take the float values' key; scale, codes and codebook hang off the weight's key.
                tensors[values_key if suffix == "" else wkey + suffix] = tensor.contiguous()
            errors[name] = round(
                _relative_error(dequantise(parts, channels, stored.numel(), dtype), stored.reshape(-1)), 8
            )
            continue
        stored = stored.to(torch_dtype).contiguous()
        tensors[wkey + _VALUES_SUFFIX if packed else wkey] = stored
        # Dense files rebuild masks as "weight != 0"; only if a kept weight is zero in this
        # dtype (rare: fp16 underflow) must the masks be stored explicitly.
        if not packed and mask is not None and not torch.equal(stored != 0, mask):
            masks_from_zeros = False
    if encoding == "dense" and not masks_from_zeros:
        for name, mask in model.masks.items():
            tensors[_weight_key(name) + _MASK_SUFFIX] = _pack_mask(mask)
    for name, kept in model.kept_channels.items():
        tensors[_KEPT_PREFIX + name] = kept.detach().cpu().to(torch.int64).contiguous()
    facts = {"masks_from_zeros": masks_from_zeros, "positions": positions}
    if quantised:
        facts["quantisation"] = {
            "dtype": dtype,
            "relative_error": errors,
            "measure": "|w - decoded| / |w| over the stored weights of each conv",
        }
    return tensors, facts


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over keys, dtypes, shapes and raw bytes, in key order."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        digest.update(f"{key}|{t.dtype}|{list(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def checkpoint_metadata(
    model: VGGFeatures, encoding: str, dtype: str, tensors: dict[str, torch.Tensor], facts: dict, metrics: dict | None
) -> dict[str, str]:
    """The header: every value a string, JSON where it is structured."""
    table = layer_sparsity(model)
    total = sum(row["weights"] for row in table.values())
    kept = sum(row["kept"] for row in table.values())
    meta = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "written_by": f"nst_core {__version__}",
        "encoding": encoding,
        "dtype": dtype,
        "arch": "vgg19",
        "last_layer": model.last_layer,
        "pooling": model.pooling,
        "widths": json.dumps(model.widths),
        "weight_source": model.weight_source,
        # weights.load_vgg reads this key too (a name or a JSON dict), so dense files double as weights.
        "preprocessing": json.dumps(model.preprocessing.to_dict()),
        "pruning_method": _pruning_method(model),
        "sparsity": json.dumps({name: row["sparsity"] for name, row in table.items()}),
        "conv_weights": str(total),
        "conv_weights_kept": str(kept),
        "masks": "none"
        if not model.masks
        else ("packed" if encoding == "packed" else ("from_zeros" if facts["masks_from_zeros"] else "stored")),
        "masked_layers": json.dumps([n for n in model.conv_names if n in model.masks]),
        "structured": json.dumps(sorted(model.kept_channels, key=layer_index)),
        "provenance": json.dumps(model.provenance, default=str),
        "tensors_sha256": tensors_digest(tensors),
    }
    if facts.get("positions"):
        meta["positions"] = json.dumps(facts["positions"])
    if "quantisation" in facts:
        meta["quantisation"] = json.dumps(facts["quantisation"])
    if metrics:
        meta["metrics"] = json.dumps(metrics, default=float)
    return meta


def _canonical_header(data: bytes) -> bytes:
    """``data`` (a safetensors file) with its JSON header's keys sorted.

    safetensors writes ``__metadata__`` from a hash map whose order changes from process to
    process; sorted keys make the same network save to the same bytes in any process (a rerun of
    ``nst release`` must reproduce its files). Offsets are relative to the data, so only the
    header moves; it stays padded with spaces to a multiple of 8 bytes, as safetensors pads it.
    """
    (length,) = struct.unpack("<Q", data[:8])
    header = json.dumps(json.loads(data[8 : 8 + length]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data[8 + length :]


def _serialize(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Iterator[bytes]:
    """The file's bytes in chunks (so an interrupted write leaves a partial temp file, never a target)."""
    data = _canonical_header(safetensors.torch.save(tensors, metadata=metadata))
    for start in range(0, len(data), _CHUNK_BYTES):
        yield data[start : start + _CHUNK_BYTES]


def atomic_write(path: Path, chunks: Iterable[bytes]) -> Path:
    """Write ``chunks`` to a temp file beside ``path``, fsync, then ``os.replace`` it into place.

    Any failure (including KeyboardInterrupt) removes the temp file and leaves ``path`` as it was.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
    return path


def save_checkpoint(
    model: VGGFeatures,
    path: str | os.PathLike,
    encoding: str = "packed",
    dtype: str = "fp16",
    metrics: dict | None = None,
) -> Path:
    """Save ``model`` (dense, fine-grained and/or structured pruned) as a safetensors checkpoint.

    ``encoding``: "packed" (positions + kept values; for fine-grained sparsity) or "dense".
    ``dtype``: "fp16", "bf16" or "fp32" for the stored weights, or (packed only) "int8" or
    "codebook4" to quantise them (see the module docstring). ``metrics``: judged quality
    numbers (e.g. ``{"content_ratio": 1.02, "style_ratio": 1.1, "ssim": 0.93}``) for the header.

    >>> save_checkpoint(pruned, "seed.safetensors", encoding="packed", dtype="fp16")  # doctest: +SKIP
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: checkpoint files must end in .safetensors")
    tensors, facts = checkpoint_tensors(model, encoding, dtype)
    metadata = checkpoint_metadata(model, encoding, dtype, tensors, facts, metrics)
    return atomic_write(path, _serialize(tensors, metadata))


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _read_header_json(path: Path) -> tuple[dict, dict[str, str], int]:
    """(tensor entries, metadata, data start offset) as the file states them; only their JSON shape is checked."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > _MAX_HEADER_BYTES or 8 + header_len > size:
            if header_len <= _MAX_HEADER_BYTES and fh.read(1) == b"{":
                raise CheckpointError(f"{path}: truncated: the header says {header_len} bytes, the file has {size - 8}")
            raise CheckpointError(f"{path}: not a safetensors file (bad header length)")
        raw = fh.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file or corrupt header ({cut(first_line(exc))})") from None
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: corrupt header: __metadata__ must map strings to strings")
    return header, metadata, 8 + header_len


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict, dict[str, str], int]:
    """(tensor entries, metadata, data start offset), validated against the file's size.

    Every entry has a dtype, a shape of non-negative ints and ``data_offsets`` that are ints, in
    order, back to back and inside the file, with as many bytes as dtype and shape need (the rules
    safetensors itself enforces, checked here first so a bad file gets a one-line error).
    Raises CheckpointError for a missing, non-safetensors, truncated or malformed file.
    """
    header, metadata, data_start = _read_header_json(Path(path))
    _check_data_offsets(Path(path), header, Path(path).stat().st_size - data_start)
    return header, metadata, data_start


def _check_data_offsets(path: Path, header: dict, data_len: int) -> None:
    """Each tensor entry well-formed; together they tile the data section exactly."""
    spans = []
    for key, entry in header.items():
        where = f"{path}: corrupt header: tensor {shown(key)}"
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where} is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str):
            raise CheckpointError(f"{where} has no dtype")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise CheckpointError(f"{where}: shape {shown(shape)} is not a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
            raise CheckpointError(f"{where} has no data_offsets (two non-negative integers), found {shown(offsets)}")
        begin, stop = offsets
        if stop < begin:
            raise CheckpointError(f"{where}: data_offsets {offsets} end before they begin")
        itemsize = _SAFETENSORS_ITEMSIZE.get(dtype)
        if itemsize is not None and math.prod(shape) * itemsize != stop - begin:
            raise CheckpointError(
                f"{where}: {dtype} {shape} needs {math.prod(shape) * itemsize} bytes, data_offsets give {stop - begin}"
            )
        spans.append((begin, stop, key))
    position = 0
    for begin, stop, key in sorted(spans):
        if begin != position:
            raise CheckpointError(
                f"{path}: corrupt header: tensor {shown(key)} starts at byte {begin}, expected {position} "
                "(tensors overlap or leave a gap)"
            )
        position = stop
    if position > data_len:
        raise CheckpointError(f"{path}: truncated: tensor data needs {position} bytes, the file has {data_len}")
    if position < data_len:
        raise CheckpointError(f"{path}: corrupt: {data_len - position} bytes after the last tensor")


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_ours(path: Path, metadata: dict[str, str]) -> None:
    if metadata.get("format") != FORMAT_NAME:
        found = metadata.get("format")
        what = f"format {shown(found)}" if found else "no 'format' in its header"
        raise CheckpointError(
            f"{path}: not an nst checkpoint ({what}); plain VGG-19 weights load with --weights {path}"
        )
    version = metadata.get("format_version", "")
    if not re.fullmatch(r"[0-9]{1,6}", version):
        raise CheckpointError(f"{path}: header field 'format_version' is {shown(version)}, expected a number")
    if int(version) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {version} is newer than this nst_core reads ({FORMAT_VERSION}); upgrade nst_core"
        )


def parse_preprocessing(raw: str, where: str, error: type[UserError] = CheckpointError) -> Preprocessing:
    """A header's ``preprocessing`` entry (a known name or ``Preprocessing.to_dict()`` as JSON), checked.

    Checkpoints and plain weight files store it the same way; ``where`` names the file in errors.
    """
    if raw in PREPROCESSINGS:
        return PREPROCESSINGS[raw]
    fields = Fields(parse_json(raw, f"{where}: field 'preprocessing'", error), where, error, prefix="preprocessing.")
    name = fields.string("name")
    return Preprocessing(
        cut(name, 40),
        fields.boolean("bgr"),
        fields.number("scale", positive=True),
        tuple(fields.numbers("mean", length=3)),
        # A std of 0 divides by zero: every input becomes inf and the optimisation "diverges".
        tuple(fields.numbers("std", length=3, positive=True)),
    )


@dataclass
class _Header:
    """A checkpoint header that passed the schema: everything a loader may allocate is bounded by it."""

    entries: dict
    metadata: dict[str, str]
    data_start: int
    encoding: str
    dtype: str
    last_layer: str
    pooling: str
    widths: dict[str, int]
    preprocessing: Preprocessing
    masked: list[str]
    structured: list[str]
    masks: str
    positions: dict[str, str]  # per masked conv of a packed file: one of POSITION_ENCODINGS
    decoded: dict  # the JSON fields, decoded (for read_checkpoint_info)


def _read_header(path: Path) -> _Header:
    """The header of an nst checkpoint, checked field by field (``_check_tensor_table`` checks its tensors)."""
    entries, metadata, data_start = read_safetensors_header(path)
    _check_ours(path, metadata)
    fields = Fields(metadata, str(path), CheckpointError)
    if fields.has("arch"):
        fields.string("arch", ("vgg19",))
    encoding = fields.string("encoding", ENCODINGS)
    dtype = fields.string("dtype", STORED_DTYPES)
    if dtype in QUANTISED_DTYPES and encoding != "packed":
        fields.fail("dtype", f"is {dtype}, which only the packed encoding stores")
    last_layer = fields.string("last_layer", LAYER_NAMES)
    pooling = fields.string("pooling", POOLINGS)
    convs = convs_up_to(last_layer)
    widths = _widths(fields, convs)
    preprocessing = parse_preprocessing(fields.string("preprocessing"), str(path))
    decoded = {
        "widths": widths,
        "preprocessing": preprocessing.to_dict(),
        "sparsity": _sparsity(fields, convs),
        "masked_layers": _conv_list(fields, "masked_layers", convs),
        "structured": _conv_list(fields, "structured", convs),
        "provenance": _json_object(fields, "provenance"),
    }
    if fields.has("metrics"):
        decoded["metrics"] = _json_object(fields, "metrics")
    if fields.has("quantisation"):
        decoded["quantisation"] = _json_object(fields, "quantisation")
    packed_masked = decoded["masked_layers"] if encoding == "packed" else []
    decoded["positions"] = _positions(fields, packed_masked)
    for key in ("conv_weights", "conv_weights_kept"):
        if fields.has(key):
            text = fields.string(key)
            if not re.fullmatch(r"[0-9]{1,12}", text):
                fields.fail(key, f"is {shown(text)}, expected a count")
            decoded[key] = int(text)
    header = _Header(
        entries,
        metadata,
        data_start,
        encoding,
        dtype,
        last_layer,
        pooling,
        widths,
        preprocessing,
        decoded["masked_layers"],
        decoded["structured"],
        fields.string("masks", ("none", "packed", "from_zeros", "stored"), default="none"),
        decoded["positions"],
        decoded,
    )
    return header


def _widths(fields: Fields, convs: list[str]) -> dict[str, int]:
    """Each conv's width: an int from 1 to the dense VGG-19's, for exactly the convs up to last_layer."""
    widths = Fields(fields.json_text("widths"), fields.where, CheckpointError, prefix="widths.")
    extra = sorted(set(widths.data) - set(convs), key=str)
    if extra:
        fields.fail("widths", f"names {shown(extra)}, which a network up to {convs[-1]} does not have")
    return {name: widths.integer(name, 1, DENSE_WIDTHS[name]) for name in convs}


def _positions(fields: Fields, packed_masked: list[str]) -> dict[str, str]:
    """How each masked conv of a packed file stores its positions: exactly those convs (bitmaps when absent: version 1)."""
    if not fields.has("positions"):
        return {name: "bitmap" for name in packed_masked}
    positions = Fields(fields.json_text("positions"), fields.where, CheckpointError, prefix="positions.")
    extra = sorted(set(positions.data) - set(packed_masked), key=str)
    if extra:
        fields.fail("positions", f"names {shown(extra)}, which are not masked convs of this packed file")
    return {name: positions.string(name, POSITION_ENCODINGS) for name in packed_masked}


def _sparsity(fields: Fields, convs: list[str]) -> dict[str, float]:
    sparsity = Fields(fields.json_text("sparsity", {}), fields.where, CheckpointError, prefix="sparsity.")
    extra = sorted(set(sparsity.data) - set(convs), key=str)
    if extra:
        fields.fail("sparsity", f"names {shown(extra)}, which this network does not have")
    return {name: sparsity.number(name, 0.0, 1.0) for name in convs if sparsity.has(name)}


def _conv_list(fields: Fields, key: str, convs: list[str]) -> list[str]:
    return Fields({key: fields.json_text(key, [])}, fields.where, CheckpointError).names(key, convs)


def _json_object(fields: Fields, key: str) -> dict:
    value = fields.json_text(key, {})
    if not isinstance(value, dict):
        fields.fail(key, f"must be a JSON object, not {type(value).__name__}")
    return value


def _check_tensor_table(path: Path, header: _Header) -> None:
    """Every tensor the widths call for, with the header's dtype and the widths' shapes, and nothing else."""
    quantised = header.dtype in QUANTISED_DTYPES
    stored = "F32" if quantised else _SAFETENSORS_DTYPE[header.dtype]
    expected: dict[str, tuple[str, list[int] | int]] = {}  # key -> (dtype, shape, or the most values allowed)
    in_channels = 3
    for name, width in header.widths.items():
        shape = [width, in_channels, 3, 3]
        count = math.prod(shape)
        wkey = _weight_key(name)
        expected[_bias_key(name)] = (stored, [width])
        packed = header.encoding == "packed" and name in header.masked
        if packed:
            kind = header.positions[name]
            if kind == "bitmap":
                expected[wkey + _MASK_SUFFIX] = ("U8", [(count + 7) // 8])
            else:  # at most one entry per weight, plus the padding of the last byte
                expected[wkey + _GAPS_SUFFIX] = ("U8", ((count + 8) * int(kind[4:]) + 7) // 8)
        elif name in header.masked and header.masks == "stored":
            expected[wkey + _MASK_SUFFIX] = ("U8", [(count + 7) // 8])
        values_key = wkey + _VALUES_SUFFIX if packed else wkey
        if header.dtype == "codebook4":
            expected[wkey + _CODES_SUFFIX] = ("U8", (count + 1) // 2 if packed else [(count + 1) // 2])
            expected[wkey + _CODEBOOK_SUFFIX] = ("F32", [CODEBOOK_SIZE])
        else:
            expected[values_key] = ("I8" if header.dtype == "int8" else stored, count if packed else shape)
            if header.dtype == "int8":
                expected[wkey + _SCALE_SUFFIX] = ("F32", [width])
        in_channels = width
    for name in header.structured:
        expected[_KEPT_PREFIX + name] = ("I64", [header.widths[name]])
    for key, (dtype, shape) in expected.items():
        if key not in header.entries:
            raise CheckpointError(f"{path}: missing tensor {key!r}")
        entry = header.entries[key]
        if entry["dtype"] != dtype:
            raise CheckpointError(f"{path}: tensor {key!r} has dtype {shown(entry['dtype'])}, the header says {dtype}")
        if isinstance(shape, int):
            if len(entry["shape"]) != 1 or entry["shape"][0] > shape:
                raise CheckpointError(
                    f"{path}: tensor {key!r} has shape {shown(entry['shape'])}, expected at most {shape} values"
                )
        elif entry["shape"] != shape:
            raise CheckpointError(
                f"{path}: tensor {key!r} has shape {shown(entry['shape'])}, expected {shape} from the header's widths"
            )
    extra = sorted(set(header.entries) - set(expected))
    if extra:
        raise CheckpointError(f"{path}: unexpected tensors {shown(extra[:4])} (not described by the header)")


def read_checkpoint_info(path: str | os.PathLike) -> dict:
    """Header of a checkpoint without loading tensors: metadata (JSON fields decoded) and sizes.

    >>> read_checkpoint_info("seed.safetensors")["sparsity"]["conv1_2"]  # doctest: +SKIP
    0.9
    """
    path = Path(path)
    header = _read_header(path)
    info: dict = dict(header.metadata)
    info.update(header.decoded)
    info["format_version"] = int(header.metadata["format_version"])
    info["file_bytes"] = path.stat().st_size
    info["header_bytes"] = header.data_start
    info["tensors"] = {key: {"dtype": e["dtype"], "shape": e["shape"]} for key, e in header.entries.items()}
    return info


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError for every malformed file
        raise CheckpointError(f"{path}: corrupt safetensors data ({exc})") from None


def _take(tensors: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    # Dtypes and shapes were checked against the header's table before loading.
    return tensors.pop(key)


def _unpack_mask(bits: torch.Tensor, shape: list[int]) -> torch.Tensor:
    mask = np.unpackbits(bits.numpy(), count=math.prod(shape)).astype(bool)
    return torch.from_numpy(mask).reshape(shape)


def _decode_conv(
    path: Path, tensors: dict[str, torch.Tensor], header: _Header, name: str, shape: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(fp32 weight, fp32 bias, mask or None) of one conv, taken out of ``tensors``."""
    wkey = _weight_key(name)
    masked = name in header.masked
    bias = _take(tensors, _bias_key(name)).float()
    packed = header.encoding == "packed" and masked
    mask = None
    if packed:
        kind = header.positions[name]
        data = _take(tensors, wkey + (_MASK_SUFFIX if kind == "bitmap" else _GAPS_SUFFIX))
        mask = decode_positions(kind, data, shape, f"{path}: {wkey}")
    kept = int(mask.sum()) if packed else math.prod(shape)
    values = _stored_values(path, tensors, header, wkey + _VALUES_SUFFIX if packed else wkey, wkey, kept, shape, mask)
    if packed:
        weight = torch.zeros(shape, dtype=torch.float32)
        weight[mask] = values
        return weight, bias, mask
    weight = values.reshape(shape)
    if not masked:
        return weight, bias, None
    if header.masks == "stored":
        return weight, bias, _unpack_mask(_take(tensors, wkey + _MASK_SUFFIX), shape)
    return weight, bias, weight != 0


def _stored_values(
    path: Path,
    tensors: dict[str, torch.Tensor],
    header: _Header,
    values_key: str,
    wkey: str,
    kept: int,
    shape: list[int],
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """The ``kept`` stored weights of one conv as fp32, flat (decoded if quantised), taken out of ``tensors``."""
    if header.dtype not in QUANTISED_DTYPES:
        values = _take(tensors, values_key).float().reshape(-1)
        stored_key = values_key
    elif header.dtype == "int8":
        values = _take(tensors, values_key)
        stored = {"": values, _SCALE_SUFFIX: _take(tensors, wkey + _SCALE_SUFFIX)}
        stored_key = values_key
    else:
        values = _take(tensors, wkey + _CODES_SUFFIX)
        stored = {_CODES_SUFFIX: values, _CODEBOOK_SUFFIX: _take(tensors, wkey + _CODEBOOK_SUFFIX)}
        stored_key = wkey + _CODES_SUFFIX
    have = values.numel() * 2 if header.dtype == "codebook4" else values.numel()
    if have not in (kept, kept + (header.dtype == "codebook4")):
        what = f"{values.numel()} bytes of 4-bit codes" if header.dtype == "codebook4" else f"{values.numel()} values"
        raise CheckpointError(f"{path}: {stored_key!r} holds {what}, its positions keep {kept} weights")
    if header.dtype not in QUANTISED_DTYPES:
        return values
    flat_positions = mask.reshape(-1).nonzero().reshape(-1) if mask is not None else None
    return dequantise(stored, _output_channels(shape, flat_positions), kept, header.dtype)


def _kept_channels(path: Path, tensors: dict[str, torch.Tensor], header: _Header) -> dict[str, torch.Tensor]:
    """Per structured-pruned conv, the teacher channels it kept (distinct, within the dense width)."""
    kept_channels = {}
    for name in header.structured:
        kept = _take(tensors, _KEPT_PREFIX + name)
        if kept.numel() and (
            int(kept.min()) < 0 or int(kept.max()) >= DENSE_WIDTHS[name] or kept.unique().numel() != kept.numel()
        ):
            raise CheckpointError(
                f"{path}: tensor {_KEPT_PREFIX + name!r} must hold distinct channels in [0, {DENSE_WIDTHS[name]})"
            )
        kept_channels[name] = kept
    return kept_channels


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> VGGFeatures:
    """A frozen ``VGGFeatures`` rebuilt from a checkpoint: weights (as fp32), masks, kept channels, provenance.

    The whole header is checked (widths bounded by the dense VGG-19's, every tensor's dtype,
    shape and offsets) before the network or any tensor is allocated.

    >>> model = load_checkpoint("seed.safetensors")  # doctest: +SKIP
    >>> model.masks["conv1_2"].float().mean()  # doctest: +SKIP
    tensor(0.1000)
    """
    target = resolve_device(device)  # a missing GPU is reported before the file is read
    path = Path(path)
    header = _read_header(path)
    _check_tensor_table(path, header)
    expected = Fields(header.metadata, str(path), CheckpointError).string("tensors_sha256", default="")
    model = VGGFeatures(
        header.last_layer, widths=header.widths, pooling=header.pooling, preprocessing=header.preprocessing
    )

    tensors = _load_tensors(path)
    if tensors_digest(tensors) != expected:
        raise CheckpointError(f"{path}: corrupt: tensor data does not match the header's tensors_sha256")

    state: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    for name in model.conv_names:
        shape = list(model.conv(name).weight.shape)
        state[_weight_key(name)], state[_bias_key(name)], mask = _decode_conv(path, tensors, header, name, shape)
        if mask is not None:
            masks[name] = mask
    model.kept_channels = _kept_channels(path, tensors, header)
    model.load_state_dict(state)
    model.masks = masks
    model.weight_source = header.metadata.get("weight_source", "unset")
    model.provenance = header.decoded["provenance"]
    return freeze(model.to(target))


def is_checkpoint(path: str | os.PathLike) -> bool:
    """True when ``path`` is a safetensors file written by ``save_checkpoint`` (header only)."""
    try:
        # What the header claims decides: a broken nst checkpoint then gets the checkpoint loader's errors.
        _, metadata, _ = _read_header_json(Path(path))
    except CheckpointError:
        return False
    return metadata.get("format") == FORMAT_NAME


__all__ = [
    "CODEBOOK_SIZE",
    "CheckpointError",
    "DTYPES",
    "ENCODINGS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "POSITION_ENCODINGS",
    "QUANTISED_DTYPES",
    "STORED_DTYPES",
    "atomic_write",
    "check_storage",
    "decode_positions",
    "dequantise",
    "encode_positions",
    "is_checkpoint",
    "kmeans_codebook",
    "layer_sparsity",
    "load_checkpoint",
    "parse_preprocessing",
    "quantise",
    "read_checkpoint_info",
    "save_checkpoint",
]
