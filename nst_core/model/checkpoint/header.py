"""An nst checkpoint's header, checked field by field, and its tensor table checked against it.

Everything a loader may allocate is bounded here, before any tensor is read: widths by the dense
network's of the header's ``arch`` (VGG-19 or VGG-16), each tensor's dtype and shape by the widths,
encoding and dtype. ``read_checkpoint_info`` (``nst checkpoint info``) reads nothing more than the header.

>>> read_checkpoint_info("seed.safetensors")["sparsity"]["conv1_2"]  # doctest: +SKIP
0.9
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nst_core.core.errors import UserError
from nst_core.core.validation import Fields, cut, parse_json, shown
from nst_core.model.checkpoint.format import (
    ARCH_VERSION,
    CODEBOOK_SIZE,
    CODEBOOK_SUFFIX,
    CODES_SUFFIX,
    ENCODINGS,
    FORMAT_NAME,
    FORMAT_VERSION,
    GAPS_SUFFIX,
    KEPT_PREFIX,
    MASK_SUFFIX,
    POSITION_ENCODINGS,
    QUANTISED_DTYPES,
    SAFETENSORS_DTYPE,
    SCALE_SUFFIX,
    STORED_DTYPES,
    VALUES_SUFFIX,
    CheckpointError,
    bias_key,
    weight_key,
)
from nst_core.model.checkpoint.safetensors_header import read_header_json, read_safetensors_header
from nst_core.model.layers import (
    ARCHITECTURES,
    DEFAULT_ARCH,
    POOLINGS,
    PREPROCESSINGS,
    Architecture,
    Preprocessing,
    get_architecture,
)


def _check_ours(path: Path, metadata: dict[str, str]) -> None:
    if metadata.get("format") != FORMAT_NAME:
        found = metadata.get("format")
        what = f"format {shown(found)}" if found else "no 'format' in its header"
        raise CheckpointError(f"{path}: not an nst checkpoint ({what}); plain VGG weights load with --weights {path}")
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
        _triple(fields.numbers("mean", length=3)),
        # A std of 0 divides by zero: every input becomes inf and the optimisation "diverges".
        _triple(fields.numbers("std", length=3, positive=True)),
    )


def _triple(values: list[float]) -> tuple[float, float, float]:
    """A checked length-3 list as the per-channel tuple ``Preprocessing`` holds."""
    first, second, third = values
    return first, second, third


@dataclass
class CheckpointHeader:
    """A checkpoint header that passed the schema: everything a loader may allocate is bounded by it."""

    entries: dict
    metadata: dict[str, str]
    data_start: int
    encoding: str
    dtype: str
    arch: str  # a key of ARCHITECTURES: "vgg19" (every file before format version 3) or "vgg16"
    last_layer: str
    pooling: str
    widths: dict[str, int]
    preprocessing: Preprocessing
    masked: list[str]
    structured: list[str]
    masks: str
    positions: dict[str, str]  # per masked conv of a packed file: one of POSITION_ENCODINGS
    decoded: dict  # the JSON fields, decoded (for read_checkpoint_info)


def read_header(path: Path) -> CheckpointHeader:
    """The header of an nst checkpoint, checked field by field (``check_tensor_table`` checks its tensors)."""
    entries, metadata, data_start = read_safetensors_header(path)
    _check_ours(path, metadata)
    fields = Fields(metadata, str(path), CheckpointError)
    encoding = fields.string("encoding", ENCODINGS)
    dtype = fields.string("dtype", STORED_DTYPES)
    if dtype in QUANTISED_DTYPES and encoding != "packed":
        fields.fail("dtype", f"is {dtype}, which only the packed encoding stores")
    architecture = _architecture(fields, int(metadata["format_version"]))
    last_layer = fields.string("last_layer", architecture.layer_names)
    pooling = fields.string("pooling", POOLINGS)
    convs = architecture.convs_up_to(last_layer)
    widths = _widths(fields, convs, architecture)
    preprocessing = parse_preprocessing(fields.string("preprocessing"), str(path))
    decoded: dict[str, Any] = {
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
    header = CheckpointHeader(
        entries,
        metadata,
        data_start,
        encoding,
        dtype,
        architecture.name,
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


def _architecture(fields: Fields, version: int) -> Architecture:
    """The header's ``arch``: required from format version 3 on; before, absent or ``vgg19`` (VGG-19)."""
    if version >= ARCH_VERSION:
        return get_architecture(fields.string("arch", tuple(ARCHITECTURES)))
    if fields.has("arch"):
        fields.string("arch", (DEFAULT_ARCH,))
    return get_architecture(DEFAULT_ARCH)


