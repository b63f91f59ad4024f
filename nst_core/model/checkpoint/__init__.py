"""The checkpoint format: a VGG-19 or VGG-16 trunk (dense, fine-grained or structured pruned) as one safetensors file.

A codec, one concept per module: ``format`` (names, encodings, dtypes, the error), ``positions``
(where kept weights sit), ``quantise`` (int8 and 4-bit codebooks), ``safetensors_header`` (the
container's header in bounded memory), ``header`` (the nst header's schema, ``read_checkpoint_info``),
``save`` and ``load``. It never imports the network: it saves anything with the attributes
``SavableNetwork`` lists and reads a file into ``CheckpointContents``; ``load_checkpoint``, which
builds a ``VGGFeatures`` from them, lives with the network in ``nst_core.model.vgg``.

>>> from nst_core.model.weights import load_vgg
>>> path = save_checkpoint(load_vgg("random:0", "relu2_1"), "/tmp/tiny.safetensors", dtype="fp32")
>>> read_checkpoint(path).widths["conv2_1"], read_checkpoint_info(path)["encoding"]
(128, 'packed')
"""

from nst_core.model.checkpoint.format import (
    CODEBOOK_SIZE,
    DTYPES,
    ENCODINGS,
    FORMAT_NAME,
    FORMAT_VERSION,
    POSITION_ENCODINGS,
    QUANTISED_DTYPES,
    STORED_DTYPES,
    CheckpointError,
    check_storage,
    tensors_digest,
)
from nst_core.model.checkpoint.header import is_checkpoint, parse_preprocessing, read_checkpoint_info
from nst_core.model.checkpoint.load import CheckpointContents, read_checkpoint
from nst_core.model.checkpoint.positions import decode_positions, encode_positions
from nst_core.model.checkpoint.quantise import dequantise, kmeans_codebook, quantise
from nst_core.model.checkpoint.safetensors_header import read_safetensors_header
from nst_core.model.checkpoint.save import SavableNetwork, atomic_write, layer_sparsity, save_checkpoint

__all__ = [
    "CODEBOOK_SIZE",
    "CheckpointContents",
    "CheckpointError",
    "DTYPES",
    "ENCODINGS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "POSITION_ENCODINGS",
    "QUANTISED_DTYPES",
    "STORED_DTYPES",
    "SavableNetwork",
    "atomic_write",
    "check_storage",
    "decode_positions",
    "dequantise",
    "encode_positions",
    "is_checkpoint",
    "kmeans_codebook",
    "layer_sparsity",
    "parse_preprocessing",
    "quantise",
    "read_checkpoint",
    "read_checkpoint_info",
    "read_safetensors_header",
    "save_checkpoint",
    "tensors_digest",
]
