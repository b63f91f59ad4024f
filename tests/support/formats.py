"""Hypothesis strategies for every file format nst reads, each grown from a real, valid file.

A generated file is a valid one with a few fields replaced, dropped or broken (the mistakes
people and attackers make), or pure noise; the fuzz tests feed them to the real loaders.
"""

from __future__ import annotations

import json
import struct
from functools import cache
from pathlib import Path

import numpy as np
import torch
from hypothesis import strategies as st

from nst_core.compress.pruning import PROFILE_FORMAT, Profile, prune_fine, prune_structured
from nst_core.compress.scan.folder import RECORD_FORMAT, SCAN_FORMAT
from nst_core.model.checkpoint import POSITION_ENCODINGS, STORED_DTYPES, save_checkpoint
from nst_core.model.layers import CONV_NAMES, LAYER_NAMES
from nst_core.model.weights import load_vgg

# Any JSON value, small: what a careless edit or a hostile upload puts where a field belongs.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
conv_names = st.sampled_from(CONV_NAMES) | st.text(max_size=8)
# Numbers that sit on every boundary a schema has.
edgy_numbers = (
    st.sampled_from([0, 1, -1, 0.0, 1.0, 0.5, 1e-300, 1e300, 2**63, -(2**63), 8000, 25_000, True, False]) | st.floats()
)


def text_or_json(values=json_values):
    """A header value: a JSON document of ``values`` or any text (headers store strings)."""
    return values.map(lambda v: json.dumps(v, allow_nan=True)) | st.text(max_size=30)


def safetensors_bytes(entries: dict, metadata: dict | None, data: bytes) -> bytes:
    """A safetensors file from its parts, written by hand so that every part can be wrong."""
    header = dict(entries)
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header, allow_nan=True).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def split_safetensors(blob: bytes) -> tuple[dict, dict, bytes]:
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + length])
    metadata = header.pop("__metadata__")
    return header, metadata, blob[8 + length :]


@cache
def valid_checkpoints() -> tuple[bytes, ...]:
    """Small real checkpoints (up to relu2_1): fine-grained packed, fine-grained dense, structured, and
    quantised packed ones (int8 and codebook4) whose positions are relative indices and bitmaps."""
    import tempfile

    model = load_vgg("random:0", last_layer="relu2_1")
    sparse = prune_fine(model, {"conv1_1": 0.0, "conv1_2": 0.9, "conv2_1": 0.6})
    out = []
    with tempfile.TemporaryDirectory() as folder:
        for i, (net, encoding, dtype) in enumerate(
            (
                (prune_fine(model, 0.5), "packed", "fp16"),
                (prune_fine(model, 0.5), "dense", "fp16"),
                (prune_structured(model, 0.5), "dense", "fp16"),
                (sparse, "packed", "int8"),
                (prune_fine(prune_structured(model, 0.5), 0.8), "packed", "codebook4"),
            )
        ):
            path = save_checkpoint(net, Path(folder) / f"{i}.safetensors", encoding=encoding, dtype=dtype)
            out.append(path.read_bytes())
    return tuple(out)


METADATA_KEYS = [
    "format",
    "format_version",
    "encoding",
    "dtype",
    "arch",
    "last_layer",
    "pooling",
    "widths",
    "preprocessing",
    "masks",
    "masked_layers",
    "structured",
    "sparsity",
    "provenance",
    "metrics",
    "conv_weights",
    "conv_weights_kept",
    "tensors_sha256",
    "weight_source",
    "positions",
    "quantisation",
]
ENTRY_KEYS = ["dtype", "shape", "data_offsets"]


def _widths_value():
    widths = st.dictionaries(conv_names, st.integers(-5, 30_000) | edgy_numbers | json_values, max_size=6)
    return widths.map(json.dumps)


def _preprocessing_value():
    fields = st.fixed_dictionaries(
        {},
        optional={
            "name": st.sampled_from(["caffe", "torchvision"]) | json_values,
            "bgr": st.booleans() | json_values,
            "scale": edgy_numbers | json_values,
            "mean": st.lists(edgy_numbers, max_size=4) | json_values,
            "std": st.lists(edgy_numbers, max_size=4) | json_values,
        },
    )
    return (
        fields.map(lambda d: json.dumps(d, allow_nan=True)) | text_or_json() | st.sampled_from(["caffe", "torchvision"])
    )


