"""Reading a checkpoint: its header and tensor table checked, its data hashed, every conv decoded to fp32.

The reader returns plain contents (``CheckpointContents``), never a network: the network module
(``nst_core.model.vgg``) builds one from them with its ``load_checkpoint``, so the format never
imports the network class.

>>> contents = read_checkpoint("seed.safetensors")  # doctest: +SKIP
>>> contents.masks["conv1_2"].float().mean()  # doctest: +SKIP
tensor(0.1000)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch

from nst_core.core.validation import Fields
from nst_core.model.checkpoint.format import (
    CODEBOOK_SUFFIX,
    CODES_SUFFIX,
    GAPS_SUFFIX,
    KEPT_PREFIX,
    MASK_SUFFIX,
    QUANTISED_DTYPES,
    SCALE_SUFFIX,
    VALUES_SUFFIX,
    CheckpointError,
    bias_key,
    tensors_digest,
    weight_key,
)
from nst_core.model.checkpoint.header import CheckpointHeader, check_tensor_table, read_header
from nst_core.model.checkpoint.positions import decode_positions, unpack_mask
from nst_core.model.checkpoint.quantise import dequantise, output_channels
from nst_core.model.layers import Preprocessing, get_architecture


@dataclass
class CheckpointContents:
    """What a checkpoint holds, decoded: the network's shape, its fp32 weights, and what pruning recorded."""

    last_layer: str
    widths: dict[str, int]  # every conv up to last_layer, in order
    pooling: str
    preprocessing: Preprocessing
    state_dict: dict[str, torch.Tensor]  # features.N.weight / features.N.bias, fp32
    masks: dict[str, torch.Tensor]  # per fine-grained pruned conv: bool, True = weight kept
    kept_channels: dict[str, torch.Tensor]  # per structured pruned conv: the teacher channels it kept
    weight_source: str
    provenance: dict
    arch: str = "vgg19"  # a key of nst_core.model.layers.ARCHITECTURES


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError for every malformed file
        raise CheckpointError(f"{path}: corrupt safetensors data ({exc})") from None


def _take(tensors: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    # Dtypes and shapes were checked against the header's table before loading.
    return tensors.pop(key)


def _decode_conv(
    path: Path, tensors: dict[str, torch.Tensor], header: CheckpointHeader, name: str, shape: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(fp32 weight, fp32 bias, mask or None) of one conv, taken out of ``tensors``."""
    wkey = weight_key(name, header.arch)
    masked = name in header.masked
    bias = _take(tensors, bias_key(name, header.arch)).float()
    packed = header.encoding == "packed" and masked
    mask = None
    if packed:
        kind = header.positions[name]
        data = _take(tensors, wkey + (MASK_SUFFIX if kind == "bitmap" else GAPS_SUFFIX))
        mask = decode_positions(kind, data, shape, f"{path}: {wkey}")
    kept = int(mask.sum()) if mask is not None else math.prod(shape)  # a mask is decoded iff packed
    values = _stored_values(path, tensors, header, wkey + VALUES_SUFFIX if packed else wkey, wkey, kept, shape, mask)
    if packed:
        weight = torch.zeros(shape, dtype=torch.float32)
        weight[mask] = values
        return weight, bias, mask
    weight = values.reshape(shape)
    if not masked:
        return weight, bias, None
    if header.masks == "stored":
        return weight, bias, unpack_mask(_take(tensors, wkey + MASK_SUFFIX), shape)
    return weight, bias, weight != 0


def _stored_values(
    path: Path,
    tensors: dict[str, torch.Tensor],
    header: CheckpointHeader,
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
        stored = {"": values, SCALE_SUFFIX: _take(tensors, wkey + SCALE_SUFFIX)}
        stored_key = values_key
    else:
        values = _take(tensors, wkey + CODES_SUFFIX)
        stored = {CODES_SUFFIX: values, CODEBOOK_SUFFIX: _take(tensors, wkey + CODEBOOK_SUFFIX)}
        stored_key = wkey + CODES_SUFFIX
    have = values.numel() * 2 if header.dtype == "codebook4" else values.numel()
    if have not in (kept, kept + (header.dtype == "codebook4")):
        what = f"{values.numel()} bytes of 4-bit codes" if header.dtype == "codebook4" else f"{values.numel()} values"
        raise CheckpointError(f"{path}: {stored_key!r} holds {what}, its positions keep {kept} weights")
    if header.dtype not in QUANTISED_DTYPES:
        return values
    flat_positions = mask.reshape(-1).nonzero().reshape(-1) if mask is not None else None
    return dequantise(stored, output_channels(shape, flat_positions), kept, header.dtype)


def _kept_channels(path: Path, tensors: dict[str, torch.Tensor], header: CheckpointHeader) -> dict[str, torch.Tensor]:
    """Per structured-pruned conv, the teacher channels it kept (distinct, within the dense width)."""
    kept_channels = {}
    dense = get_architecture(header.arch).dense_widths
    for name in header.structured:
        kept = _take(tensors, KEPT_PREFIX + name)
        if kept.numel() and (
            int(kept.min()) < 0 or int(kept.max()) >= dense[name] or kept.unique().numel() != kept.numel()
        ):
            raise CheckpointError(
                f"{path}: tensor {KEPT_PREFIX + name!r} must hold distinct channels in [0, {dense[name]})"
            )
        kept_channels[name] = kept
    return kept_channels


def read_checkpoint(path: str | os.PathLike) -> CheckpointContents:
    """A checkpoint's contents: weights (as fp32), masks, kept channels, provenance.

    The whole header is checked (widths bounded by the dense network's, every tensor's dtype,
    shape and offsets) before any tensor is read, and the tensors' SHA-256 before any is decoded.
    """
    path = Path(path)
    header = read_header(path)
    check_tensor_table(path, header)
    expected = Fields(header.metadata, str(path), CheckpointError).string("tensors_sha256", default="")
    tensors = _load_tensors(path)
    if tensors_digest(tensors) != expected:
        raise CheckpointError(f"{path}: corrupt: tensor data does not match the header's tensors_sha256")
    state: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    in_channels = 3
    for name, width in header.widths.items():
        shape = [width, in_channels, 3, 3]
        keys = weight_key(name, header.arch), bias_key(name, header.arch)
        state[keys[0]], state[keys[1]], mask = _decode_conv(path, tensors, header, name, shape)
        if mask is not None:
            masks[name] = mask
        in_channels = width
    return CheckpointContents(
        last_layer=header.last_layer,
        widths=header.widths,
        pooling=header.pooling,
        preprocessing=header.preprocessing,
        state_dict=state,
        masks=masks,
        kept_channels=_kept_channels(path, tensors, header),
        weight_source=header.metadata.get("weight_source", "unset"),
        provenance=header.decoded["provenance"],
        arch=header.arch,
    )