def _widths(fields: Fields, convs: list[str], architecture: Architecture) -> dict[str, int]:
    """Each conv's width: an int from 1 to the dense network's, for exactly the convs up to last_layer."""
    widths = Fields(fields.json_text("widths"), fields.where, CheckpointError, prefix="widths.")
    extra = sorted(set(widths.data) - set(convs), key=str)
    if extra:
        fields.fail("widths", f"names {shown(extra)}, which a network up to {convs[-1]} does not have")
    return {name: widths.integer(name, 1, architecture.dense_widths[name]) for name in convs}


def _positions(fields: Fields, packed_masked: list[str]) -> dict[str, str]:
    """How each masked conv of a packed file stores its positions: exactly those convs.

    Absent (format version 1), every one is a bitmap.
    """
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


def check_tensor_table(path: Path, header: CheckpointHeader) -> None:
    """Every tensor the widths call for, with the header's dtype and the widths' shapes, and nothing else."""
    quantised = header.dtype in QUANTISED_DTYPES
    stored = "F32" if quantised else SAFETENSORS_DTYPE[header.dtype]
    expected: dict[str, tuple[str, list[int] | int]] = {}  # key -> (dtype, shape, or the most values allowed)
    in_channels = 3
    for name, width in header.widths.items():
        shape = [width, in_channels, 3, 3]
        count = math.prod(shape)
        wkey = weight_key(name, header.arch)
        expected[bias_key(name, header.arch)] = (stored, [width])
        packed = header.encoding == "packed" and name in header.masked
        if packed:
            kind = header.positions[name]
            if kind == "bitmap":
                expected[wkey + MASK_SUFFIX] = ("U8", [(count + 7) // 8])
            else:  # at most one entry per weight, plus the padding of the last byte
                expected[wkey + GAPS_SUFFIX] = ("U8", ((count + 8) * int(kind[4:]) + 7) // 8)
        elif name in header.masked and header.masks == "stored":
            expected[wkey + MASK_SUFFIX] = ("U8", [(count + 7) // 8])
        values_key = wkey + VALUES_SUFFIX if packed else wkey
        if header.dtype == "codebook4":
            expected[wkey + CODES_SUFFIX] = ("U8", (count + 1) // 2 if packed else [(count + 1) // 2])
            expected[wkey + CODEBOOK_SUFFIX] = ("F32", [CODEBOOK_SIZE])
        else:
            expected[values_key] = ("I8" if header.dtype == "int8" else stored, count if packed else shape)
            if header.dtype == "int8":
                expected[wkey + SCALE_SUFFIX] = ("F32", [width])
        in_channels = width
    for name in header.structured:
        expected[KEPT_PREFIX + name] = ("I64", [header.widths[name]])
    for key, (dtype, want) in expected.items():
        if key not in header.entries:
            raise CheckpointError(f"{path}: missing tensor {key!r}")
        entry = header.entries[key]
        if entry["dtype"] != dtype:
            raise CheckpointError(f"{path}: tensor {key!r} has dtype {shown(entry['dtype'])}, the header says {dtype}")
        if isinstance(want, int):
            if len(entry["shape"]) != 1 or entry["shape"][0] > want:
                raise CheckpointError(
                    f"{path}: tensor {key!r} has shape {shown(entry['shape'])}, expected at most {want} values"
                )
        elif entry["shape"] != want:
            raise CheckpointError(
                f"{path}: tensor {key!r} has shape {shown(entry['shape'])}, expected {want} from the header's widths"
            )
    extra = sorted(set(header.entries) - set(expected))
    if extra:
        raise CheckpointError(f"{path}: unexpected tensors {shown(extra[:4])} (not described by the header)")


def read_checkpoint_info(path: str | os.PathLike) -> dict:
    """CheckpointHeader of a checkpoint without loading tensors: metadata (JSON fields decoded) and sizes.

    >>> read_checkpoint_info("seed.safetensors")["sparsity"]["conv1_2"]  # doctest: +SKIP
    0.9
    """
    path = Path(path)
    header = read_header(path)
    info: dict = dict(header.metadata)
    info.update(header.decoded)
    info["format_version"] = int(header.metadata["format_version"])
    info["arch"] = header.arch  # files before format version 3 may not name it: they are VGG-19
    info["file_bytes"] = path.stat().st_size
    info["header_bytes"] = header.data_start
    info["tensors"] = {key: {"dtype": e["dtype"], "shape": e["shape"]} for key, e in header.entries.items()}
    return info


def is_checkpoint(path: str | os.PathLike) -> bool:
    """True when ``path`` is a safetensors file written by ``save_checkpoint`` (header only)."""
    try:
        # What the header claims decides: a broken nst checkpoint then gets the checkpoint loader's errors.
        _, metadata, _ = read_header_json(Path(path))
    except CheckpointError:
        return False
    return metadata.get("format") == FORMAT_NAME