@st.composite
def metadata_edit(draw, metadata: dict) -> None:
    key = draw(st.sampled_from(METADATA_KEYS) | st.text(max_size=8))
    action = draw(st.sampled_from(["replace", "delete", "widths", "preprocessing", "layer", "positions", "dtype"]))
    if action == "delete":
        metadata.pop(key, None)
    elif action == "widths":
        metadata["widths"] = draw(_widths_value())
    elif action == "preprocessing":
        metadata["preprocessing"] = draw(_preprocessing_value())
    elif action == "positions":  # a well-formed map that may name the wrong convs or encodings
        values = st.sampled_from(POSITION_ENCODINGS) | st.sampled_from(["gaps0", "gaps9", "gaps"]) | json_values
        metadata["positions"] = json.dumps(draw(st.dictionaries(conv_names, values, max_size=4)), allow_nan=True)
    elif action == "dtype":
        metadata["dtype"] = draw(st.sampled_from(STORED_DTYPES))
    elif action == "layer":
        metadata[draw(st.sampled_from(["last_layer", "masked_layers", "structured"]))] = draw(
            st.sampled_from(LAYER_NAMES) | st.lists(conv_names, max_size=4).map(json.dumps)
        )
    else:
        metadata[key] = draw(text_or_json())


@st.composite
def entry_edit(draw, entries: dict) -> None:
    if not entries:
        return
    name = draw(st.sampled_from(sorted(entries)))
    action = draw(st.sampled_from(["field", "offsets", "shape", "delete", "rename", "not-an-object"]))
    entry = dict(entries[name]) if isinstance(entries[name], dict) else {}  # an earlier edit may have broken it
    if action == "field":
        entry[draw(st.sampled_from(ENTRY_KEYS))] = draw(json_values)
    elif action == "offsets":
        entry["data_offsets"] = draw(
            st.lists(st.integers(-10, 10**12) | edgy_numbers | st.text(max_size=3), max_size=3)
        )
    elif action == "shape":
        entry["shape"] = draw(st.lists(st.integers(-2, 10**9) | edgy_numbers, max_size=5))
    elif action == "delete":
        del entries[name]
        return
    elif action == "rename":
        entries[draw(st.text(max_size=20))] = entries.pop(name)
        return
    else:
        entry = draw(json_values)
    entries[name] = entry


