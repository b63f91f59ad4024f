"""A features-only VGG-16 safetensors file: torchvision's ``vgg16`` keys, the architecture in the metadata.

A converted VGG-16 is kept in torchvision's layout (``features.N.weight`` at N = 0, 2, 5, 7, 10,
12, 14, 17, 19, 21, 24, 26, 28) with ``{"architecture": "vgg16", "preprocessing": NAME, "source": FILE}``
in its metadata, which ``nst_core.model.weights`` reads to build a VGG-16.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from nst_core.core.files import atomic_path
from nst_core.model.convert.architectures import ConvWeights


def save_features_file(
    convs: ConvWeights, output: str | os.PathLike, preprocessing: str, source_name: str, dtype: torch.dtype
) -> Path:
    """Write ``convs`` to ``output`` atomically, in ``dtype``, with the architecture recorded; returns the path."""
    output = Path(output)
    state = {key: tensor.to(dtype).contiguous() for key, tensor in convs.state_dict().items()}
    metadata = {"architecture": convs.architecture.name, "preprocessing": preprocessing, "source": source_name}
    with atomic_path(output) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return output
