"""The checkpoint format: a VGG-19 trunk (dense, fine-grained or structured pruned) as safetensors.

One file holds tensors and a string->string header; nothing is pickled. Two encodings:

dense   ``features.N.weight`` / ``features.N.bias`` as full tensors. Keys match torchvision, so
        ``nst_core.weights.load_vgg("file.safetensors")`` reads a dense checkpoint as plain weights.
packed  for each conv that has a fine-grained mask: ``features.N.weight.mask`` (the bool mask,
        bit-packed with ``numpy.packbits`` into uint8) and ``features.N.weight.values`` (the
        kept weights in mask order). A seed-profile network shrinks from ~76 MiB to ~8 MiB.

Values are stored in fp32, fp16 or bf16; loading gives back exactly the stored values
(as fp32, the dtype the network computes in). Structured networks store their smaller shapes,
and ``kept_channels.<conv>`` (int64) records which teacher channels each conv kept.

The header records the format and version, architecture (widths, last layer, pooling), weight
source and preprocessing, per-layer sparsity, pruning provenance, judged metrics, and a SHA-256
of the tensor bytes so a corrupted file is detected instead of silently loaded.

>>> from nst_core.weights import load_vgg
>>> path = save_checkpoint(load_vgg("random:0", "relu2_1"), "/tmp/tiny.safetensors", dtype="fp32")
>>> load_checkpoint(path).widths["conv2_1"]
128
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import safetensors.torch
import torch

from . import __version__
from .devices import resolve_device
from .errors import UserError
from .files import atomic_path
from .vgg import LAYER_NAMES, Preprocessing, VGGFeatures, freeze, layer_index

FORMAT_NAME = "nst-vgg19-checkpoint"
FORMAT_VERSION = 1
ENCODINGS = ("packed", "dense")
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

_MASK_SUFFIX = ".mask"
_VALUES_SUFFIX = ".values"
_KEPT_PREFIX = "kept_channels."
_CHUNK_BYTES = 1 << 20
# safetensors refuses headers above 100 MB; anything near that is not ours.
_MAX_HEADER_BYTES = 100_000_000


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


def checkpoint_tensors(model: VGGFeatures, encoding: str, dtype: str) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors to store and facts the header needs (``masks_from_zeros`` for dense)."""
    if encoding not in ENCODINGS:
        raise CheckpointError(f"unknown encoding {encoding!r}; choose from {', '.join(ENCODINGS)}")
    if dtype not in DTYPES:
        raise CheckpointError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    _check_masks(model)
    torch_dtype = DTYPES[dtype]
    tensors: dict[str, torch.Tensor] = {}
    masks_from_zeros = True
    for name in model.conv_names:
        conv = model.conv(name)
        weight = conv.weight.detach().cpu().to(torch_dtype).contiguous()
        mask = model.masks.get(name)
        tensors[_bias_key(name)] = conv.bias.detach().cpu().to(torch_dtype).contiguous()
        if mask is not None:
            mask = mask.cpu()
            # The masked-out weights must be zero, or the file would not be the network.
            weight = torch.where(mask, weight, torch.zeros((), dtype=torch_dtype))
        if encoding == "packed" and mask is not None:
            tensors[_weight_key(name) + _MASK_SUFFIX] = _pack_mask(mask)
            tensors[_weight_key(name) + _VALUES_SUFFIX] = weight[mask].contiguous()
        else:
            tensors[_weight_key(name)] = weight
            # Dense files rebuild masks as "weight != 0"; only if a kept weight is zero in this
            # dtype (rare: fp16 underflow) must the masks be stored explicitly.
            if mask is not None and not torch.equal(weight != 0, mask):
                masks_from_zeros = False
    if encoding == "dense" and not masks_from_zeros:
        for name, mask in model.masks.items():
            tensors[_weight_key(name) + _MASK_SUFFIX] = _pack_mask(mask)
    for name, kept in model.kept_channels.items():
        tensors[_KEPT_PREFIX + name] = kept.detach().cpu().to(torch.int64).contiguous()
    return tensors, {"masks_from_zeros": masks_from_zeros}


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
        "masks": "none" if not model.masks else ("packed" if encoding == "packed" else ("from_zeros" if facts["masks_from_zeros"] else "stored")),
        "masked_layers": json.dumps([n for n in model.conv_names if n in model.masks]),
        "structured": json.dumps(sorted(model.kept_channels, key=layer_index)),
        "provenance": json.dumps(model.provenance, default=str),
        "tensors_sha256": tensors_digest(tensors),
    }
    if metrics:
        meta["metrics"] = json.dumps(metrics, default=float)
    return meta