@st.composite
def checkpoint_files(draw) -> bytes:
    """A checkpoint's bytes: a valid one with 1-4 header, tensor-table or data edits, noise, or a valid
    one with header fields it does not know (a newer writer's; they must load)."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=300))
    entries, metadata, data = split_safetensors(draw(st.sampled_from(valid_checkpoints())))
    if kind <= 3:
        new_keys = st.text(max_size=12).filter(lambda key: key not in metadata)
        metadata.update(draw(st.dictionaries(new_keys, text_or_json(), min_size=1, max_size=3)))
        return safetensors_bytes(entries, metadata, data)
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(["metadata", "metadata", "entries", "data"]))
        if target == "metadata":
            draw(metadata_edit(metadata))
        elif target == "entries":
            draw(entry_edit(entries))
        else:
            cut = draw(st.integers(0, len(data)))
            data = data[:cut] + draw(st.binary(max_size=16))
    return safetensors_bytes(entries, metadata, data)


@st.composite
def plain_weight_files(draw) -> bytes:
    """Plain safetensors weights (``features.N.*``) whose ``preprocessing`` metadata is anything, or absent
    (other metadata, which plain weights may carry, then varies)."""
    state = {"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}
    from safetensors.torch import save

    if draw(st.booleans()):
        metadata = {"preprocessing": draw(_preprocessing_value())}
    else:
        other_keys = (st.just("architecture") | st.text(max_size=8)).filter(lambda key: key != "preprocessing")
        metadata = draw(st.none() | st.dictionaries(other_keys, st.text(max_size=12), min_size=1, max_size=3))
    return save(state, metadata=metadata)


@st.composite
def pickle_files(draw) -> bytes:
    """A .pth file: noise, a truncated pickle, or torch.save of a random structure of tensors and values."""
    import io

    kind = draw(st.sampled_from(["noise", "structure", "truncated", "empty"]))
    if kind == "noise":
        return draw(st.binary(max_size=200))
    if kind == "empty":
        return b""
    leaves = json_values | st.integers(0, 3).map(lambda n: torch.zeros(n))
    value = draw(
        st.dictionaries(
            st.sampled_from(["features.0.weight", "features.0.bias", "state_dict"]) | st.text(max_size=5),
            leaves,
            max_size=4,
        )
        | leaves
    )
    buffer = io.BytesIO()
    torch.save(value, buffer)
    blob = buffer.getvalue()
    return blob[: draw(st.integers(0, len(blob)))] if kind == "truncated" else blob


def profile_documents():
    """A profile JSON document: mostly well-shaped with wrong values, sometimes any JSON."""
    valid = Profile("fine", {"conv1_1": 0.5}, {"profile": "x"}).to_dict()
    shaped = st.fixed_dictionaries(
        {},
        optional={
            "format": st.just(PROFILE_FORMAT) | json_values,
            "method": st.sampled_from(["fine", "structured"]) | json_values,
            "sparsity": st.dictionaries(conv_names, edgy_numbers | json_values, max_size=5) | json_values,
            "source": st.dictionaries(st.text(max_size=5), json_values, max_size=3) | json_values,
        },
    )
    return st.just(valid) | shaped | json_values


def scan_documents():
    """A scan.json document (a grid's configuration) with wrong values, or any JSON."""
    shaped = st.fixed_dictionaries(
        {
            "format": st.just(SCAN_FORMAT) | json_values,
            "config_hash": st.just("abc") | json_values,
            "mode": st.sampled_from(["full", "proxy"]) | json_values,
            "layers": st.lists(conv_names, max_size=3) | json_values,
            "sparsities": st.lists(edgy_numbers, max_size=3) | json_values,
        },
        optional={
            "method": st.just("fine") | json_values,
            "weights": st.just("random:0") | json_values,
            "identity": json_values,
        },
    )
    valid = {
        "format": SCAN_FORMAT,
        "config_hash": "abc",
        "identity": {},
        "method": "fine",
        "mode": "proxy",
        "weights": "random:0",
        "layers": ["conv1_1", "conv1_2"],
        "sparsities": [0.5],
    }
    return (
        st.just(valid)
        | st.builds(lambda key, value: {**valid, key: value}, st.sampled_from(sorted(valid)), json_values)
        | shaped
        | json_values
    )


def record_lines():
    """JSONL record lines of a scan folder: records of the right hash with broken fields, noise, torn lines."""
    record = st.fixed_dictionaries(
        {
            "format": st.just(RECORD_FORMAT),
            "config_hash": st.just("abc") | json_values,
            "cell": st.sampled_from(["conv1_1@0.5000", "conv1_2@0.5000"]) | json_values,
        },
        optional={
            "metrics": st.dictionaries(
                st.sampled_from(["content_ratio", "style_ratio", "ssim", "feature_distortion", "gram_distortion"])
                | st.text(max_size=4),
                edgy_numbers | json_values,
                max_size=5,
            )
            | json_values
        },
    )
    line = record.map(lambda r: json.dumps(r, allow_nan=True)) | json_values.map(json.dumps) | st.text(max_size=20)
    return st.lists(line, max_size=5)


def finetune_states():
    """A fine-tuning state object: the real keys with values of any type."""
    tensors = st.integers(0, 3).map(lambda n: torch.zeros(n)) | st.just(torch.get_rng_state())
    value = json_values | tensors | st.dictionaries(st.text(max_size=5), tensors, max_size=2)
    valid = {
        "version": 1,
        "fingerprint": "f",
        "step": 0,
        "student": {"features.0.bias": torch.zeros(2)},
        "optimizer": {"state": {}, "param_groups": []},
        "torch_rng": torch.get_rng_state(),
        "history": [],
        "seconds": 0.0,
        "extra": {},
    }
    one_field_wrong = st.builds(lambda key, v: {**valid, key: v}, st.sampled_from(sorted(valid)), value)
    return (
        st.just(valid)
        | one_field_wrong
        | st.fixed_dictionaries(
            {"version": st.just(1) | json_values},
            optional={
                key: value
                for key in ("fingerprint", "step", "student", "optimizer", "torch_rng", "history", "seconds", "extra")
            },
        )
    )


weight_specs = (
    st.text(max_size=30)
    | st.builds(lambda s: "random:" + s, st.text(max_size=25))
    | st.builds(lambda s: "hf:" + s, st.text(max_size=40))
    | st.sampled_from(
        [
            "random",
            "random:0",
            "random:-1",
            "random:abc",
            "random:²",
            "random:" + "9" * 30,
            "hf:",
            "hf:a/b@",
            "hf:a/b:",
            "hf:/",
            "x.pth",
            "x.safetensors",
            "caffe",
            "torchvision",
        ]
    )
)


@st.composite
def recoded_checkpoints(draw) -> bytes:
    """A quantised checkpoint whose positions, codes or int8 values are replaced by any bytes of a plausible
    length, with the digest recomputed: the file is self-consistent, so only decoding can catch it."""
    from safetensors.torch import load, save

    from nst_core.model.checkpoint import tensors_digest

    blob = draw(st.sampled_from(valid_checkpoints()[3:]))
    _, metadata, _ = split_safetensors(blob)
    tensors = load(blob)
    key = draw(
        st.sampled_from(sorted(k for k in tensors if k.endswith((".gaps", ".mask", ".codes", ".values", ".scale"))))
    )
    old = tensors[key]
    itemsize = old.element_size()
    count = draw(st.just(old.numel()) | st.integers(0, old.numel() + 4))  # the same length half the time
    data = draw(st.binary(min_size=count * itemsize, max_size=count * itemsize))
    tensors[key] = torch.from_numpy(np.frombuffer(data, dtype=old.numpy().dtype).copy())
    metadata["tensors_sha256"] = tensors_digest(tensors)
    return save(tensors, metadata=metadata)


@cache
def valid_onnx_model() -> bytes:
    """VGG's first block as a Keras export wires it: NHWC input through a Transpose, the first weight stored HWIO
    behind a Transpose and a Cast, the biases behind Identity nodes (small: not a whole VGG, so it never converts)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 3, 3, 64), dtype=np.float32)
    w1 = rng.standard_normal((64, 64, 3, 3), dtype=np.float32)
    inits = [numpy_helper.from_array(w0, "w0_hwio"), numpy_helper.from_array(w1, "w1")]
    inits += [numpy_helper.from_array(np.zeros(64, np.float32), f"b{i}_raw") for i in (0, 1)]
    nodes = [
        helper.make_node("Transpose", ["input"], ["x"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["w0_hwio"], ["w0_f32"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["w0_f32"], ["w0"], perm=[3, 2, 0, 1]),
        helper.make_node("Identity", ["b0_raw"], ["b0"]),
        helper.make_node("Identity", ["b1_raw"], ["b1"]),
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"]),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "block1",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 8, 3])],
        [helper.make_tensor_value_info("c1", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph).SerializeToString()


def _edit_onnx_tensor(draw, tensor) -> None:
    field = draw(st.sampled_from(["dims", "data_type", "raw_data", "external", "float_data"]))
    if field == "dims":
        tensor.ClearField("dims")
        tensor.dims.extend(draw(st.lists(st.integers(-(2**62), 2**62) | st.integers(0, 600), max_size=6)))
    elif field == "data_type":
        tensor.data_type = draw(st.integers(0, 40))
    elif field == "raw_data":
        tensor.raw_data = tensor.raw_data[: draw(st.integers(0, len(tensor.raw_data)))] + draw(st.binary(max_size=8))
    elif field == "external":
        tensor.data_location = 1
        tensor.external_data.add(key="location", value=draw(st.text(max_size=12)))
    else:
        tensor.float_data.extend(draw(st.lists(st.floats(width=32), max_size=8)))


def _edit_onnx_node(draw, node, names: list[str]) -> None:
    field = draw(st.sampled_from(["op_type", "input", "perm"]))
    if field == "op_type":
        node.op_type = draw(st.sampled_from(["Conv", "Identity", "Cast", "Transpose", "Constant", "Relu"]))
    elif field == "input":
        node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(names) | st.text(max_size=6))
    else:
        from onnx import AttributeProto, helper

        node.ClearField("attribute")
        perm = draw(st.lists(st.integers(-3, 6), max_size=6))
        node.attribute.append(helper.make_attribute("perm", perm, attr_type=AttributeProto.INTS))


@st.composite
def onnx_files(draw) -> bytes:
    """An ONNX file: noise, the valid block with flipped bytes, or with one tensor or node field replaced."""
    import onnx

    kind = draw(st.sampled_from(["noise", "flip", "tensor", "node"]))
    if kind == "noise":
        return draw(st.binary(max_size=300))
    blob = valid_onnx_model()
    if kind == "flip":
        data = bytearray(blob)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    model = onnx.ModelProto.FromString(blob)
    if kind == "tensor":
        _edit_onnx_tensor(draw, draw(st.sampled_from(list(model.graph.initializer))))
    else:
        names = [name for node in model.graph.node for name in node.output]
        _edit_onnx_node(draw, draw(st.sampled_from(list(model.graph.node))), names)
    return model.SerializeToString()


@st.composite
def keras_files(draw) -> bytes:
    """A Keras-layout .h5 file built from drawn parts: layer names, kernel and bias shapes and dtypes, either
    layout. Never byte-level damage: the HDF5 C library is not ours to fuzz."""
    import io

    import h5py

    buffer = io.BytesIO()
    names = draw(
        st.lists(
            st.sampled_from(["block1_conv1", "block1_conv2", "block2_conv1"])
            | st.text("block_conv0123456789:", min_size=1, max_size=12),
            max_size=4,
        )
    )
    with h5py.File(buffer, "w") as f:
        root = f.create_group("model_weights") if draw(st.booleans()) else f
        for name in dict.fromkeys(names):
            group = root.create_group(f"{name}/{name}")
            for leaf in draw(st.sets(st.sampled_from(["kernel:0", "bias:0", "kernel", "0"]), max_size=2)):
                shape = tuple(draw(st.lists(st.integers(0, 70), max_size=4)))
                dtype = draw(st.sampled_from(["<f4", "<f2", "<i4", ">f4", "<f8"]))
                group.create_dataset(leaf, shape=shape, dtype=dtype)
    return buffer.getvalue()
