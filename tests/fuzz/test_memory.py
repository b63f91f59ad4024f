"""Hostile files cost bounded memory: measured as the peak RSS of a subprocess.

The bound is 100 MB over a normal `nst checkpoint info` (the issue's own bound): a hostile header
may make nst read a small file and build nothing; 100 MB leaves room for allocator noise and
for loading one legitimate small network, and is 30x below what the width bomb used to cost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nst_core.model.checkpoint import save_checkpoint
from nst_core.model.weights import load_vgg

from support.formats import safetensors_bytes, split_safetensors
from support.peak_rss import peak_kib

pytestmark = pytest.mark.slow  # peak RSS of fuzzed loads in fresh interpreters

ROOT = Path(__file__).resolve().parents[2]
BOUND_KIB = 100 * 1024


def width_bomb(tmp_path: Path) -> Path:
    """A ~1.5 KB checkpoint: a real header whose widths claim 8000 channels (2.3 GB of weights), and no tensors."""
    good = save_checkpoint(load_vgg("random:0", last_layer="relu1_2"), tmp_path / "good.safetensors", encoding="dense")
    _, metadata, _ = split_safetensors(good.read_bytes())
    metadata["widths"] = json.dumps({"conv1_1": 8000, "conv1_2": 8000})
    bomb = tmp_path / "bomb.safetensors"
    bomb.write_bytes(safetensors_bytes({}, metadata, b""))
    assert bomb.stat().st_size < 2048
    return bomb


def test_width_bomb_is_refused_before_allocation(tmp_path):
    bomb = width_bomb(tmp_path)
    normal, code, _ = peak_kib("checkpoint", "info", str(tmp_path / "good.safetensors"))
    assert code == 0
    # `checkpoint info` reads the header only; `--weights FILE` loads the network it describes.
    for argv in (
        ["checkpoint", "info", str(bomb)],
        ["prune", "--weights", str(bomb), "--last-layer", "relu1_2", "--sparsity", "0.5"],
    ):
        peak, code, err = peak_kib(*argv)
        assert code == 2, err
        assert "widths.conv1_1" in err and "8000" in err and str(bomb) in err, err
        assert peak - normal < BOUND_KIB, f"{argv}: peak {peak} KiB vs {normal} KiB for a normal checkpoint info"


FUZZ_IN_A_SUBPROCESS = """
import sys
from hypothesis import given, settings
from nst_core.model.vgg import load_checkpoint
from nst_core.core.errors import UserError
from nst_core.nst.memory import peak_rss
from tests.support.formats import checkpoint_files, valid_checkpoints

path = sys.argv[1]

def load(blob):
    with open(path, "wb") as fh:
        fh.write(blob)
    try:
        load_checkpoint(path)
    except UserError:
        pass

for blob in valid_checkpoints():  # the legitimate work, before the baseline
    load(blob)
before = peak_rss() // 1024
given(checkpoint_files())(settings(max_examples=int(sys.argv[2]), database=None, deadline=None)(load))()
print(before, peak_rss() // 1024)
"""


def test_fuzzed_checkpoints_stay_within_the_memory_bound(tmp_path):
    examples = int(os.environ.get("NST_FUZZ_EXAMPLES", "60"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", FUZZ_IN_A_SUBPROCESS, str(tmp_path / "f.safetensors"), str(examples)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    before, after = map(int, proc.stdout.split())
    print(f"peak RSS growth over {examples} fuzzed checkpoints: {(after - before) / 1024:.1f} MiB")
    assert after - before < BOUND_KIB
