"""``nst weights convert``: a downloaded VGG-19 ``.pth`` as a features-only safetensors file, ready to host.

So nobody depends on one old URL: the converted file, pushed to a model repo, is a weight
source (``hf:OWNER/NAME:FILE``) with its preprocessing in its metadata.
"""

from __future__ import annotations

import os
from pathlib import Path

from nst_core.core.errors import UserError
from nst_core.core.files import file_sha256
from nst_core.model.checkpoint import CheckpointError, save_checkpoint
from nst_core.model.layers import PREPROCESSINGS
from nst_core.model.vgg import VGGFeatures
from nst_core.model.weights import WeightsError, match_state_dict, read_state_dict


def convert_vgg_weights(
    source: str | os.PathLike, output: str | os.PathLike, preprocessing: str = "caffe", dtype: str = "fp32"
) -> Path:
    """A downloaded VGG-19 ``.pth`` (``features.N.*`` + ``classifier.*``) -> features-only safetensors.

    The output is a dense checkpoint: torchvision keys, so ``load_vgg("out.safetensors")`` and
    ``load_vgg("hf:REPO:out.safetensors")`` read it, with the preprocessing in its metadata.

    >>> convert_vgg_weights("vgg19-d01eb7cb.pth", "vgg19-caffe.safetensors")  # doctest: +SKIP
    """
    source, output = Path(source), Path(output)
    if preprocessing not in PREPROCESSINGS:
        raise UserError(f"unknown preprocessing {preprocessing!r}; choose from {', '.join(PREPROCESSINGS)}")
    if source.suffix not in (".pth", ".pt"):
        raise WeightsError(f"{source}: expected a PyTorch .pth file to convert")
    state, _ = read_state_dict(source)
    model = VGGFeatures("relu5_4", preprocessing=PREPROCESSINGS[preprocessing])
    model.load_state_dict(match_state_dict(model, state, str(source)))
    model.weight_source = f"{preprocessing}:{source.name}"
    model.provenance = {"method": "none", "converted_from": source.name, "source_sha256": file_sha256(source)}
    try:
        return save_checkpoint(model, output, encoding="dense", dtype=dtype)
    except CheckpointError as exc:
        raise WeightsError(str(exc)) from None