def _serialize(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Iterator[bytes]:
    """The file's bytes in chunks (so an interrupted write leaves a partial temp file, never a target)."""
    data = safetensors.torch.save(tensors, metadata=metadata)
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

    ``encoding``: "packed" (bit-packed masks + kept values; for fine-grained sparsity) or "dense".
    ``dtype``: "fp16", "bf16" or "fp32" for the stored weights. ``metrics``: judged quality
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

def read_safetensors_header(path: str | os.PathLike) -> tuple[dict, dict[str, str], int]:
    """(tensor entries, metadata, data start offset), validated against the file's size.

    Raises CheckpointError for a missing, non-safetensors, truncated or malformed file.
    """
    path = Path(path)
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
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file or corrupt header ({exc})") from None
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: corrupt header: __metadata__ must map strings to strings")
    data_start = 8 + header_len
    data_len = size - data_start
    end = 0
    for key, entry in header.items():
        try:
            begin, stop = entry["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"{path}: corrupt header: tensor {key!r} has no data_offsets") from None
        end = max(end, stop)
    if end > data_len:
        raise CheckpointError(f"{path}: truncated: tensor data needs {end} bytes, the file has {data_len}")
    return header, metadata, data_start


def _json_field(path: Path, metadata: dict[str, str], key: str, default=None):
    if key not in metadata:
        if default is not None:
            return default
        raise CheckpointError(f"{path}: header has no {key!r} entry")
    try:
        return json.loads(metadata[key])
    except ValueError:
        raise CheckpointError(f"{path}: header entry {key!r} is not valid JSON") from None


def _check_ours(path: Path, metadata: dict[str, str]) -> None:
    if metadata.get("format") != FORMAT_NAME:
        found = metadata.get("format")
        what = f"format {found!r}" if found else "no 'format' in its header"
        raise CheckpointError(
            f"{path}: not an nst checkpoint ({what}); plain VGG-19 weights load with --weights {path}"
        )
    version = metadata.get("format_version", "")
    if not version.isdigit():
        raise CheckpointError(f"{path}: header has a bad format_version {version!r}")
    if int(version) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format version {version} is newer than this nst_core reads ({FORMAT_VERSION}); upgrade nst_core"
        )


def read_checkpoint_info(path: str | os.PathLike) -> dict:
    """Header of a checkpoint without loading tensors: metadata (JSON fields decoded) and sizes.

    >>> read_checkpoint_info("seed.safetensors")["sparsity"]["conv1_2"]  # doctest: +SKIP
    0.9
    """
    path = Path(path)
    header, metadata, data_start = read_safetensors_header(path)
    _check_ours(path, metadata)
    info: dict = dict(metadata)
    for key in ("widths", "preprocessing", "sparsity", "masked_layers", "structured", "provenance", "metrics"):
        if key in metadata:
            info[key] = _json_field(path, metadata, key)
    info["format_version"] = int(metadata["format_version"])
    for key in ("conv_weights", "conv_weights_kept"):
        if key in metadata:
            info[key] = int(metadata[key])
    info["file_bytes"] = path.stat().st_size
    info["header_bytes"] = data_start
    info["tensors"] = {key: {"dtype": e["dtype"], "shape": e["shape"]} for key, e in header.items()}
    return info


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError for every malformed file
        raise CheckpointError(f"{path}: corrupt safetensors data ({exc})") from None


def _take(path: Path, tensors: dict[str, torch.Tensor], key: str, shape: list[int] | None, dtype: torch.dtype | None):
    if key not in tensors:
        raise CheckpointError(f"{path}: missing tensor {key!r}")
    t = tensors.pop(key)
    if dtype is not None and t.dtype != dtype:
        raise CheckpointError(f"{path}: tensor {key!r} has dtype {t.dtype}, the header says {dtype}")
    if shape is not None and list(t.shape) != list(shape):
        raise CheckpointError(f"{path}: tensor {key!r} has shape {list(t.shape)}, expected {shape} from the header's widths")
    return t


def _unpack_mask(path: Path, key: str, bits: torch.Tensor, shape: list[int]) -> torch.Tensor:
    count = int(np.prod(shape))
    if bits.dtype != torch.uint8 or bits.dim() != 1 or bits.numel() != (count + 7) // 8:
        raise CheckpointError(f"{path}: mask {key!r} holds {bits.numel()} bytes, expected {(count + 7) // 8} for shape {shape}")
    mask = np.unpackbits(bits.numpy(), count=count).astype(bool)
    return torch.from_numpy(mask).reshape(shape)


def _architecture(path: Path, metadata: dict[str, str]) -> VGGFeatures:
    """An untrained ``VGGFeatures`` of the shape the header describes (encoding and dtype checked too)."""
    for key in ("encoding", "dtype", "last_layer", "pooling"):
        if key not in metadata:
            raise CheckpointError(f"{path}: header has no {key!r} entry")
    encoding, dtype_name = metadata["encoding"], metadata["dtype"]
    if encoding not in ENCODINGS or dtype_name not in DTYPES:
        raise CheckpointError(f"{path}: unknown encoding {encoding!r} or dtype {dtype_name!r} in the header")
    if metadata["last_layer"] not in LAYER_NAMES:
        raise CheckpointError(f"{path}: unknown last_layer {metadata['last_layer']!r} in the header")
    widths = _json_field(path, metadata, "widths")
    try:
        preprocessing = Preprocessing.from_dict(_json_field(path, metadata, "preprocessing"))
        model = VGGFeatures(metadata["last_layer"], widths=widths, pooling=metadata["pooling"], preprocessing=preprocessing)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: header does not describe a VGG-19 ({exc})") from None
    if set(widths) != set(model.conv_names):
        raise CheckpointError(f"{path}: header widths name {sorted(widths)}, but a network up to {model.last_layer} has {model.conv_names}")
    return model


def _decode_conv(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], name: str, shape: list[int], masked: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(fp32 weight, fp32 bias, mask or None) of one conv, taken out of ``tensors``."""
    torch_dtype = DTYPES[metadata["dtype"]]
    wkey = _weight_key(name)
    bias = _take(path, tensors, _bias_key(name), [shape[0]], torch_dtype).float()
    if metadata["encoding"] == "packed" and masked:
        bits = _take(path, tensors, wkey + _MASK_SUFFIX, None, torch.uint8)
        mask = _unpack_mask(path, wkey + _MASK_SUFFIX, bits, shape)
        values = _take(path, tensors, wkey + _VALUES_SUFFIX, None, torch_dtype)
        kept = int(mask.sum())
        if list(values.shape) != [kept]:
            raise CheckpointError(f"{path}: {wkey + _VALUES_SUFFIX!r} holds {values.numel()} values, its mask keeps {kept}")
        weight = torch.zeros(shape, dtype=torch.float32)
        weight[mask] = values.float()
        return weight, bias, mask
    weight = _take(path, tensors, wkey, shape, torch_dtype).float()
    if not masked:
        return weight, bias, None
    if metadata.get("masks", "none") == "stored":
        bits = _take(path, tensors, wkey + _MASK_SUFFIX, None, torch.uint8)
        return weight, bias, _unpack_mask(path, wkey + _MASK_SUFFIX, bits, shape)
    return weight, bias, weight != 0


def _kept_channels(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], model: VGGFeatures) -> dict[str, torch.Tensor]:
    """Per structured-pruned conv, the teacher channels it kept, taken out of ``tensors``."""
    kept_channels = {}
    for name in _json_field(path, metadata, "structured", []):
        if name not in model.widths:
            raise CheckpointError(f"{path}: kept channels for {name}, which this network does not have")
        kept_channels[name] = _take(path, tensors, _KEPT_PREFIX + name, [model.widths[name]], torch.int64)
    return kept_channels


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> VGGFeatures:
    """A frozen ``VGGFeatures`` rebuilt from a checkpoint: weights (as fp32), masks, kept channels, provenance.

    >>> model = load_checkpoint("seed.safetensors")  # doctest: +SKIP
    >>> model.masks["conv1_2"].float().mean()  # doctest: +SKIP
    tensor(0.1000)
    """
    target = resolve_device(device)  # a missing GPU is reported before the file is read
    path = Path(path)
    _, metadata, _ = read_safetensors_header(path)
    _check_ours(path, metadata)
    model = _architecture(path, metadata)

    tensors = _load_tensors(path)
    expected = metadata.get("tensors_sha256")
    if expected is None or tensors_digest(tensors) != expected:
        raise CheckpointError(f"{path}: corrupt: tensor data does not match the header's tensors_sha256")

    masked = set(_json_field(path, metadata, "masked_layers", []))
    state: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    for name in model.conv_names:
        shape = list(model.conv(name).weight.shape)
        state[_weight_key(name)], state[_bias_key(name)], mask = _decode_conv(path, tensors, metadata, name, shape, name in masked)
        if mask is not None:
            masks[name] = mask
    kept_channels = _kept_channels(path, tensors, metadata, model)
    if tensors:
        raise CheckpointError(f"{path}: unexpected tensors {sorted(tensors)[:4]} (not described by the header)")

    model.load_state_dict(state)
    model.masks = masks
    model.kept_channels = kept_channels
    model.weight_source = metadata.get("weight_source", "unset")
    model.provenance = _json_field(path, metadata, "provenance", {})
    return freeze(model.to(target))


def is_checkpoint(path: str | os.PathLike) -> bool:
    """True when ``path`` is a safetensors file written by ``save_checkpoint`` (header only)."""
    try:
        _, metadata, _ = read_safetensors_header(path)
    except CheckpointError:
        return False
    return metadata.get("format") == FORMAT_NAME


__all__ = [
    "CheckpointError",
    "DTYPES",
    "ENCODINGS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "atomic_write",
    "is_checkpoint",
    "layer_sparsity",
    "load_checkpoint",
    "read_checkpoint_info",
    "save_checkpoint",
]
