"""Fine-grained and structured pruning, profiles and the sparsity report.

Random seeded weights stand in for the Caffe VGG-19 (which cannot be downloaded here);
the shapes are the real VGG-19 shapes, so every count below is the real network's count.
"""

from __future__ import annotations

import json

import pytest
import torch

from nst_core.cli import main
from nst_core.compress.pruning import (
    PROFILES,
    Profile,
    ProfileError,
    apply_masks,
    channels_to_keep,
    filter_l1_norms,
    load_profile,
    prune,
    prune_fine,
    prune_structured,
    prune_to_widths,
    save_profile,
    sparsity_report,
    threshold_for_global_sparsity,
)
from nst_core.model.layers import CONV_NAMES
from nst_core.model.vgg import VGGFeatures, load_checkpoint
from nst_core.model.weights import load_vgg
from nst_core.nst.cost import iteration_macs


@pytest.fixture(scope="module")
def full() -> VGGFeatures:
    return load_vgg("random:0", last_layer="relu5_4")


@pytest.fixture(scope="module")
def small() -> VGGFeatures:
    return load_vgg("random:1", last_layer="relu3_1")


def test_seed_profile_reproduces_the_seed_counts(full):
    pruned = prune(full, load_profile("seed"))
    report = sparsity_report(pruned)
    assert report.total_dense_parameters == 20_024_384  # the seed's "conv weights" include biases
    assert report.total_weights == 20_018_880
    # Seed: 3.02M nonzeros, 6.64x.
    assert round(report.total_kept_parameters / 1e6, 2) == 3.02
    assert f"{report.compression:.2f}" == "6.64"
    for row in report.rows:
        expected = round(PROFILES["seed"][row.name] * row.weights)
        assert row.weights - row.nonzeros == expected, row.name
    assert pruned.provenance["method"] == "fine"
    assert pruned.provenance["sparsity"] == PROFILES["seed"]


def test_exact_count_per_layer_smallest_magnitudes_and_biases_kept(small):
    sparsity = {"conv1_1": 0.33, "conv1_2": 0.5, "conv2_2": 0.77}
    pruned = prune_fine(small, sparsity)
    for name in small.conv_names:
        before, after = small.conv(name).weight, pruned.conv(name).weight
        n = before.numel()
        zeroed = int((after == 0).sum())
        assert zeroed == round(sparsity.get(name, 0.0) * n), name
        if name in sparsity:
            # Every zeroed weight is no larger in magnitude than every kept weight.
            mask = pruned.masks[name]
            assert mask.dtype == torch.bool and mask.shape == before.shape
            assert torch.equal(mask, after != 0)
            assert before.abs()[~mask].max() <= before.abs()[mask].min()
            assert torch.equal(after[mask], before[mask])
        else:
            assert name not in pruned.masks  # absent from the dict -> dense
            assert torch.equal(after, before)
        assert torch.equal(pruned.conv(name).bias, small.conv(name).bias)
    # The input network is untouched.
    assert all(int((small.conv(n).weight == 0).sum()) == 0 for n in small.conv_names)


def test_ties_are_broken_by_flat_index_deterministically():
    model = VGGFeatures("relu1_1")
    with torch.no_grad():
        model.conv("conv1_1").weight.fill_(1.0)  # all magnitudes tie
    pruned = prune_fine(model, {"conv1_1": 0.25})
    flat = pruned.masks["conv1_1"].flatten()
    k = round(0.25 * flat.numel())
    assert not flat[:k].any() and flat[k:].all()


def test_determinism(small):
    a = prune_fine(small, 0.6)
    b = prune_fine(small, 0.6)
    for name in small.conv_names:
        assert torch.equal(a.masks[name], b.masks[name])
    sa, sb = prune_structured(small, 0.5), prune_structured(small, 0.5)
    assert all(torch.equal(sa.kept_channels[n], sb.kept_channels[n]) for n in small.conv_names)
    assert all(torch.equal(x, y) for x, y in zip(sa.state_dict().values(), sb.state_dict().values()))


