"""Every weight source, on files generated here in the real layouts (no weights can be downloaded here)."""

import os
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import save_file

from nst_core.model.layers import CAFFE, CONV_NAMES, DENSE_WIDTHS, TORCHVISION, layer_index, min_input_side
from nst_core.model.vgg import VGGFeatures
from nst_core.model.weight_spec import WeightSpecError, parse_hub_spec, parse_weight_spec
from nst_core.model.weights import WeightsError, load_vgg, random_state_dict

CLASSIFIER_SHAPES = {  # torchvision's and the Caffe conversion's classifier, identical shapes
    "classifier.0.weight": (4096, 25088),
    "classifier.0.bias": (4096,),
    "classifier.3.weight": (4096, 4096),
    "classifier.3.bias": (4096,),
    "classifier.6.weight": (1000, 4096),
    "classifier.6.bias": (1000,),
}


def full_features(seed: int = 3) -> dict:
    """All 16 convs at their real shapes (features.0 .. features.34)."""
    return random_state_dict("relu5_4", seed=seed)


def expanded(shape) -> torch.Tensor:
    # Real shape, one element of storage: torch.save stores the storage, so the file stays tiny
    # while the key layout and shapes are exactly the real ones.
    return torch.zeros(1).expand(*shape)


def test_layer_table():
    assert len(CONV_NAMES) == 16
    assert layer_index("conv1_1") == 0 and layer_index("pool5") == 36 and layer_index("conv5_4") == 34
    assert sum(DENSE_WIDTHS[n] * 9 * (3 if n == "conv1_1" else 0) for n in CONV_NAMES) == 64 * 27
    assert min_input_side("relu5_3") == 16 and min_input_side("relu1_1") == 1
    with pytest.raises(ValueError, match="unknown VGG-19 layer 'conv6_1'"):
        layer_index("conv6_1")


def test_truncation_drops_later_layers():
    model = VGGFeatures("relu4_2")
    assert len(model.features) == layer_index("relu4_2") + 1
    assert model.conv_names[-1] == "conv4_2"
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in VGGFeatures().parameters())


def test_preprocessing_matches_each_weight_family():
    pixel = torch.tensor([200.0, 100.0, 50.0]).view(1, 3, 1, 1)  # RGB 0..255
    caffe = VGGFeatures("relu1_1", preprocessing=CAFFE).preprocess(pixel).flatten().tolist()
    assert caffe == pytest.approx([50 - 103.939, 100 - 116.779, 200 - 123.68])  # BGR, minus BGR mean
    tv = VGGFeatures("relu1_1", preprocessing=TORCHVISION).preprocess(pixel).flatten().tolist()
    assert tv == pytest.approx([(200 / 255 - 0.485) / 0.229, (100 / 255 - 0.456) / 0.224, (50 / 255 - 0.406) / 0.225])


def test_random_weights_are_seeded():
    a, b, c = load_vgg("random:1", "relu2_1"), load_vgg("random:1", "relu2_1"), load_vgg("random:2", "relu2_1")
    assert torch.equal(a.conv("conv2_1").weight, b.conv("conv2_1").weight)
    assert not torch.equal(a.conv("conv2_1").weight, c.conv("conv2_1").weight)
    assert a.weight_source == "random:1" and not any(p.requires_grad for p in a.parameters())


def test_caffe_conversion_layout_pth(tmp_path):
    state = {**full_features(), **{k: expanded(s) for k, s in CLASSIFIER_SHAPES.items()}}
    path = tmp_path / "vgg19-d01eb7cb.pth"
    torch.save(state, path)
    model = load_vgg(str(path), last_layer="relu5_3")
    assert model.preprocessing == CAFFE  # a .pth of unknown origin is taken as the seed's Caffe file
    assert torch.equal(model.conv("conv5_3").weight, state["features.32.weight"])
    assert model.weight_source == str(path)


def test_torchvision_layout_with_declared_preprocessing(tmp_path):
    state = {**full_features(4), **{k: expanded(s) for k, s in CLASSIFIER_SHAPES.items()}}
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    model = load_vgg(str(path), last_layer="relu4_2", preprocessing="torchvision")
    assert model.preprocessing == TORCHVISION
    assert torch.equal(model.conv("conv4_2").weight, state["features.21.weight"])


def test_timm_safetensors_layout(tmp_path):
    """timm/vgg19.tv_in1k's model.safetensors: features.N.* plus pre_logits (conv-ified fc) and head."""
    state = full_features(5)
    state.update(
        {
            "pre_logits.fc1.weight": torch.zeros(4096, 512, 7, 7),
            "pre_logits.fc1.bias": torch.zeros(4096),
            "pre_logits.fc2.weight": torch.zeros(4096, 4096, 1, 1),
            "pre_logits.fc2.bias": torch.zeros(4096),
            "head.fc.weight": torch.zeros(1000, 4096),
            "head.fc.bias": torch.zeros(1000),
        }
    )
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    model = load_vgg(str(path), last_layer="relu5_4")
    assert model.preprocessing == TORCHVISION  # timm's tv_in1k uses torchvision's normalisation
    assert torch.equal(model.conv("conv5_4").weight, state["features.34.weight"])


def test_safetensors_metadata_declares_preprocessing(tmp_path):
    path = tmp_path / "caffe-features.safetensors"
    save_file(random_state_dict("relu2_1", seed=6), str(path), metadata={"preprocessing": "caffe"})
    assert load_vgg(str(path), last_layer="relu2_1").preprocessing == CAFFE


