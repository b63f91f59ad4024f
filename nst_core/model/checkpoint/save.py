"""Writing a checkpoint: a network's tensors in the chosen encoding and dtype, its header, one atomic write.

The same network saves to the same bytes in any process (the header's keys are sorted), so a
rerun of ``nst release`` reproduces its files.

>>> save_checkpoint(pruned, "seed.safetensors", encoding="packed", dtype="fp16")  # doctest: +SKIP
PosixPath('seed.safetensors')
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import safetensors.torch
import torch
from torch import nn

from nst_core import __version__
from nst_core.core.files import atomic_path
from nst_core.model.checkpoint.format import (
    DTYPES,
    FORMAT_NAME,
    FORMAT_VERSION,
    GAPS_SUFFIX,
    KEPT_PREFIX,
    MASK_SUFFIX,
    QUANTISED_DTYPES,
    VALUES_SUFFIX,
    CheckpointError,
    bias_key,
    check_storage,
    tensors_digest,
    weight_key,
)
from nst_core.model.checkpoint.positions import encode_positions, pack_mask
from nst_core.model.checkpoint.quantise import dequantise, output_channels, quantise, relative_error
from nst_core.model.layers import Preprocessing, layer_index

_CHUNK_BYTES = 1 << 20


class SavableNetwork(Protocol):
    """What saving reads of a network: ``nst_core.model.vgg.VGGFeatures`` has all of it.

    Typed by what it reads, so the format never imports the network class (the network's own
    ``load_checkpoint`` builds one from what ``read_checkpoint`` returns).
    """

    arch: str  # a key of nst_core.model.layers.ARCHITECTURES
    last_layer: str
    pooling: str
    preprocessing: Preprocessing
    widths: dict[str, int]
    masks: dict[str, torch.Tensor]
    kept_channels: dict[str, torch.Tensor]
    weight_source: str
    provenance: dict

    @property
    def conv_names(self) -> list[str]: ...

    def conv(self, name: str) -> nn.Conv2d: ...


def layer_sparsity(model: SavableNetwork) -> dict[str, dict]:
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


def _pruning_method(model: SavableNetwork) -> str:
    if "method" in model.provenance:
        return str(model.provenance["method"])
    if model.masks and model.kept_channels:
        return "structured+fine"
    if model.masks:
        return "fine"
    if model.kept_channels:
        return "structured"
    return "none"


def _check_masks(model: SavableNetwork) -> None:
    for name, mask in model.masks.items():
        if name not in model.widths:
            raise CheckpointError(f"mask for {name} but the network ends at {model.last_layer}")
        weight = model.conv(name).weight
        if mask.dtype != torch.bool or tuple(mask.shape) != tuple(weight.shape):
            raise CheckpointError(
                f"mask for {name} must be a bool tensor of shape {list(weight.shape)}, "
                f"got {mask.dtype} {list(mask.shape)}"
            )


def checkpoint_tensors(model: SavableNetwork, encoding: str, dtype: str) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors to store and facts the header needs (``masks_from_zeros`` for dense; ``positions``
    and, for quantised dtypes, each conv's relative reconstruction error ``quantisation``)."""
    check_storage(encoding, dtype)
    _check_masks(model)
    tensors: dict[str, torch.Tensor] = {}
    masks_from_zeros = True
    positions: dict[str, str] = {}
    errors: dict[str, float] = {}
    for name in model.conv_names:
        zeros_are_the_mask = _store_conv(model, name, encoding, dtype, tensors, positions, errors)
        masks_from_zeros = masks_from_zeros and zeros_are_the_mask
    if encoding == "dense" and not masks_from_zeros:
        for name, mask in model.masks.items():
            tensors[weight_key(name, model.arch) + MASK_SUFFIX] = pack_mask(mask)
    for name, kept in model.kept_channels.items():
        tensors[KEPT_PREFIX + name] = kept.detach().cpu().to(torch.int64).contiguous()
    facts: dict = {"masks_from_zeros": masks_from_zeros, "positions": positions}
    if dtype in QUANTISED_DTYPES:
        facts["quantisation"] = {
            "dtype": dtype,
            "relative_error": errors,
            "measure": "|w - decoded| / |w| over the stored weights of each conv",
        }
    return tensors, facts


