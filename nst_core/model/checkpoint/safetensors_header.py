"""The safetensors container: its JSON header and tensor table, checked against the file's size.

Only the 8-byte length and the header itself are read (bounded by ``_MAX_HEADER_BYTES``), so a
hostile file costs no more memory than its header, and every entry is checked by the rules
safetensors enforces before safetensors ever sees the file: a bad file is a one-line
``CheckpointError`` instead of a library traceback.

>>> entries, metadata, data_start = read_safetensors_header("seed.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

from nst_core.core.errors import first_line
from nst_core.core.validation import cut, shown
from nst_core.model.checkpoint.format import CheckpointError

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


def read_header_json(path: Path) -> tuple[dict, dict[str, str], int]:
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
    header, metadata, data_start = read_header_json(Path(path))
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