def test_layers_past_last_layer_are_ignored_and_bad_names_rejected(small):
    pruned = prune_fine(small, PROFILES["seed"])
    assert set(pruned.masks) == set(small.conv_names)
    with pytest.raises(ProfileError, match="conv9_9"):
        prune_fine(small, {"conv9_9": 0.5})
    with pytest.raises(ProfileError, match="conv1_2"):
        prune_fine(small, {"conv1_2": 1.5})
    with pytest.raises(ProfileError, match="conv1_2"):
        prune_structured(small, {"conv1_2": 1.0})


def test_global_threshold(small):
    t = threshold_for_global_sparsity(small, 0.7)
    pruned = prune_fine(small, global_threshold=t)
    report = sparsity_report(pruned)
    assert report.total_weights - report.total_nonzeros == round(0.7 * report.total_weights)
    for name in small.conv_names:
        w = small.conv(name).weight.abs()
        assert torch.equal(pruned.masks[name], w >= t)
    with pytest.raises(ProfileError):
        prune_fine(small, 0.5, global_threshold=t)


def test_masks_reapplied_after_an_update(small):
    pruned = prune_fine(small, 0.5)
    with torch.no_grad():
        for conv in pruned.convs().values():
            conv.weight.add_(1.0)  # what an optimizer step does to pruned weights
    apply_masks(pruned)
    for name in small.conv_names:
        weight = pruned.conv(name).weight
        assert int((weight == 0).sum()) == round(0.5 * weight.numel())
        assert torch.equal(weight != 0, pruned.masks[name])  # the zeros are exactly the pruned weights
        assert not torch.signbit(weight[~pruned.masks[name]]).any()  # +0.0, never -0.0


def test_channels_to_keep_rounding():
    assert channels_to_keep(64, 0.5) == 32
    assert channels_to_keep(64, 0.3) == 48  # 44.8 -> nearest multiple of 8
    assert channels_to_keep(64, 0.99) == 8  # never below 8
    assert channels_to_keep(512, 0.0) == 512
    assert channels_to_keep(64, 0.01) == 64


def test_structured_shapes_chain_and_forward_runs(full):
    ratios = {"conv1_1": 0.5, "conv2_1": 0.3, "conv3_4": 0.9, "conv5_4": 0.5}
    small = prune_structured(full, ratios)
    assert type(small) is VGGFeatures
    expected = {name: channels_to_keep(full.widths[name], ratios.get(name, 0.0)) for name in CONV_NAMES}
    assert small.widths == expected
    in_ch = 3
    for name in CONV_NAMES:
        conv = small.conv(name)
        assert conv.weight.shape == (expected[name], in_ch, 3, 3)
        assert conv.bias.shape == (expected[name],)
        assert small.kept_channels[name].dtype == torch.long
        assert small.kept_channels[name].numel() == expected[name]
        assert torch.equal(small.kept_channels[name], small.kept_channels[name].sort().values)
        in_ch = expected[name]
    out = small(torch.rand(1, 3, 32, 32) * 255, ["relu3_4", "relu5_4"])
    assert out["relu3_4"].shape == (1, expected["conv3_4"], 8, 8)
    assert out["relu5_4"].shape == (1, expected["conv5_4"], 2, 2)
    assert small.provenance["method"] == "structured"
    # It is physically smaller.
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in full.parameters())


def test_structured_kept_channel_map_is_right(small):
    pruned = prune_structured(small, {"conv1_1": 0.5, "conv1_2": 0.75})
    kept = pruned.kept_channels["conv1_1"]
    # The kept filters are exactly those of largest L1 norm.
    norms = filter_l1_norms(small.conv("conv1_1"))
    assert norms[kept].min() >= norms[[i for i in range(64) if i not in set(kept.tolist())]].max()
    image = torch.rand(1, 3, 16, 16) * 255
    dense = small(image, ["relu1_1", "relu1_2", "conv2_1"])
    ours = pruned(image, ["relu1_1", "relu1_2"])
    # conv1_1 keeps its inputs, so its kept outputs equal the dense outputs at the kept channels.
    torch.testing.assert_close(ours["relu1_1"], dense["relu1_1"][:, kept])
    # conv1_2 lost input channels, so it differs from the dense net, but its channel map still indexes the teacher.
    assert pruned.kept_channels["conv1_2"].numel() == 16
    assert torch.equal(pruned.kept_channels["conv2_1"], torch.arange(128))


