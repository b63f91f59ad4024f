"""VGG-16 as a second architecture: the network, weight files, stylization, the cost model and checkpoints.

Seeded random weights in torchvision's VGG-16 layout stand in for real ones (the mechanics are the
same); files are written the way ``nst weights convert`` writes a VGG-16: features only, with
``architecture`` and ``preprocessing`` in the safetensors metadata.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from nst_core import cli
from nst_core.compress.pruning import prune_fine, prune_structured, sparsity_report
from nst_core.core.errors import UserError
from nst_core.model.checkpoint import CheckpointError, read_checkpoint_info, save_checkpoint
from nst_core.model.hub.card import base_model_of
from nst_core.model.layers import ARCHITECTURES, VGG16, VGG19, get_architecture, layer_index
from nst_core.model.vgg import VGGFeatures, load_checkpoint, random_state_dict
from nst_core.model.weights import WeightsError, load_vgg
from nst_core.nst.cost import conv_macs, iteration_macs
from nst_core.nst.memory import step_bytes
from nst_core.nst.stylize import StylizeConfig, prepare, stylize
from nst_core.nst.tiling import exact_halo, receptive_field

from support.pictures import make_image

#: torchvision's ``vgg16().features``: the module index of every conv (configuration "D"), and its shape.
TORCHVISION_VGG16_CONVS = {
    0: (64, 3),
    2: (64, 64),
    5: (128, 64),
    7: (128, 128),
    10: (256, 128),
    12: (256, 256),
    14: (256, 256),
    17: (512, 256),
    19: (512, 512),
    21: (512, 512),
    24: (512, 512),
    26: (512, 512),
    28: (512, 512),
}


def torchvision_vgg16_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for index, (out_ch, in_ch) in TORCHVISION_VGG16_CONVS.items():
        shapes[f"features.{index}.weight"] = (out_ch, in_ch, 3, 3)
        shapes[f"features.{index}.bias"] = (out_ch,)
    return shapes


@pytest.fixture(scope="module")
def vgg16_state():
    """A full VGG-16 trunk's seeded random weights in torchvision's layout, with a classifier as a real file has."""
    state = random_state_dict(seed=5, arch="vgg16")
    state["classifier.0.weight"] = torch.zeros(4, 25088)
    return state


@pytest.mark.parametrize(
    "spec, filename, preprocessing",
    [("caffe-vgg16", "vgg16-00b39a1b.pth", "caffe"), ("torchvision-vgg16", "vgg16-397923af.pth", "torchvision")],
)
def test_named_vgg16_sources_load_from_the_cache_as_vgg16(
    spec, filename, preprocessing, vgg16_state, tmp_path, monkeypatch
):
    """The public VGG-16 files by name: read from torch hub's cache (offline here, as a user's second run is)."""
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(vgg16_state, cache / filename)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("NST_OFFLINE", "1")
    model = load_vgg(spec)
    assert (model.arch, model.preprocessing.name, model.weight_source) == ("vgg16", preprocessing, spec)
    assert torch.equal(model.conv("conv5_3").weight, vgg16_state["features.28.weight"])
    assert base_model_of(spec) == ("timm/vgg16.tv_in1k" if spec == "torchvision-vgg16" else None)
    (cache / filename).unlink()
    with pytest.raises(WeightsError, match=f"{filename} is not cached and offline mode is set"):
        load_vgg(spec)


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory, vgg16_state):
    path = tmp_path_factory.mktemp("weights") / "vgg16.safetensors"
    metadata = {"architecture": "vgg16", "preprocessing": "torchvision", "source": "a test"}
    save_file(vgg16_state, str(path), metadata=metadata)
    return path


@pytest.fixture(scope="module")
def vgg16_model(vgg16_file):
    return load_vgg(str(vgg16_file))


def test_the_two_tables():
    assert len(VGG16.conv_names) == 13 and len(VGG19.conv_names) == 16
    assert VGG16.last_layer == "relu5_3" and VGG19.last_layer == "relu5_4"
    assert set(VGG16.layer_names) < set(VGG19.layer_names)
    assert sorted(VGG16.layer_names, key=VGG19.layer_index) == VGG16.layer_names  # same order
    assert {VGG16.layer_index(n) for n in VGG16.conv_names} == set(TORCHVISION_VGG16_CONVS)
    assert layer_index("pool5", "vgg16") == 30 and layer_index("pool5") == 36
    assert ARCHITECTURES == {"vgg16": VGG16, "vgg19": VGG19} and get_architecture(VGG16) is VGG16
    assert VGG16.dense_widths["conv5_3"] == 512 and "conv5_4" not in VGG16.dense_widths


def test_unknown_layer_names_the_architecture():
    with pytest.raises(ValueError, match="unknown VGG-16 layer 'relu5_4'"):
        layer_index("relu5_4", "vgg16")
    with pytest.raises(ValueError, match="unknown architecture 'vgg11'"):
        get_architecture("vgg11")


def test_network_keys_and_shapes_are_torchvisions():
    model = VGGFeatures(arch="vgg16")
    assert model.arch == "vgg16" and model.last_layer == "relu5_3" and len(model.conv_names) == 13
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == torchvision_vgg16_shapes()
    assert len(model.features) == 30  # torchvision's vgg16().features has 31 modules; pool5 is never needed
    assert model.describe()["arch"] == "vgg16"


def test_network_keys_match_torchvision_itself():
    import torchvision  # requirements-dev.txt; the definition users' VGG-16 files come from

    whole = torchvision.models.vgg16(weights=None).state_dict()
    reference = {k: v for k, v in whole.items() if k.startswith("features.")}
    ours = VGGFeatures("pool5", arch="vgg16").state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in reference.items()}


def test_forward_by_layer_names(vgg16_model):
    feats = vgg16_model(torch.rand(1, 3, 64, 64) * 255, ["relu1_2", "relu4_2", "relu5_3"])
    assert feats["relu5_3"].shape == (1, 512, 4, 4) and feats["relu1_2"].shape == (1, 64, 64, 64)
    with pytest.raises(ValueError, match="unknown VGG-16 layer 'relu5_4'"):
        vgg16_model(torch.rand(1, 3, 32, 32), ["relu5_4"])


def test_a_file_with_metadata_loads_as_vgg16(vgg16_model, vgg16_state):
    assert vgg16_model.arch == "vgg16" and vgg16_model.preprocessing.name == "torchvision"
    loaded = vgg16_model.state_dict()
    assert set(loaded) == set(torchvision_vgg16_shapes())
    assert all(torch.equal(loaded[key], vgg16_state[key]) for key in loaded)


def test_a_file_without_metadata_is_inferred_from_its_keys(tmp_path, vgg16_state):
    path = tmp_path / "plain.safetensors"
    save_file(vgg16_state, str(path))
    model = load_vgg(str(path), last_layer="relu4_2")
    assert model.arch == "vgg16" and model.conv_names[-1] == "conv4_2"
    assert torch.equal(model.conv("conv4_1").weight, vgg16_state["features.17.weight"])
    pth = tmp_path / "plain.pth"
    torch.save({k: v for k, v in vgg16_state.items() if k.startswith("features.")}, pth)
    assert load_vgg(str(pth)).arch == "vgg16"


def test_a_vgg19_file_is_still_vgg19(tmp_path):
    path = tmp_path / "vgg19.safetensors"
    save_file(random_state_dict(seed=1), str(path))
    assert load_vgg(str(path)).arch == "vgg19" and load_vgg("random:0").arch == "vgg19"
    with pytest.raises(WeightsError, match="holds VGG-19 weights, not VGG-16"):
        load_vgg(str(path), arch="vgg16")


def test_arch_flag_for_random_weights_and_contradictions(vgg16_file):
    model = load_vgg("random:3", arch="vgg16")
    assert model.arch == "vgg16" and model.last_layer == "relu5_3"
    with pytest.raises(WeightsError, match="holds VGG-16 weights, not VGG-19"):
        load_vgg(str(vgg16_file), arch="vgg19")
    with pytest.raises(WeightsError, match="unknown architecture 'vgg13'"):
        load_vgg("random:0", arch="vgg13")


def test_relu5_4_on_a_vgg16_is_a_one_line_error(vgg16_file, content_image, style_image, vgg16_model):
    with pytest.raises(WeightsError, match="unknown VGG-16 layer 'relu5_4'") as caught:
        load_vgg(str(vgg16_file), last_layer="relu5_4")
    assert "\n" not in str(caught.value)
    config = StylizeConfig(size=64, iterations=2, style_layers="relu1_1,relu5_4")
    with pytest.raises(UserError, match="unknown VGG-16 layer 'relu5_4'") as caught:
        prepare(vgg16_model, content_image, [style_image], config)
    assert "\n" not in str(caught.value)


def test_foreign_architecture_metadata_is_refused(tmp_path, vgg16_state):
    path = tmp_path / "resnet.safetensors"
    save_file({"features.0.weight": vgg16_state["features.0.weight"]}, str(path), metadata={"architecture": "resnet"})
    with pytest.raises(WeightsError, match="metadata 'architecture' is 'resnet'"):
        load_vgg(str(path))


@pytest.mark.parametrize("preset", ["seed", "gatys2016"])
def test_stylize_a_vgg16_runs_with_finite_losses(vgg16_model, content_image, style_image, preset):
    config = StylizeConfig(preset=preset, size=64, iterations=3)
    result = stylize(prepare(vgg16_model, content_image, [style_image], config))
    assert result.image.size == (64, 48) and len(result.history) == 3
    assert all(math.isfinite(value) for row in result.history for value in (row["total"], row["style"]))


def test_stylize_a_vgg16_in_tiles(vgg16_model, style_image):
    content = make_image(96, 72, seed=3)
    prepared = prepare(vgg16_model, content, [style_image], StylizeConfig(size=96, iterations=2, tile=64))
    assert prepared.plan.tiled and prepared.plan.arch == "vgg16"
    assert prepared.describe().endswith("tiles of 64 px (halo 16 px)")
    result = stylize(prepared)
    assert all(math.isfinite(row["total"]) for row in result.history)


def test_receptive_fields_follow_the_architecture():
    assert receptive_field("relu5_3", "vgg16") == 196 and receptive_field("relu5_3") == 220
    assert receptive_field("relu3_3", "vgg16") == receptive_field("relu3_3") == 40  # same layers up to there
    assert exact_halo("relu4_3", "vgg16") < exact_halo("relu4_3")


def hand_count_macs(convs: list[tuple[int, int]], pools_before: list[int], side: int) -> int:
    """Forward MACs: per conv, H * W * in * out * 9 at its resolution (side halved by each pool before it)."""
    return sum((side >> p) ** 2 * cin * cout * 9 for (cin, cout), p in zip(convs, pools_before))


def test_macs_of_vgg16_are_the_hand_count_and_fewer_than_vgg19s():
    convs = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256)]
    convs += [(256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    pools = [0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    expected = hand_count_macs(convs, pools, 64)
    assert sum(conv_macs(VGG16.dense_widths, 64, 64).values()) == expected
    assert sum(conv_macs(VGG16.dense_widths, 64, 64, "vgg16").values()) == expected
    assert iteration_macs(VGG16.dense_widths, 64, 64) == 2 * expected
    assert iteration_macs(VGG16.dense_widths, 64, 64) < iteration_macs(VGG19.dense_widths, 64, 64)
    with pytest.raises(ValueError, match="VGG-16's convs conv1_1 onwards"):
        conv_macs(VGG19.dense_widths, 64, 64, "vgg16")


def test_memory_model_reads_vgg16_widths():
    layers = ["relu1_2", "relu4_2", "relu5_3"]
    vgg16 = step_bytes(VGG16.dense_widths, layers, 128, 128)
    assert 0 < vgg16 < step_bytes(VGG19.dense_widths, layers, 128, 128)
    assert vgg16 == step_bytes(VGG16.dense_widths, layers, 128, 128, arch="vgg16")


def test_vgg16_checkpoint_round_trips_with_its_arch(tmp_path, vgg16_model):
    path = save_checkpoint(vgg16_model, tmp_path / "v16.safetensors", encoding="dense", dtype="fp32")
    info = read_checkpoint_info(path)
    assert info["arch"] == "vgg16" and info["format_version"] == 3
    loaded = load_checkpoint(path)
    assert loaded.arch == "vgg16" and loaded.last_layer == "relu5_3"
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), vgg16_model.state_dict().values()))
    assert load_vgg(str(path)).arch == "vgg16"  # a checkpoint spec is that network


def test_pruned_vgg16_checkpoints_round_trip(tmp_path, vgg16_model):
    small = prune_fine(prune_structured(vgg16_model, 0.5), 0.7)
    assert small.arch == "vgg16" and small.widths["conv5_3"] == 256
    path = save_checkpoint(small, tmp_path / "pruned.safetensors", encoding="packed", dtype="int8")
    loaded = load_checkpoint(path)
    assert loaded.arch == "vgg16" and loaded.widths == small.widths
    assert set(loaded.kept_channels) == set(VGG16.conv_names) and set(loaded.masks) == set(small.masks)
    report = sparsity_report(small, 64)
    assert [row.name for row in report.rows] == VGG16.conv_names


def _rewrite_metadata(source, target, **changes):
    tensors = load_file(str(source))
    with safe_open(str(source), framework="pt") as f:
        metadata = dict(f.metadata())
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    save_file(tensors, str(target), metadata=metadata)
    return target


def test_old_format_versions_load_as_vgg19(tmp_path):
    model = load_vgg("random:0", last_layer="relu2_1")
    path = save_checkpoint(model, tmp_path / "v3.safetensors", dtype="fp32")
    for version, arch in (("2", None), ("2", "vgg19"), ("1", None)):
        old = _rewrite_metadata(path, tmp_path / f"v{version}{arch}.safetensors", format_version=version, arch=arch)
        loaded = load_checkpoint(old)
        assert loaded.arch == "vgg19" and read_checkpoint_info(old)["arch"] == "vgg19"
        assert torch.equal(loaded.conv("conv2_1").weight, model.conv("conv2_1").weight)


def test_header_arch_is_checked(tmp_path, vgg16_model):
    path = save_checkpoint(vgg16_model, tmp_path / "v16.safetensors", dtype="fp16")
    cases = {
        "missing.safetensors": ({"arch": None}, "'arch' is missing"),
        "old.safetensors": ({"format_version": "2"}, "arch"),  # before version 3 only a VGG-19
        "other.safetensors": ({"arch": "vgg11"}, "arch"),
        "vgg19.safetensors": ({"arch": "vgg19"}, "widths"),  # a VGG-16's widths are not a VGG-19's
    }
    for name, (changes, words) in cases.items():
        edited = _rewrite_metadata(path, tmp_path / name, **changes)
        with pytest.raises(CheckpointError, match=words) as caught:
            load_checkpoint(edited)
        assert "\n" not in str(caught.value)
    widths = dict(vgg16_model.widths, conv5_3=1024)
    wide = _rewrite_metadata(path, tmp_path / "wide.safetensors", widths=json.dumps(widths))
    with pytest.raises(CheckpointError, match="conv5_3"):
        load_checkpoint(wide)


def test_nst_stylize_on_a_vgg16_file_and_random_vgg16(tmp_path, vgg16_file, capsys):
    content, style = "examples/content/lakeside.jpg", "examples/style/swirls.jpg"
    common = ["--size", "64", "--iterations", "2", "--device", "cpu"]
    out = tmp_path / "out.png"
    assert cli.main(["stylize", content, style, "-o", str(out), "--weights", str(vgg16_file), *common]) == 0
    assert out.exists()
    assert cli.main(["stylize", content, style, "-o", str(out), "--weights", "random", "--arch", "vgg16", *common]) == 0
    capsys.readouterr()
    argv = ["stylize", content, style, "-o", str(out), "--weights", str(vgg16_file), "--style-layers", "relu5_4"]
    assert cli.main([*argv, *common]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown VGG-16 layer 'relu5_4'" in err and len(err.splitlines()) == 1


def test_nst_prune_keeps_a_vgg16(tmp_path, vgg16_file, capsys):
    out = tmp_path / "pruned16.safetensors"
    argv = ["prune", "--weights", str(vgg16_file), "--method", "structured", "--sparsity", "0.5", "--size", "64"]
    assert cli.main([*argv, "--save", str(out)]) == 0
    assert capsys.readouterr().out.startswith("VGG-16 up to relu5_3")
    loaded = load_checkpoint(out)
    assert loaded.arch == "vgg16" and loaded.widths == {name: width // 2 for name, width in VGG16.dense_widths.items()}


def test_nst_scan_on_a_vgg16_scans_only_its_convs(tmp_path, vgg16_file):
    """The scan's grid is the loaded network's: a VGG-16 has no conv3_4 or conv4_4 (the grid once took VGG-19's
    list and stopped with a KeyError at conv3_4); random VGG-16 weights (--arch) hash apart from VGG-19's."""
    from nst_core.compress.scan import ScanConfig, merge_scan

    content, style = tmp_path / "c.png", tmp_path / "s.png"
    make_image(64, 64, 1).save(content)
    make_image(64, 64, 2).save(style)
    common = ["--sparsities", "0.5", "--mode", "proxy", "--size", "32", "--iterations", "1"]
    out = tmp_path / "scan16"
    assert (
        cli.main(
            [
                "scan",
                "run",
                "--weights",
                str(vgg16_file),
                "--content",
                str(content),
                "--style",
                str(style),
                "--out",
                str(out),
                *common,
            ]
        )
        == 0
    )
    table = merge_scan(out)
    assert [row["layer"] for row in table.rows] == VGG16.conv_names  # the seed preset reads relu5_3: all 13
    assert json.loads((out / "scan.json").read_text())["identity"]["arch"] == "vgg16"
    random16 = ScanConfig(str(content), [str(style)], weights="random:0", arch="vgg16")
    random19 = ScanConfig(str(content), [str(style)], weights="random:0")
    assert random16.config_hash() != random19.config_hash() and "arch" not in random19.identity()
    assert "conv3_4" not in random16.scanned_layers() and "conv3_4" in random19.scanned_layers()


def test_the_app_names_the_dense_networks_architecture():
    """A server started on VGG-16 weights says VGG-16 in its title, its header and its MCP/API description."""
    gr = pytest.importorskip("gradio")
    from nst_core.app.api_docs import tool_description
    from nst_core.app.handler import RunHandler
    from nst_core.app.page import build_app
    from nst_core.model.weights import load_vgg
    from nst_core.workflows.dense import DenseNetwork

    dense = DenseNetwork(load_vgg("random:0", last_layer="relu5_3", arch="vgg16"), "random:0")
    assert "VGG-16 weights: random:0" in tool_description(RunHandler.run, dense, 300)
    demo = build_app(dense)
    assert demo.title == "Pruned VGG-16 style transfer"
    headers = [block.value for block in demo.blocks.values() if isinstance(block, gr.Markdown)]
    assert any(text.startswith("# Dense vs pruned VGG-16 style transfer") for text in headers)
    assert not any("VGG-19" in text for text in headers)