def _store_conv(
    model: SavableNetwork,
    name: str,
    encoding: str,
    dtype: str,
    tensors: dict[str, torch.Tensor],
    positions: dict[str, str],
    errors: dict[str, float],
) -> bool:
    """Add one conv's tensors to ``tensors`` (and its position encoding or quantisation error to
    ``positions`` / ``errors``). False when a dense file cannot rebuild its mask as ``weight != 0``."""
    quantised = dtype in QUANTISED_DTYPES
    torch_dtype = torch.float32 if quantised else DTYPES[dtype]
    conv = model.conv(name)
    wkey = weight_key(name, model.arch)
    weight = conv.weight.detach().cpu().float()
    shape = list(weight.shape)
    mask = model.masks.get(name)
    assert conv.bias is not None  # every VGG conv has a bias
    tensors[bias_key(name, model.arch)] = conv.bias.detach().cpu().to(torch_dtype).contiguous()
    if mask is not None:
        mask = mask.cpu()
        # The masked-out weights must be zero, or the file would not be the network.
        weight = torch.where(mask, weight, torch.zeros(()))
    packed = encoding == "packed" and mask is not None
    if packed:
        assert mask is not None  # packed implies a mask
        positions[name], tensors[wkey + (MASK_SUFFIX if positions[name] == "bitmap" else GAPS_SUFFIX)] = (
            encode_positions(mask)
        )
    stored = weight[mask] if packed else weight  # the kept values in flat order, or every weight
    values_key = wkey + VALUES_SUFFIX if packed else wkey
    if quantised:
        flat_positions = mask.reshape(-1).nonzero().reshape(-1) if packed and mask is not None else None
        channels = output_channels(shape, flat_positions)
        parts = quantise(stored, channels, shape[0], dtype)
        for suffix, tensor in parts.items():
            # int8 values take the float values' key; scale, codes and codebook hang off the weight's key.
            tensors[values_key if suffix == "" else wkey + suffix] = tensor.contiguous()
        errors[name] = round(relative_error(dequantise(parts, channels, stored.numel(), dtype), stored.reshape(-1)), 8)
        return True
    stored = stored.to(torch_dtype).contiguous()
    tensors[values_key] = stored
    # Dense files rebuild masks as "weight != 0"; only if a kept weight is zero in this
    # dtype (rare: fp16 underflow) must the masks be stored explicitly.
    return packed or mask is None or torch.equal(stored != 0, mask)


def checkpoint_metadata(
    model: SavableNetwork,
    encoding: str,
    dtype: str,
    tensors: dict[str, torch.Tensor],
    facts: dict,
    metrics: dict | None,
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
        "arch": model.arch,
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
        "structured": json.dumps(sorted(model.kept_channels, key=lambda name: layer_index(name, model.arch))),
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
    model: SavableNetwork,
    path: str | os.PathLike,
    encoding: str = "packed",
    dtype: str = "fp16",
    metrics: dict | None = None,
) -> Path:
    """Save ``model`` (dense, fine-grained and/or structured pruned) as a safetensors checkpoint.

    ``encoding``: "packed" (positions + kept values; for fine-grained sparsity) or "dense".
    ``dtype``: "fp16", "bf16" or "fp32" for the stored weights, or (packed only) "int8" or
    "codebook4" to quantise them (see ``nst_core.model.checkpoint.format``). ``metrics``: judged quality
    numbers (e.g. ``{"content_ratio": 1.02, "style_ratio": 1.1, "ssim": 0.93}``) for the header.

    >>> save_checkpoint(pruned, "seed.safetensors", encoding="packed", dtype="fp16")  # doctest: +SKIP
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: checkpoint files must end in .safetensors")
    tensors, facts = checkpoint_tensors(model, encoding, dtype)
    metadata = checkpoint_metadata(model, encoding, dtype, tensors, facts, metrics)
    return atomic_write(path, _serialize(tensors, metadata))
