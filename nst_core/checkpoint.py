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
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import safetensors.torch
import torch

from . import __version__
from .devices import resolve_device
from .errors import UserError, first_line
from .files import atomic_path
from .validation import Fields, cut, parse_json, shown
from .vgg import DENSE_WIDTHS, LAYER_NAMES, POOLINGS, PREPROCESSINGS, Preprocessing, VGGFeatures, convs_up_to, freeze, layer_index

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
# Bytes per element of each safetensors dtype (sub-byte and newer ones are left to safetensors).
_SAFETENSORS_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                         "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
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
            raise CheckpointError(f"{where}: {dtype} {shape} needs {math.prod(shape) * itemsize} bytes, data_offsets give {stop - begin}")
        spans.append((begin, stop, key))
    position = 0
    for begin, stop, key in sorted(spans):
        if begin != position:
            raise CheckpointError(f"{path}: corrupt header: tensor {shown(key)} starts at byte {begin}, expected {position} "
                                  "(tensors overlap or leave a gap)")
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
    decoded: dict  # the JSON fields, decoded (for read_checkpoint_info)


def _read_header(path: Path) -> _Header:
    """The header of an nst checkpoint, checked field by field (``_check_tensor_table`` checks its tensors)."""
    entries, metadata, data_start = read_safetensors_header(path)
    _check_ours(path, metadata)
    fields = Fields(metadata, str(path), CheckpointError)
    if fields.has("arch"):
        fields.string("arch", ("vgg19",))
    encoding = fields.string("encoding", ENCODINGS)
    dtype = fields.string("dtype", tuple(DTYPES))
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
    for key in ("conv_weights", "conv_weights_kept"):
        if fields.has(key):
            text = fields.string(key)
            if not re.fullmatch(r"[0-9]{1,12}", text):
                fields.fail(key, f"is {shown(text)}, expected a count")
            decoded[key] = int(text)
    header = _Header(
        entries, metadata, data_start, encoding, dtype, last_layer, pooling, widths,
        preprocessing, decoded["masked_layers"], decoded["structured"],
        fields.string("masks", ("none", "packed", "from_zeros", "stored"), default="none"), decoded,
    )
    return header


def _widths(fields: Fields, convs: list[str]) -> dict[str, int]:
    """Each conv's width: an int from 1 to the dense VGG-19's, for exactly the convs up to last_layer."""
    widths = Fields(fields.json_text("widths"), fields.where, CheckpointError, prefix="widths.")
    extra = sorted(set(widths.data) - set(convs), key=str)
    if extra:
        fields.fail("widths", f"names {shown(extra)}, which a network up to {convs[-1]} does not have")
    return {name: widths.integer(name, 1, DENSE_WIDTHS[name]) for name in convs}


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
    stored = _SAFETENSORS_DTYPE[header.dtype]
    expected: dict[str, tuple[str, list[int] | int]] = {}  # key -> (dtype, shape, or the most values allowed)
    in_channels = 3
    for name, width in header.widths.items():
        shape = [width, in_channels, 3, 3]
        count = math.prod(shape)
        wkey = _weight_key(name)
        expected[_bias_key(name)] = (stored, [width])
        if header.encoding == "packed" and name in header.masked:
            expected[wkey + _MASK_SUFFIX] = ("U8", [(count + 7) // 8])
            expected[wkey + _VALUES_SUFFIX] = (stored, count)
        else:
            expected[wkey] = (stored, shape)
            if name in header.masked and header.masks == "stored":
                expected[wkey + _MASK_SUFFIX] = ("U8", [(count + 7) // 8])
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
                raise CheckpointError(f"{path}: tensor {key!r} has shape {shown(entry['shape'])}, expected at most {shape} values")
        elif entry["shape"] != shape:
            raise CheckpointError(f"{path}: tensor {key!r} has shape {shown(entry['shape'])}, expected {shape} from the header's widths")
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
    if header.encoding == "packed" and masked:
        mask = _unpack_mask(_take(tensors, wkey + _MASK_SUFFIX), shape)
        values = _take(tensors, wkey + _VALUES_SUFFIX)
        kept = int(mask.sum())
        if list(values.shape) != [kept]:
            raise CheckpointError(f"{path}: {wkey + _VALUES_SUFFIX!r} holds {values.numel()} values, its mask keeps {kept}")
        weight = torch.zeros(shape, dtype=torch.float32)
        weight[mask] = values.float()
        return weight, bias, mask
    weight = _take(tensors, wkey).float()
    if not masked:
        return weight, bias, None
    if header.masks == "stored":
        return weight, bias, _unpack_mask(_take(tensors, wkey + _MASK_SUFFIX), shape)
    return weight, bias, weight != 0


def _kept_channels(path: Path, tensors: dict[str, torch.Tensor], header: _Header) -> dict[str, torch.Tensor]:
    """Per structured-pruned conv, the teacher channels it kept (distinct, within the dense width)."""
    kept_channels = {}
    for name in header.structured:
        kept = _take(tensors, _KEPT_PREFIX + name)
        if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= DENSE_WIDTHS[name] or kept.unique().numel() != kept.numel()):
            raise CheckpointError(f"{path}: tensor {_KEPT_PREFIX + name!r} must hold distinct channels in [0, {DENSE_WIDTHS[name]})")
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
    model = VGGFeatures(header.last_layer, widths=header.widths, pooling=header.pooling, preprocessing=header.preprocessing)

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
    "CheckpointError",
    "DTYPES",
    "ENCODINGS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "atomic_write",
    "is_checkpoint",
    "layer_sparsity",
    "load_checkpoint",
    "parse_preprocessing",
    "read_checkpoint_info",
    "save_checkpoint",
]
