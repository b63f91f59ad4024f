"""Fine-tuning by distillation: masks kept to the bit, structured channel matching, recovery,
exact resume after a real interruption, and the `nst finetune` command.

Everything runs on seeded random VGG-19 weights (no weights can be downloaded here): the
mechanics (masking, matching, resuming, measuring) are the same as with the real weights;
only the numbers mean nothing visually. Networks are truncated at relu2_1 and crops are
32-64 px so the whole file stays fast on two CPU cores.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nst_core.cli import main
from nst_core.compress.calibration import load_folder, split_heldout
from nst_core.compress.finetune import (
    FinetuneConfig,
    Ranks,
    RecoveryConfig,
    distillation_terms,
    distortion,
    finetune,
    learning_rate,
    teacher_at_kept_channels,
    train,
)
from nst_core.compress.pruning import prune_fine, prune_structured
from nst_core.core.errors import UserError
from nst_core.model.vgg import load_checkpoint
from nst_core.model.weights import load_vgg

from support.interrupt import kill_once_state_reaches
from support.pictures import write_images

LAYERS = ["relu1_1", "relu2_1"]
NST = [sys.executable, "-c", "import sys; from nst_core.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("calib")
    write_images(folder, 5)
    return folder


@pytest.fixture(scope="module")
def split(image_dir):
    return split_heldout(load_folder(image_dir, max_side=64), count=2, seed=0)


@pytest.fixture(scope="module")
def teacher():
    return load_vgg("random:0", last_layer="relu2_1")


def _config(**overrides) -> FinetuneConfig:
    base = dict(preset="seed", layers=LAYERS, steps=12, batch_size=2, crop_size=32, lr=1e-3, checkpoint_every=4, seed=3)
    base.update(overrides)
    return FinetuneConfig(**base)


def test_fine_grained_sparsity_identical_to_the_bit(teacher, split):
    train_images, _ = split
    student = prune_fine(teacher, 0.7)
    masks_before = {n: m.clone() for n, m in student.masks.items()}
    weights_before = {n: c.weight.detach().clone() for n, c in student.convs().items()}

    train(teacher, student, train_images, _config(), progress=False)

    for name, conv in student.convs().items():
        weight = conv.weight.detach()
        assert torch.equal(student.masks[name], masks_before[name]), name
        # The set of zero weights is exactly the pruned set, before and after.
        assert torch.equal(weight == 0, weights_before[name] == 0), name
        assert torch.equal(weight == 0, ~masks_before[name]), name
        assert int((weight == 0).sum()) == int((~masks_before[name]).sum()), name
        # ...and training really changed the kept weights.
        assert not torch.equal(weight[masks_before[name]], weights_before[name][masks_before[name]]), name


def test_pruned_weights_get_no_adam_momentum(teacher, split, monkeypatch):
    """Gradients of pruned weights are zeroed before the step, so Adam's moments for them stay 0.

    A moment that was ever nonzero only decays and never returns to exactly 0, so checking
    after the last step covers every step."""
    train_images, _ = split
    student = prune_fine(teacher, 0.5)
    steps_taken = []

    class Spy(torch.optim.Adam):
        def step(self, *a, **k):
            out = super().step(*a, **k)
            steps_taken.append(self)
            return out

    monkeypatch.setattr(torch.optim, "Adam", Spy)  # observe the real optimizer, do not replace it
    train(teacher, student, train_images, _config(steps=3), progress=False)
    assert len(steps_taken) == 3 and all(opt is steps_taken[0] for opt in steps_taken)
    opt = steps_taken[0]
    trained = [p for group in opt.param_groups for p in group["params"]]
    assert len(trained) == len(list(student.parameters()))
    assert all(p is q for p, q in zip(trained, student.parameters()))  # the student's own tensors, all of them
    assert set(student.masks) == set(student.conv_names)
    for name, mask in student.masks.items():
        weight = student.conv(name).weight
        assert weight in opt.state, name  # Adam has state for every masked weight...
        state = opt.state[weight]
        assert int(state["step"]) == 3, name
        assert bool((~mask).any()) and bool(mask.any()), name
        for key in ("exp_avg", "exp_avg_sq"):
            moment = state[key]
            assert moment.shape == mask.shape, (name, key)
            assert torch.all(moment[~mask] == 0), (name, key)  # ...exactly zero at every pruned weight
            assert torch.any(moment[mask] != 0), (name, key)  # ...and alive at the kept ones


def test_structured_student_is_matched_at_its_kept_channels(teacher, split):
    train_images, heldout = split
    student = prune_structured(teacher, 0.5)
    x = heldout[0].pixels.unsqueeze(0)
    with torch.no_grad():
        targets = teacher_at_kept_channels(teacher(x, LAYERS), student)
        acts = student(x, LAYERS)
    # conv1_1 sees the full image, so its kept filters reproduce the teacher's channels exactly.
    assert targets["relu1_1"].shape[1] == student.widths["conv1_1"] < teacher.widths["conv1_1"]
    assert torch.allclose(acts["relu1_1"], targets["relu1_1"])
    # relu2_1 lost inputs (conv1_2 was pruned), so it differs, and that is what training fixes.
    assert targets["relu2_1"].shape == acts["relu2_1"].shape
    terms = distillation_terms(acts, targets)
    assert float(terms["feature"]) > 0

    before = distortion(teacher, student, heldout, LAYERS, max_side=64)
    assert before["layers"]["relu1_1"]["feature"] < 1e-10
    train(teacher, student, train_images, _config(steps=10), progress=False)
    after = distortion(teacher, student, heldout, LAYERS, max_side=64)
    assert after["layers"]["relu2_1"]["feature"] < before["layers"]["relu2_1"]["feature"]


@pytest.mark.slow
def test_distortion_on_heldout_images_falls(teacher, split):
    train_images, heldout = split
    assert not {im.name for im in heldout} & {im.name for im in train_images}
    student = prune_fine(teacher, 0.7)
    before = distortion(teacher, student, heldout, LAYERS, max_side=64)
    train(teacher, student, train_images, _config(steps=15), progress=False)
    after = distortion(teacher, student, heldout, LAYERS, max_side=64)
    assert after["feature"] < 0.9 * before["feature"], (before, after)
    assert after["gram"] < 0.9 * before["gram"], (before, after)


@pytest.mark.slow
def test_stop_and_resume_gives_identical_weights(teacher, split, tmp_path):
    train_images, _ = split
    config = _config(steps=10, checkpoint_every=3)
    straight = prune_fine(teacher, 0.6)
    train(teacher, straight, train_images, config, progress=False)

    state = tmp_path / "state.pt"
    interrupted = prune_fine(teacher, 0.6)
    first = train(teacher, interrupted, train_images, config, state_path=state, stop_after=4, progress=False)
    assert (first.step, first.finished) == (4, False)
    resumed = prune_fine(teacher, 0.6)  # a fresh process would rebuild the student from scratch
    second = train(teacher, resumed, train_images, config, state_path=state, progress=False)
    assert second.resumed_from == 4 and second.finished and second.step == 10
    assert [h["step"] for h in second.history] == list(range(1, 11))
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_state_from_another_run_is_refused(teacher, split, tmp_path):
    train_images, _ = split
    state = tmp_path / "state.pt"
    train(teacher, prune_fine(teacher, 0.6), train_images, _config(steps=2), state_path=state, progress=False)
    with pytest.raises(UserError, match="different fine-tuning run"):
        train(
            teacher, prune_fine(teacher, 0.6), train_images, _config(steps=2, lr=5e-4), state_path=state, progress=False
        )
    state.write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot be read"):
        train(teacher, prune_fine(teacher, 0.6), train_images, _config(steps=2), state_path=state, progress=False)


def test_cosine_schedule():
    config = FinetuneConfig(steps=11, lr=1e-3, min_lr_ratio=0.1)
    assert learning_rate(config, 0) == pytest.approx(1e-3)
    assert learning_rate(config, 5) == pytest.approx(0.55e-3)
    assert learning_rate(config, 10) == pytest.approx(1e-4)
    warm = FinetuneConfig(steps=11, lr=1e-3, warmup_steps=2)
    assert learning_rate(warm, 0) == pytest.approx(0.5e-3)


@pytest.mark.slow
def test_finetune_records_before_after_in_provenance(split):
    """The whole job: judged style transfer before and after, table and provenance."""
    train_images, heldout = split
    teacher = load_vgg("random:0", last_layer="relu5_1")
    student = prune_fine(teacher, {"conv1_2": 0.8, "conv2_1": 0.8})
    result = finetune(
        teacher,
        student,
        train_images,
        heldout,
        _config(preset="gatys2016", steps=6, crop_size=32),
        RecoveryConfig(preset="gatys2016", distortion_size=48, stylize_size=32, stylize_iterations=2),
        progress=False,
    )
    record = student.provenance["finetune"]
    for key in ("feature", "gram", "content_ratio", "style_ratio", "ssim"):
        assert key in result.before and key in result.after
    assert record["before"] == result.before and record["table"] == result.table
    assert record["heldout_images"] == [im.name for im in heldout]
    assert record["random_weights"] is True
    assert "SSIM" in result.table and "before" in result.table
    assert result.after["feature"] < result.before["feature"]


def _cli_args(image_dir: Path, out: Path, steps: int, extra=()) -> list[str]:
    profile = out.parent / "profile.json"
    profile.write_text('{"format": "nst-profile/1", "method": "fine", "sparsity": {"conv1_2": 0.7, "conv2_1": 0.7}}')
    return [
        "finetune", "--profile", str(profile), "--weights", "random:0", "--images", str(image_dir),
        "--preset", "gatys2016", "--layers", "relu1_1,relu2_1", "--steps", str(steps), "--batch-size", "2",
        "--crop-size", "32", "--lr", "1e-3", "--eval-size", "32", "--judge-size", "32", "--judge-iterations", "2",
        "--checkpoint-every", "4", "--dtype", "fp32", "-o", str(out), *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_cli_killed_mid_run_resumes_to_identical_weights(tmp_path, capsys):
    """Really interrupt: SIGKILL the CLI process once it has saved a state past step 0, then run
    the same command again; its weights must equal those of an uninterrupted run, bit for bit.
    The uninterrupted and resumed runs call the CLI's main() in this process (same code path,
    same thread count) to keep the test fast; the interrupted one is a real subprocess."""
    folder = tmp_path / "imgs"
    write_images(folder, 5)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # skipped with a warning
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    steps = 24

    straight_out = tmp_path / "a" / "tuned.safetensors"
    assert main(_cli_args(folder, straight_out, steps)) == 0
    captured = capsys.readouterr()
    assert "skipping" in captured.err and "broken.png" in captured.err
    assert "SSIM" in captured.out and "random weights" in captured.out
    assert not Path(str(straight_out) + ".state.pt").exists()  # removed after a finished run

    out = tmp_path / "b" / "tuned.safetensors"
    state = Path(str(out) + ".state.pt")
    proc = subprocess.Popen(NST + _cli_args(folder, out, steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_once_state_reaches(proc, state, 4)
    assert not out.exists()
    saved_step = int(torch.load(state, weights_only=True)["step"])  # may have advanced before the kill landed
    assert 4 <= saved_step < steps

    assert main(_cli_args(folder, out, steps)) == 0
    assert f"resumed at step {saved_step} of {steps}" in capsys.readouterr().err
    a, b = load_checkpoint(straight_out), load_checkpoint(out)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert a.provenance["finetune"]["before"] == b.provenance["finetune"]["before"]
    assert b.provenance["finetune"]["resumed_from_step"] == saved_step


def test_cli_stop_after_and_bad_input(tmp_path, image_dir, capsys):
    out = tmp_path / "t.safetensors"
    assert main(_cli_args(image_dir, out, 4, ["--stop-after", "1"])) == 0
    assert "stopped at step 1 of 4" in capsys.readouterr().out
    assert Path(str(out) + ".state.pt").exists() and not out.exists()
    assert main(_cli_args(image_dir, tmp_path / "t.pth", 2)) == 2
    assert "must end in .safetensors" in capsys.readouterr().err
    assert main([*_cli_args(image_dir, out, 2), "--layers", "relu9_9"]) == 2
    assert "relu9_9" in capsys.readouterr().err
    assert main([*_cli_args(image_dir, out, 2), "--images", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


TORCHRUN = [
    sys.executable,
    "-m",
    "torch.distributed.run",
    "--standalone",
    "--nproc_per_node",
    "2",
    "-m",
    "nst_core.cli",
]


@pytest.mark.slow
def test_torchrun_two_processes_match_the_single_process_run(tmp_path, image_dir, capsys):
    """A real `torchrun --nproc_per_node 2` on CPU (gloo, DistributedDataParallel), interrupted by
    --stop-after and resumed under torchrun, against one process with the same total batch.

    Each rank distils 2 of the 4 crops; the teacher energies are averaged over the ranks and DDP
    averages the gradients, so the two runs take the same steps up to floating-point summation
    order (gradients are summed in another order): equal to ~1e-6, far below what training moved."""
    (tmp_path / "ddp").mkdir(), (tmp_path / "one").mkdir()
    ddp_out, one_out = tmp_path / "ddp" / "t.safetensors", tmp_path / "one" / "t.safetensors"
    extra = ["--batch-size", "4", "--steps", "6"]

    first = subprocess.run(
        [*TORCHRUN, *_cli_args(image_dir, ddp_out, 6, [*extra, "--stop-after", "3"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("stopped at step 3 of 6") == 1  # one rank reports
    assert Path(str(ddp_out) + ".state.pt").exists() and not ddp_out.exists()
    second = subprocess.run(
        [*TORCHRUN, *_cli_args(image_dir, ddp_out, 6, extra)], capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stderr.count("distributed: 2 processes, 2 crop(s) each per step") == 1
    assert second.stderr.count("resumed at step 3 of 6") == 1
    assert second.stdout.count("wrote ") == 1  # one rank writes the checkpoint...
    assert sorted(p.name for p in ddp_out.parent.iterdir()) == [
        "profile.json",
        "t.safetensors",
    ]  # ...and no stray state

    assert main(_cli_args(image_dir, one_out, 6, extra)) == 0
    capsys.readouterr()
    ddp, one = load_checkpoint(ddp_out), load_checkpoint(one_out)
    start = prune_fine(load_vgg("random:0", last_layer="relu5_1"), {"conv1_2": 0.7, "conv2_1": 0.7}).state_dict()
    for key, value in one.state_dict().items():
        moved = float((value - start[key]).abs().max())
        assert float((ddp.state_dict()[key] - value).abs().max()) <= 1e-5 + 1e-3 * moved, key
    moved = max(float((one.state_dict()[k] - start[k]).abs().max()) for k in ("features.2.weight", "features.5.weight"))
    assert moved > 1e-3  # training really changed the weights the comparison is about
    assert ddp.provenance["finetune"]["final_loss"]["total"] == pytest.approx(
        one.provenance["finetune"]["final_loss"]["total"], rel=1e-5
    )
    assert ddp.provenance["finetune"]["after"]["feature"] == pytest.approx(
        one.provenance["finetune"]["after"]["feature"], rel=1e-4
    )


def test_ranks_share_a_batch_evenly():
    assert [list(Ranks(r, 2).share(4)) for r in range(2)] == [[0, 1], [2, 3]]
    assert list(Ranks().share(3)) == [0, 1, 2]
    with pytest.raises(UserError, match="batch size 3 does not split evenly over 2 processes"):
        Ranks(1, 2).share(3)