def test_structured_composes_kept_channels_with_an_earlier_pruning(small):
    once = prune_structured(small, {"conv1_1": 0.5})
    twice = prune_structured(once, {"conv1_1": 0.5})
    assert twice.widths["conv1_1"] == 16
    # Indices refer to the dense teacher, and are a subset of what the first pruning kept.
    assert set(twice.kept_channels["conv1_1"].tolist()) <= set(once.kept_channels["conv1_1"].tolist())
    image = torch.rand(1, 3, 16, 16) * 255
    torch.testing.assert_close(
        twice(image, ["relu1_1"])["relu1_1"], small(image, ["relu1_1"])["relu1_1"][:, twice.kept_channels["conv1_1"]]
    )


def test_fine_then_structured_keeps_masks_in_step(small):
    fine = prune_fine(small, 0.5)
    both = prune_structured(fine, 0.5)
    for name in small.conv_names:
        assert both.masks[name].shape == both.conv(name).weight.shape
        assert torch.equal(both.masks[name], both.conv(name).weight != 0)


def test_profile_round_trip_and_errors(tmp_path):
    profile = Profile("structured", {"conv2_1": 0.5, "conv1_1": 0.25}, {"scan": "abc", "tolerance": 0.1})
    path = tmp_path / "p.json"
    save_profile(profile, path)
    data = json.loads(path.read_text())
    assert data["format"] == "nst-profile/1" and list(data["sparsity"]) == ["conv1_1", "conv2_1"]
    loaded = load_profile(path)
    assert loaded == profile
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]  # no temp files left behind

    with pytest.raises(ProfileError, match="no profile named"):
        load_profile(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ProfileError, match="bad.json"):
        load_profile(tmp_path / "bad.json")
    (tmp_path / "fmt.json").write_text(json.dumps({"format": "other", "method": "fine", "sparsity": {}}))
    with pytest.raises(ProfileError, match="format"):
        load_profile(tmp_path / "fmt.json")
    (tmp_path / "method.json").write_text(json.dumps({"format": "nst-profile/1", "method": "magic", "sparsity": {}}))
    with pytest.raises(ProfileError, match="magic"):
        load_profile(tmp_path / "method.json")


def test_prune_dispatches_on_method(small):
    structured = prune(small, Profile("structured", {"conv1_1": 0.5}, {}))
    assert structured.widths["conv1_1"] == 32 and not structured.masks
    fine = prune(small, Profile("fine", {"conv1_1": 0.5}, {}))
    assert fine.widths["conv1_1"] == 64 and set(fine.masks) == {"conv1_1"}


def test_prune_applies_widths_and_global_profiles_as_the_methods_do(small, tmp_path):
    """prune() is the one entry point: a widths profile is prune_to_widths, a global one prune_fine's threshold."""
    scores = {name: torch.arange(width, dtype=torch.float32) for name, width in small.widths.items()}
    by_widths = prune(small, Profile("structured", {}, widths={"conv1_2": 24, "conv2_1": 40}), scores)
    direct = prune_to_widths(small, {"conv1_2": 24, "conv2_1": 40}, scores)
    assert by_widths.widths == direct.widths and by_widths.provenance == direct.provenance
    assert all(torch.equal(a, b) for a, b in zip(by_widths.state_dict().values(), direct.state_dict().values()))
    assert by_widths.kept_channels["conv1_2"].tolist() == list(range(40, 64))  # the highest scores kept

    by_global = prune(small, Profile("fine", {}, global_sparsity=0.6))
    threshold = threshold_for_global_sparsity(small, 0.6)
    assert by_global.provenance == prune_fine(small, global_threshold=threshold).provenance
    assert by_global.provenance["global_threshold"] == threshold

    save_profile(Profile("structured", {}, {"budget": 1}, widths={"conv1_2": 24}), tmp_path / "w.json")
    assert load_profile(tmp_path / "w.json").widths == {"conv1_2": 24}
    with pytest.raises(ProfileError, match="only a structured profile"):
        prune(small, Profile("fine", {"conv1_1": 0.5}), scores)
    with pytest.raises(ProfileError, match="structured method"):
        Profile("fine", {}, widths={"conv1_2": 24})
    with pytest.raises(ProfileError, match="fine method"):
        Profile("structured", {}, global_sparsity=0.5)
    with pytest.raises(ProfileError, match="not both"):
        Profile("structured", {"conv1_1": 0.5}, widths={"conv1_2": 24})


