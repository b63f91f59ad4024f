"""`nst release` end to end on the bundled examples with random weights and tiny settings, and a real
kill -9 in the middle of a run followed by a rerun that must end with the same files.

Random weights (none can be downloaded here): every stage runs the code real weights take, the
numbers are mechanical. Sizes are 32 px and steps few, so a whole release takes seconds of CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nst_core.cli import main
from nst_core.core.files import file_sha256
from nst_core.model.checkpoint import read_checkpoint_info
from nst_core.model.vgg import load_checkpoint
from nst_core.workflows.release import STAGES, TIMING_FILES

from support.hub_server import HubServer
from support.interrupt import kill_once_state_reaches

pytestmark = pytest.mark.slow  # whole `nst release` runs, killed and resumed

NST = [sys.executable, "-c", "import sys; from nst_core.cli import main; sys.exit(main())"]
TINY = [
    "--weights",
    "random:0",
    "--target-speedup",
    "2",
    "--preset",
    "gatys2016",
    "--scan-size",
    "32",
    "--levels",
    "0.5,0.75",
    "--importance",
    "l1",
    "--cost-size",
    "64",
    "--calibration-size",
    "32",
    "--steps",
    "4",
    "--batch-size",
    "2",
    "--crop-size",
    "32",
    "--checkpoint-every",
    "1",
    "--eval-size",
    "32",
    "--judge-size",
    "32",
    "--judge-iterations",
    "1",
    "--max-side",
    "64",
    "--measure-iterations",
    "0",
    "--dtype",
    "codebook4",
    "--device",
    "cpu",
]


def release_files(folder: Path) -> dict[str, str]:
    """SHA-256 of every file of a release, except the ones that record wall-clock time (TIMING_FILES)."""
    return {
        str(p.relative_to(folder)): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(str(p.relative_to(folder)).startswith(skip) for skip in TIMING_FILES)
    }


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("a") / "release"
    assert main(["release", str(out), *TINY]) == 0
    return out


def test_release_writes_every_stage_report_and_card(straight, capsys):
    for stage in STAGES:
        assert (straight / stage / "done.json").is_file(), stage
    report = json.loads((straight / "report.json").read_text())
    assert report["random_weights"] is True and report["settings"]["target_speedup"] == 2.0
    assert "random weights" in (straight / "report.md").read_text()
    names = [c["name"] for c in report["judge"]["candidates"]]
    assert names == ["dense", "uniform L1 50%", "budgeted l1", "budgeted l1 + fine-tune"]
    dense = report["judge"]["candidates"][0]
    assert dense["ssim"] == pytest.approx(1.0) and dense["feature"] == pytest.approx(0.0, abs=1e-9)
    # The budget was met (predicted), and the checkpoint is the budgeted network, fine-tuned and quantised.
    assert report["plan"]["predicted_speedup"] >= 2.0
    model = load_checkpoint(straight / "5-checkpoint" / "model.safetensors")
    assert model.widths == report["plan"]["widths"]
    info = read_checkpoint_info(straight / "5-checkpoint" / "model.safetensors")
    assert info["dtype"] == "codebook4" and info["metrics"]["style_ratio"] == pytest.approx(
        report["finetune"]["after"]["style_ratio"]
    )
    tuned = load_checkpoint(straight / "3-finetune" / "finetuned.safetensors")
    pruned = load_checkpoint(straight / "2-prune" / "pruned.safetensors")
    assert not torch.equal(tuned.conv("conv2_1").weight, pruned.conv("conv2_1").weight)  # fine-tuning changed it
    assert report["finetune"]["after"]["feature"] < report["finetune"]["before"]["feature"]
    card = (straight / "6-card" / "card" / "README.md").read_text()
    assert "Release report" in card and "pareto.png" in card and "sensitivity.png" in card
    for plot in ("pareto.png", "sensitivity.png", "heatmap.png"):
        assert (straight / "6-card" / "card" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "stage 6-card" in json.loads((straight / "timings.json").read_text())

    # A rerun finds everything done and changes nothing.
    before = release_files(straight)
    assert main(["release", str(straight), *TINY]) == 0
    assert "6-card: done (kept)" in capsys.readouterr().err
    assert release_files(straight) == before


def test_kill_9_mid_run_then_rerun_ends_with_the_same_files(straight, tmp_path, capsys):
    """SIGKILL the real `nst release` process while it fine-tunes (a state past step 0 saved), run the same
    command again, and compare every file's hash with the uninterrupted run's (timing files aside)."""
    out = tmp_path / "release"
    state = out / "3-finetune" / "state.pt"
    proc = subprocess.Popen([*NST, "release", str(out), *TINY], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_once_state_reaches(proc, state, 1, timeout=400)
    assert not (out / "3-finetune" / "done.json").exists() and (out / "2-prune" / "done.json").exists()

    assert main(["release", str(out), *TINY]) == 0
    err = capsys.readouterr().err
    assert "1-scan: done (kept)" in err and "3-finetune: running" in err
    assert json.loads((out / "timings.json").read_text())["finetune"]["resumed_from_step"] >= 1
    assert release_files(out) == release_files(straight)


def test_release_refuses_bad_settings_and_a_foreign_folder(tmp_path, capsys):
    assert main(["release", str(tmp_path / "r"), *TINY, "--target-speedup", "1"]) == 2
    assert "--target-speedup must be above 1" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    assert main(["release", str(tmp_path / "full"), *TINY]) == 2
    assert "not a release folder" in capsys.readouterr().err
    assert main(["release", str(tmp_path / "r"), *TINY, "--push", "not a repo"]) == 2
    capsys.readouterr()


def test_push_sends_checkpoint_card_report_and_plots(straight, tmp_path):
    """--push on a finished release, against the local Hub stand-in (tests/support/hub_server.py: the real Hub
    cannot be reached here) through the real huggingface_hub client, in a subprocess (the client reads
    HF_ENDPOINT when imported). Only the card stage is redone, naming the repo; then two commits."""
    folder = tmp_path / "release"
    shutil.copytree(straight, folder)
    with HubServer() as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
        env.update(
            HF_ENDPOINT=server.endpoint,
            HF_TOKEN="hf_DummyTokenForTheLocalHub0123456789",
            HF_HOME=str(tmp_path / "hf"),
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_UPDATE_CHECK="1",
            HF_HUB_DISABLE_XET="1",
        )  # the stand-in takes binary files through LFS, not Xet
        result = subprocess.run(
            [*NST, "release", str(folder), *TINY, "--push", "tester/fast2x"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "5-checkpoint: done (kept)" in result.stderr and "6-card: running" in result.stderr
        head = server.hub.repos[("model", "tester/fast2x")].resolve("main")
    expected = {
        "model.safetensors",
        "config.json",
        "README.md",
        "sensitivity.png",
        "pareto.png",
        "heatmap.png",
        "report.md",
        "report.json",
    }
    assert expected <= set(head.files)
    assert b"Release report" in head.files["README.md"] and b"tester/fast2x" in head.files["README.md"]
    assert head.files["model.safetensors"] == (straight / "5-checkpoint" / "model.safetensors").read_bytes()
    assert head.files["pareto.png"] == (straight / "4-judge" / "pareto.png").read_bytes()
    assert json.loads((folder / "7-push" / "push.json").read_text())["report_commit"] == head.oid
