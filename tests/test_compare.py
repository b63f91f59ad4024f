"""nst_core.workflows.compare without Gradio: settings, choosing the pruned network, running both, the table.

Seeded random VGG-19 weights and 64 px images (real weights cannot be downloaded here).
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from nst_core.compress.pruning import Profile, prune, save_profile
from nst_core.core.errors import UserError
from nst_core.model.checkpoint import save_checkpoint
from nst_core.model.weights import URL_SOURCES, load_vgg
from nst_core.workflows import compare

TINY = compare.CompareSettings(size=64, iterations=3)


@pytest.fixture(scope="module")
def dense():
    return compare.load_dense("random:0", fallback=False)


@pytest.fixture
def inputs(tmp_path, content_image, style_image):
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    content_image.save(content)
    style_image.save(style)
    return content, style


def last(events):
    *progress, result = list(events)
    assert all(isinstance(e, compare.RunProgress) for e in progress)
    assert isinstance(result, compare.Comparison)
    return progress, result


def test_defaults_are_valid_and_grow_on_a_gpu():
    cpu, gpu = compare.default_settings(gpu=False), compare.default_settings(gpu=True)
    compare.validate_settings(cpu)
    compare.validate_settings(gpu)
    assert gpu.size == 512 and cpu.size < 512
    # A CPU plans each picture to a time (the table's best schedule for the wait); a GPU runs its iterations.
    assert cpu.to_config().time_budget == compare.CPU_SECONDS_PER_PICTURE and gpu.to_config().time_budget is None
    assert gpu.iterations > cpu.iterations


def test_on_a_time_budget_the_pruned_network_makes_more_iterations(dense, inputs):
    """The same seconds for both: the half-width network (about 3.5x fewer MACs) runs more iterations."""
    content, style = inputs
    half = compare.resolve_pruned("structured:0.5", dense.model)
    budget = dataclasses.replace(TINY, time_budget=3.0)
    _, result = last(compare.run_comparison(dense.model, half, content, [style], budget, previews=1))
    assert len(result.pruned.history) > len(result.dense.history) > 1


@pytest.mark.parametrize(
    "change, word",
    [
        ({"size": 32}, "size"),
        ({"size": 2048}, "size"),
        ({"iterations": 0}, "iterations"),
        ({"style_strength": -1.0}, "style strength"),
        ({"tv_weight": 2.0}, "TV weight"),
        ({"seed": -1}, "seed"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"size": 100.5}, "whole numbers"),
    ],
)
def test_out_of_range_settings_name_the_setting(change, word):
    with pytest.raises(UserError, match=word):
        compare.validate_settings(compare.CompareSettings(**change))


def test_ui_widgets_to_a_pruned_spec():
    assert compare.pruned_spec_from_ui("profile:seed", None, "") == "profile:seed"
    assert compare.pruned_spec_from_ui("profile:seed", None, " me/net ") == "hf:me/net"
    assert (
        compare.pruned_spec_from_ui("profile:seed", None, "hf:me/net:a.safetensors@main")
        == "hf:me/net:a.safetensors@main"
    )
    assert compare.pruned_spec_from_ui("profile:seed", "/tmp/x.json", "me/net") == "/tmp/x.json"  # the upload wins
    with pytest.raises(UserError, match="not a Hub repo id"):
        compare.pruned_spec_from_ui(None, None, "my net")
    with pytest.raises(UserError):
        compare.pruned_spec_from_ui(None, None, "no-slash")
    with pytest.raises(UserError, match="choose a pruned network"):
        compare.pruned_spec_from_ui(None, None, "")


def test_a_huge_repo_id_is_refused_before_anything_repeats_it():
    huge = "me/" + "x" * 100_000
    with pytest.raises(UserError) as info:
        compare.pruned_spec_from_ui(None, None, huge)
    message = str(info.value)
    assert "100,003 characters long" in message and f"at most {compare.HUB_SPEC_LIMIT}" in message
    assert len(message) < 300
    longest = "o" * 96 + "/" + "n" * 96 + ":pruned/seed.safetensors@" + "0" * 38  # a real id at the Hub's limits
    assert len(longest) <= compare.HUB_SPEC_LIMIT
    assert compare.pruned_spec_from_ui(None, None, longest) == "hf:" + longest


def test_public_messages_name_uploads_by_their_own_name_and_stay_short(tmp_path):
    upload = tmp_path / "gradio" / "3f2a9c" / "evil.safetensors"
    message = f"{upload}: not a safetensors file (bad header length)"
    assert (
        compare.public_message(message, [None, str(upload)])
        == "evil.safetensors: not a safetensors file (bad header length)"
    )
    assert compare.public_message("plain", []) == "plain"
    long = compare.public_message("x" * 100_000)
    assert len(long) < compare.MESSAGE_LIMIT + 30 and long.endswith("(100,000 characters)")


def test_dense_falls_back_to_random_weights_with_a_banner(tmp_path):
    missing = tmp_path / "vgg19.pth"
    net = compare.load_dense(str(missing))
    assert net.random and "vgg19.pth" in net.fallback_reason
    banner = net.banner()
    assert "results are not meaningful" in banner and "--weights" in banner
    with pytest.raises(UserError, match="vgg19.pth"):
        compare.load_dense(str(missing), fallback=False)


def test_banner_gives_the_loaders_reason_and_the_apps_own_how_to(tmp_path, monkeypatch):
    """Offline with nothing cached: the loader's error ends with its CLI how-to, which the banner
    replaces with the app's (the URL of the Caffe file and the app's own flag)."""
    monkeypatch.setenv("NST_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    net = compare.load_dense("caffe")
    assert net.random and "Provide weights" in net.fallback_reason
    banner = net.banner()
    assert "(vgg19-d01eb7cb.pth is not cached and offline mode is set)" in banner
    assert "Provide weights" not in banner
    assert (
        f"download `{URL_SOURCES['caffe'].url}`" in banner
        and "python app.py --weights /path/to/vgg19-d01eb7cb.pth" in banner
    )


def test_real_weights_have_no_banner(tmp_path):
    """A local weights file stands in for real weights (same loader path as the Caffe file)."""
    import torch

    from nst_core.model.vgg import random_state_dict

    path = tmp_path / "vgg19-local.pth"
    torch.save(random_state_dict("relu5_3", seed=3), path)
    net = compare.load_dense(str(path))
    assert not net.random and net.banner() is None


def test_resolve_every_kind_of_spec(dense, tmp_path):
    seed = compare.resolve_pruned("profile:seed", dense.model)
    assert seed is compare.resolve_pruned("profile:seed", dense.model)  # cached, not pruned again
    assert seed.model.masks and seed.file_bytes is None

    small = compare.resolve_pruned("structured:0.5", dense.model)
    assert small.model.widths["conv1_1"] == 32

    profile = tmp_path / "scan-selected.json"
    save_profile(Profile("structured", {"conv3_1": 0.5}), profile)
    from_json = compare.resolve_pruned(str(profile), dense.model)
    assert from_json.model.widths["conv3_1"] == 128 and from_json.model.widths["conv3_2"] == 256

    ckpt = save_checkpoint(prune(dense.model, "seed"), tmp_path / "seed.safetensors")
    from_file = compare.resolve_pruned(str(ckpt), dense.model)
    assert from_file.file_bytes == ckpt.stat().st_size and not from_file.notes

    for bad, message in [
        ("structured:lots", "needs a number"),
        ("profile:nope", "nope"),
        (str(tmp_path / "absent.safetensors"), "does not exist"),
        (str(tmp_path / "net.onnx"), "unknown pruned network"),
    ]:
        with pytest.raises(UserError, match=message):
            compare.resolve_pruned(bad, dense.model)


def test_checkpoint_from_other_weights_gets_a_note(dense, tmp_path):
    other = prune(load_vgg("random:5", last_layer="relu5_3"), "seed")
    ckpt = save_checkpoint(other, tmp_path / "other.safetensors")
    assert any("different networks" in n for n in compare.resolve_pruned(str(ckpt), dense.model).notes)


def test_shallow_checkpoint_is_refused(dense, tmp_path):
    shallow = prune(load_vgg("random:0", last_layer="relu3_1"), "seed")
    ckpt = save_checkpoint(shallow, tmp_path / "shallow.safetensors")
    with pytest.raises(UserError, match="relu3_1"):
        compare.resolve_pruned(str(ckpt), dense.model)


def test_identical_networks_give_identical_outputs(dense, inputs):
    """Removing 0% of filters leaves the dense network: with the same seed and init, both runs
    must produce the same image, and the judge must say so."""
    content, style = inputs
    same = compare.resolve_pruned("structured:0", dense.model)
    progress, result = last(compare.run_comparison(dense.model, same, content, [style], TINY, previews=3))
    assert np.array_equal(np.asarray(result.dense.image), np.asarray(result.pruned.image))
    assert result.judged["ssim"] == pytest.approx(1.0)
    assert result.judged["content_ratio"] == pytest.approx(1.0) and result.judged["style_ratio"] == pytest.approx(1.0)
    assert result.judged["perceptual"] == pytest.approx(0.0, abs=1e-6)  # identical outputs
    assert [e.phase for e in progress if e.progress is None] == ["dense", "pruned", "judge"]
    assert sum(1 for e in progress if e.progress and e.progress.preview is not None) == 2 * TINY.iterations


def test_table_rows(dense, inputs):
    content, style = inputs
    seed = compare.resolve_pruned("profile:seed", dense.model)
    _, result = last(compare.run_comparison(dense.model, seed, content, [style, style], TINY))
    rows = {r[0]: r[1:] for r in result.summary_rows()}
    assert rows["nonzero parameters"][0] == "17,664,576"  # VGG-19 convs up to conv5_3, weights + biases
    assert rows["compression vs dense (conv weights)"][1] == "6.64x"
    assert rows["iterations run"] == ["3 (done)", "3 (done)"]
    assert float(rows["time (s)"][0]) == pytest.approx(result.dense_seconds, abs=0.01)
    assert rows["speedup vs dense"][1] == f"{result.dense_seconds / result.pruned_seconds:.2f}x"
    assert rows["network"][0].startswith("dense VGG-19 (random:")
    distance = rows["judge: perceptual distance to dense output (LPIPS, unlearned)"]
    assert distance == ["0.000", f"{result.judged['perceptual']:.3f}"] and result.judged["perceptual"] > 0
    layers = {r[0]: r for r in result.sparsity_rows()}
    assert len(layers) == 15 and layers["conv4_4"][4] == 0.9 and layers["conv1_1"][3] == 1728


@pytest.mark.parametrize(
    "content, styles, message",
    [
        (None, ["style"], "content image"),
        ("content", [], "at least one style image"),
        ("content", ["style"] * 5, "at most 4"),
        ("text", ["style"], "content image 'notes.txt'"),
    ],
)
def test_bad_inputs(dense, inputs, tmp_path, content, styles, message):
    c, s = inputs
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    paths = {"content": c, "style": s, "text": text, None: None}
    seed = compare.resolve_pruned("profile:seed", dense.model)
    with pytest.raises(UserError, match=message):
        list(compare.run_comparison(dense.model, seed, paths[content], [paths[x] for x in styles], TINY))


def test_cancel_stops_the_work(dense, inputs):
    content, style = inputs
    seed = compare.resolve_pruned("profile:seed", dense.model)
    cancel = threading.Event()
    events = compare.run_comparison(
        dense.model, seed, content, [style], compare.CompareSettings(size=64, iterations=1000), cancel
    )
    seen = []  # (phase, iteration) of every progress report, those queued after the cancel included
    with pytest.raises(compare.Cancelled):
        for event in events:
            if event.progress is not None:
                seen.append((event.phase, event.progress.iteration))
                if event.progress.iteration == 2:
                    cancel.set()
    # The dense run stopped within a few iterations of the cancel (not after its 1000), and the pruned one never ran.
    assert {phase for phase, _ in seen} == {"dense"} and max(i for _, i in seen) <= 10, seen


def test_closing_the_stream_stops_the_worker(dense, inputs):
    content, style = inputs
    seed = compare.resolve_pruned("profile:seed", dense.model)
    events = compare.run_comparison(
        dense.model, seed, content, [style], compare.CompareSettings(size=64, iterations=1000)
    )
    for event in events:
        if event.progress is not None:
            break
    events.close()  # what the app's cancel does to a running generator
    assert not any(t.name == "nst-compare" and t.is_alive() for t in threading.enumerate())


@pytest.mark.slow
def test_fast_choice_is_a_budgeted_network_doing_a_third_of_the_work(dense):
    from nst_core.nst.cost import iteration_macs

    assert (
        "fast: ~3x (budgeted widths, pruned on the fly)",
        "fast:3",
    ) in compare.named_choices()
    fast = compare.resolve_pruned("fast:3", dense.model)
    widths = fast.model.widths
    assert all(w % 8 == 0 for w in widths.values()) and fast.model.kept_channels
    assert iteration_macs(dense.model.widths, 512, 512) / iteration_macs(widths, 512, 512) >= 3.0
    assert fast.model.provenance["budget"]["budget"] == {"target_speedup": 3.0}
    assert "not fine-tuned" in fast.notes[0]
    for bad, message in [("fast:quick", "needs a speedup"), ("fast:1", "above 1"), ("fast:20", "at most 8")]:
        with pytest.raises(UserError, match=message):
            compare.resolve_pruned(bad, dense.model)


def test_a_released_checkpoint_is_offered_first_and_is_the_default(tmp_path):
    release = "hf:someone/fast-vgg"
    choices = compare.named_choices(["local.safetensors"], release)
    assert choices[0] == ("Hub checkpoint someone/fast-vgg [release]", release)
    assert [spec for _, spec in choices].count(release) == 1 and (
        "checkpoint file local.safetensors",
        "local.safetensors",
    ) in choices
    assert compare.default_pruned(release) == release and compare.default_pruned() == compare.DEFAULT_PRUNED
    assert compare.named_choices(["x.safetensors"], "x.safetensors")[0][0] == "checkpoint file x.safetensors [release]"


def test_the_apps_style_controls_reach_both_runs(dense, inputs, tmp_path, content_image):
    """Mask, per-style weights, style scale and colour matching pass through to both runs (the
    structured:0 network is the dense one, so both outputs must obey the mask alike)."""
    from PIL import Image

    content, style = inputs
    mask = tmp_path / "mask.png"
    Image.fromarray(np.tile(np.r_[np.zeros(32), np.full(32, 255)].astype(np.uint8), (48, 1)), mode="L").save(mask)
    settings = compare.CompareSettings(
        size=64, iterations=2, style_scale=0.5, style_weights=(3.0, 1.0), color="histogram", mask=str(mask)
    )
    config = settings.to_config()
    assert (config.style_scale, config.style_blend, config.color, config.mask) == (
        0.5,
        [3.0, 1.0],
        "histogram",
        str(mask),
    )
    same = compare.resolve_pruned("structured:0", dense.model)
    _, result = last(compare.run_comparison(dense.model, same, content, [style, style], settings))
    original = np.asarray(content_image, dtype=np.float64)
    for image in (result.dense.image, result.pruned.image):
        out = np.asarray(image, dtype=np.float64)
        assert np.abs(out[:, :32] - original[:, :32]).max() <= 1 and np.abs(out[:, 32:] - original[:, 32:]).mean() > 0.5
    with pytest.raises(UserError, match="1 style weights given for 2"):
        list(
            compare.run_comparison(
                dense.model,
                same,
                content,
                [style, style],
                compare.CompareSettings(size=64, iterations=1, style_weights=(1.0,)),
            )
        )
    with pytest.raises(UserError, match="style scale must be between"):
        compare.validate_settings(compare.CompareSettings(style_scale=9.0))