def test_cli_prune_reports_and_saves_a_checkpoint(tmp_path, capsys):
    ckpt, report = tmp_path / "s.safetensors", tmp_path / "r.json"
    args = [
        "prune",
        "--weights",
        "random:3",
        "--last-layer",
        "relu2_1",
        "--sparsity",
        "0.5",
        "--method",
        "structured",
        "--importance",
        "l1",  # the default ranks by activation on the bundled examples; L1 is what prune_structured does
        "--save",
        str(ckpt),
        "--encoding",
        "dense",
        "--dtype",
        "fp32",
        "--json",
        str(report),
    ]
    assert main(args) == 0
    assert "compression vs dense: 3.94x" in capsys.readouterr().out  # 112,320 -> 28,512 weights
    data = json.loads(report.read_text())
    assert data["report"]["total_nonzeros"] == 3 * 32 * 9 + 32 * 32 * 9 + 32 * 64 * 9
    loaded = load_checkpoint(ckpt)
    expected = prune_structured(load_vgg("random:3", last_layer="relu2_1"), 0.5)
    assert loaded.widths == expected.widths == {"conv1_1": 32, "conv1_2": 32, "conv2_1": 64}
    assert all(torch.equal(loaded.kept_channels[n], expected.kept_channels[n]) for n in expected.conv_names)
    assert main(["prune", "--weights", "random", "--profile", "seed", "--save", str(tmp_path / "x.pth")]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err
    assert main(["prune", "--weights", "random", "--profile", str(tmp_path / "missing.json")]) == 2


def test_structured_report_shows_what_was_removed_and_the_work_saved(capsys):
    """A structured network is smaller, not sparser: the report shows filters kept of dense, the
    fraction of dense weights removed, and the MACs of an iteration (not 'sparsity 0.000')."""
    assert (
        main(
            [
                "prune",
                "--weights",
                "random:3",
                "--last-layer",
                "relu2_1",
                "--sparsity",
                "0.5",
                "--method",
                "structured",
                "--size",
                "64",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("conv")}
    assert rows["conv1_1"][1] == "32/64" and rows["conv1_2"][1] == "32/64" and rows["conv2_1"][1] == "64/128"
    assert rows["conv1_1"][4] == "50.0%" and rows["conv1_2"][4] == "75.0%"  # conv1_2 also lost half its inputs
    dense = {"conv1_1": 64, "conv1_2": 64, "conv2_1": 128}
    pruned = {"conv1_1": 32, "conv1_2": 32, "conv2_1": 64}
    expected = iteration_macs(dense, 64, 64) / iteration_macs(pruned, 64, 64)
    assert f"predicted speedup {expected:.2f}x" in out and "at 64x64 px" in out
    report = sparsity_report(prune_structured(load_vgg("random:3", last_layer="relu2_1"), 0.5), 64)
    assert report.total_macs == iteration_macs(pruned, 64, 64) and report.predicted_speedup == pytest.approx(expected)

    # Fine-grained zeros do not shrink the work: same MACs as dense, and the report says why.
    assert main(["prune", "--weights", "random:3", "--last-layer", "relu2_1", "--sparsity", "0.5", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "predicted speedup 1.00x" in out and "zeros inside a conv still cost MACs" in out
