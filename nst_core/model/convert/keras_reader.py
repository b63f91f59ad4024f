"""The conv kernels of a Keras HDF5 VGG file (``vgg16/vgg19 ... notop.h5`` and whole saved models).

Keras 2 stores each layer as a group ``blockB_convC`` holding ``blockB_convC/kernel:0`` (HWIO,
``(3, 3, in, out)``) and ``bias:0``, at the top level of a weights file or under
``model_weights`` in a saved model; Keras 3's ``.weights.h5`` keeps them as ``vars/0`` and
``vars/1`` under ``layers/blockB_convC``. The file is walked for datasets inside a
``blockB_convC`` group, whatever the nesting, and the convs are ordered by (block, conv). Every
dataset's shape and dtype are checked from the file's metadata before it is read; kernels are
transposed to PyTorch's OIHW.

>>> read_keras_convs("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5").architecture.name  # doctest: +SKIP
'vgg19'
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from nst_core.core.errors import first_line
from nst_core.core.validation import cut
from nst_core.model.convert.architectures import MAX_SOURCE_BYTES, ConvWeights, check_file_size, keras_name
from nst_core.model.convert.onnx_reader import INSTALL_HINT
from nst_core.model.layers import VGG16, VGG19, Architecture
from nst_core.model.weights import WeightsError

_LAYER = re.compile(r"block(\d+)_conv(\d+)")
_KERNEL_NAMES = ("kernel:0", "kernel", "0")  # Keras 2 (with and without the :0), Keras 3's vars/0
_BIAS_NAMES = ("bias:0", "bias", "1")
_FLOAT_KINDS = ("<f4", "<f2", ">f4", ">f2")


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise WeightsError(f"reading Keras .h5 files needs the h5py package: {INSTALL_HINT}") from None
    return h5py


def _find_layers(root: Any) -> dict[tuple[int, int], dict[str, Any]]:
    """{(block, conv): {"kernel": dataset, "bias": dataset}} of every dataset below a ``blockB_convC`` group."""
    h5py = _import_h5py()
    layers: dict[tuple[int, int], dict[str, Any]] = {}

    def visit(name: str, item: Any) -> None:
        if not isinstance(item, h5py.Dataset):
            return
        parts = name.split("/")
        groups = [m for part in parts[:-1] if (m := _LAYER.fullmatch(part))]
        if not groups:
            return
        key = (int(groups[-1].group(1)), int(groups[-1].group(2)))
        role = "kernel" if parts[-1] in _KERNEL_NAMES else "bias" if parts[-1] in _BIAS_NAMES else None
        if role:
            layers.setdefault(key, {}).setdefault(role, item)

    root.visititems(visit)
    return layers


def _check(dataset: Any, shape: tuple[int, ...], path: Path, field: str) -> None:
    """The dataset's shape and dtype, from the file's metadata (nothing is read)."""
    if tuple(dataset.shape) != shape:
        raise WeightsError(f"{path}: {field} has shape {list(dataset.shape)}, expected {list(shape)}")
    if dataset.external or dataset.is_virtual:
        raise WeightsError(f"{path}: {field} keeps its data outside the file, which is not read")
    if dataset.dtype.str not in _FLOAT_KINDS:
        raise WeightsError(f"{path}: {field} has dtype {cut(str(dataset.dtype))}; expected float32 or float16")


def _architecture_of(layers: dict[tuple[int, int], dict[str, Any]], path: Path) -> Architecture:
    """VGG-19 when a block has a fourth conv, else VGG-16; every one of its layers present, no other."""
    if not layers:
        raise WeightsError(f"{path}: no blockB_convC layer groups found; expected Keras VGG-16 or VGG-19 weights")
    architecture = VGG19 if any(conv == 4 for _, conv in layers) else VGG16
    found = {f"block{block}_conv{conv}" for block, conv in layers}
    expected = [keras_name(conv) for conv in architecture.conv_names]
    missing = [name for name in expected if name not in found]
    if missing:
        raise WeightsError(
            f"{path}: no {missing[0]} layer: {architecture.title} has {len(architecture.conv_names)} convs, "
            f"the file has {len(found)} blockB_convC groups"
        )
    extra = sorted(found - set(expected))
    if extra:
        raise WeightsError(f"{path}: unexpected layer {cut(extra[0])}: {architecture.title} has no such conv")
    return architecture


def _convs_in(handle: Any, path: Path) -> ConvWeights:
    link = handle.get("model_weights", getlink=True)
    if link is not None and not isinstance(link, _import_h5py().HardLink):
        raise WeightsError(f"{path}: model_weights is a link to elsewhere, which is not followed")
    root = handle if link is None else handle["model_weights"]
    layers = _find_layers(root)
    architecture = _architecture_of(layers, path)
    keys = sorted(layers)
    datasets = []
    for (block, conv), (o, i, h, w) in zip(keys, architecture.conv_shapes):
        label = f"block{block}_conv{conv}"
        if "kernel" not in layers[block, conv]:
            raise WeightsError(f"{path}: group {label} holds no kernel dataset")
        kernel, bias = layers[block, conv]["kernel"], layers[block, conv].get("bias")
        _check(kernel, (h, w, i, o), path, f"{label} kernel (HWIO)")  # every conv before reading any
        if bias is not None:
            _check(bias, (o,), path, f"{label} bias")
        datasets.append((kernel, bias, o))
    weights, biases = [], []
    for kernel, bias, width in datasets:
        weights.append(np.ascontiguousarray(np.asarray(kernel[()], dtype=np.float32).transpose(3, 2, 0, 1)))
        biases.append(np.zeros(width, np.float32) if bias is None else np.asarray(bias[()], dtype=np.float32))
    return ConvWeights(architecture, weights, biases)


def read_keras_convs(path: str | Path) -> ConvWeights:
    """The VGG-16 or VGG-19 conv weights of a Keras ``.h5`` file (OIHW float32), or a one-line ``WeightsError``."""
    path = Path(path)
    h5py = _import_h5py()
    check_file_size(path, MAX_SOURCE_BYTES)
    try:
        handle = h5py.File(path, "r")
    except Exception as exc:  # h5py raises OSError for non-HDF5 bytes, others for damaged ones
        raise WeightsError(f"{path}: not an HDF5 file ({cut(first_line(exc))})") from None
    try:
        with handle:
            return _convs_in(handle, path)
    except WeightsError:
        raise
    except Exception as exc:  # a damaged file fails while walking or reading (OSError, KeyError, RuntimeError)
        raise WeightsError(
            f"{path}: cannot read the HDF5 file ({type(exc).__name__}: {cut(first_line(exc))})"
        ) from None