def test_cached_caffe_weights_load_without_network(tmp_path, monkeypatch):
    cache = tmp_path / "torch"
    (cache / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(full_features(7), cache / "hub" / "checkpoints" / "vgg19-d01eb7cb.pth")
    monkeypatch.setenv("TORCH_HOME", str(cache))
    monkeypatch.setenv("NST_OFFLINE", "1")
    model = load_vgg("caffe", last_layer="relu3_1")
    assert model.preprocessing == CAFFE and model.weight_source == "caffe"


def test_missing_key_is_named(tmp_path):
    state = full_features()
    del state["features.28.weight"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"missing key 'features.28.weight'"):
        load_vgg(str(path), last_layer="relu5_1")
    # A truncated network does not need what was removed.
    load_vgg(str(path), last_layer="relu4_4")


def test_wrong_shape_is_named(tmp_path):
    state = full_features()
    state["features.5.weight"] = torch.zeros(128, 32, 3, 3)
    path = tmp_path / "shapes.pth"
    torch.save(state, path)
    with pytest.raises(
        WeightsError, match=r"'features.5.weight' has shape \[128, 32, 3, 3\], expected \[128, 64, 3, 3\]"
    ):
        load_vgg(str(path), last_layer="relu2_1")


def test_foreign_files_are_rejected(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(WeightsError, match="not a loadable PyTorch weights file"):
        load_vgg(str(text))
    resnet_like = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, resnet_like)
    with pytest.raises(WeightsError, match="no 'features.N.weight' keys"):
        load_vgg(str(resnet_like))
    pickled = tmp_path / "pickled.pth"
    torch.save({"features.0.weight": torch.zeros(1), "extra": object()}, pickled)
    with pytest.raises(WeightsError, match="not a loadable"):  # weights_only=True refuses arbitrary objects
        load_vgg(str(pickled))
    with pytest.raises(WeightsError, match="does not exist"):
        load_vgg(str(tmp_path / "missing.pth"))
    with pytest.raises(WeightSpecError, match="unknown weight source"):
        load_vgg("vgg-please")


def test_hf_spec_parsing():
    def fields(spec):
        parsed = parse_weight_spec(spec)
        return parsed.kind, parsed.repo, parsed.filename, parsed.revision

    assert fields("hf:timm/vgg19.tv_in1k") == ("hub", "timm/vgg19.tv_in1k", None, None)
    assert fields("hf:me/vgg:w.safetensors@abc123") == ("hub", "me/vgg", "w.safetensors", "abc123")
    for bad in ("hf:justaname", "hf:a/b/c", "hf:/b"):
        with pytest.raises(WeightSpecError, match="OWNER/NAME"):
            parse_weight_spec(bad)
    with pytest.raises(WeightSpecError, match="empty revision"):
        parse_weight_spec("hf:me/vgg@")
    with pytest.raises(WeightSpecError, match="empty file name"):
        parse_weight_spec("hf:me/vgg:@abc")


def test_weight_spec_kinds():
    assert parse_weight_spec("caffe").name == "caffe"
    assert parse_weight_spec("random").seed == 0 and parse_weight_spec("random:7").seed == 7
    assert parse_weight_spec("dir/w.pth").path.name == "w.pth"
    for bad, message in (
        ("random:abc", "non-negative integer"),
        ("random:-1", "non-negative integer"),
        ("vgg", "unknown weight source"),
    ):
        with pytest.raises(WeightSpecError, match=message):
            parse_weight_spec(bad)
    with pytest.raises(WeightSpecError, match="hf:OWNER/NAME"):
        parse_hub_spec("me/net")


@pytest.mark.parametrize("spec", ["caffe", "hf:timm/vgg19.tv_in1k"])
def test_offline_with_nothing_cached_fails_fast(tmp_path, spec):
    """No network here and an empty cache: the loader must fail in seconds with advice, not hang."""
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "HF_HOME": str(tmp_path / "hf")}
    code = f"from nst_core.model.weights import load_vgg\nload_vgg({spec!r})"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    assert "WeightsError" in proc.stderr and "--weights random" in proc.stderr
    assert elapsed < 60, f"took {elapsed:.0f} s: the offline path must not wait on retries"


def test_a_packed_project_checkpoint_loads_as_weights(tmp_path):
    from nst_core.compress.pruning import prune_fine
    from nst_core.model.checkpoint import save_checkpoint

    pruned = prune_fine(load_vgg("random:0", last_layer="relu3_1"), 0.5)
    path = save_checkpoint(pruned, tmp_path / "pruned.safetensors", encoding="packed", dtype="fp32")
    model = load_vgg(str(path), last_layer="relu3_1")
    assert torch.equal(model.conv("conv3_1").weight, pruned.conv("conv3_1").weight)
    assert model.preprocessing == pruned.preprocessing


def test_python_api_warns_once_about_random_weights():
    """Library users see the random-weights warning too (the CLI and the app say it their own way)."""
    code = (
        "import warnings\n"
        "warnings.simplefilter('always')\n"
        "from nst_core.model.weights import RandomWeightsWarning, load_vgg\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    load_vgg('random:0', 'relu1_1'); load_vgg('random:1', 'relu1_1')\n"
        "print(sum(issubclass(w.category, RandomWeightsWarning) for w in seen))\n"
        "print(seen[0].message)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    count, message = proc.stdout.splitlines()[:2]
    assert count == "1" and "random (random:0)" in message and "meaningless" in message
