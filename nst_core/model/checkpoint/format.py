"""The checkpoint format's names: encodings, dtypes, tensor keys, the header's checksum, its error.

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

The header records the format and version, architecture (``arch``: ``vgg19`` or ``vgg16``; widths,
last layer, pooling), weight
source and preprocessing, per-layer sparsity, pruning provenance, judged metrics, and a SHA-256
of the tensor bytes so a corrupted file is detected instead of silently loaded. Format version
2 added the ``positions`` and ``quantisation`` fields; version 1 files (bitmaps, float values) load as before.
Version 3 made ``arch`` required, since a file may hold a VGG-16; files of versions 1 and 2 hold a
VGG-19 (their optional ``arch`` can only say ``vgg19``). Tensor keys are torchvision's module indices
of the file's architecture.

This module holds what every other module of the package shares; ``save`` and ``load`` follow
this description, and ``header`` checks a file against it.
"""

from __future__ import annotations

import hashlib

import torch

from nst_core.core.errors import UserError
from nst_core.model.layers import DEFAULT_ARCH, ArchLike, layer_index

FORMAT_NAME = "nst-vgg19-checkpoint"
FORMAT_VERSION = 3
#: The first version whose header must name its ``arch``; older files are VGG-19.
ARCH_VERSION = 3
ENCODINGS = ("packed", "dense")
#: Float storage dtypes (any encoding).
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: Quantised storage (packed encoding only), decoded to fp32 on load.
QUANTISED_DTYPES = ("int8", "codebook4")
#: Every ``dtype`` ``save_checkpoint`` takes.
STORED_DTYPES = (*DTYPES, *QUANTISED_DTYPES)
CODEBOOK_SIZE = 16
POSITION_ENCODINGS = ("bitmap", *(f"gaps{bits}" for bits in range(1, 9)))

# Suffixes of the tensors that hang off a conv's weight key, and the prefix of its kept channels.
MASK_SUFFIX = ".mask"
GAPS_SUFFIX = ".gaps"
VALUES_SUFFIX = ".values"
SCALE_SUFFIX = ".scale"
CODES_SUFFIX = ".codes"
CODEBOOK_SUFFIX = ".codebook"
KEPT_PREFIX = "kept_channels."
#: Each float storage dtype as safetensors names it.
SAFETENSORS_DTYPE = {"fp32": "F32", "fp16": "F16", "bf16": "BF16"}


class CheckpointError(UserError):
    """A checkpoint file is missing, corrupt, truncated, foreign, or disagrees with itself."""


def weight_key(name: str, arch: ArchLike = DEFAULT_ARCH) -> str:
    """The key of a conv's weight, ``features.N.weight`` (torchvision's index N in ``arch``).

    >>> weight_key("conv4_1"), weight_key("conv4_1", "vgg16")
    ('features.19.weight', 'features.17.weight')
    """
    return f"features.{layer_index(name, arch)}.weight"


def bias_key(name: str, arch: ArchLike = DEFAULT_ARCH) -> str:
    """The key of a conv's bias, ``features.N.bias``."""
    return f"features.{layer_index(name, arch)}.bias"


def check_storage(encoding: str, dtype: str) -> None:
    """Raise CheckpointError unless ``encoding`` and ``dtype`` are known and go together (before any work)."""
    if encoding not in ENCODINGS:
        raise CheckpointError(f"unknown encoding {encoding!r}; choose from {', '.join(ENCODINGS)}")
    if dtype not in STORED_DTYPES:
        raise CheckpointError(f"unknown dtype {dtype!r}; choose from {', '.join(STORED_DTYPES)}")
    if dtype in QUANTISED_DTYPES and encoding != "packed":
        raise CheckpointError(
            f"dtype {dtype} needs the packed encoding "
            "(the dense encoding keeps float tensors that plain-weight readers load)"
        )


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over keys, dtypes, shapes and raw bytes, in key order."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        digest.update(f"{key}|{t.dtype}|{list(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
