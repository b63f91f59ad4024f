"""nst_core.compress.scan.run: resumable records, sharding (incl. torchrun), and one folder per configuration.

The tiny grid of :mod:`.tiny` (2 layers x 2 sparsities, 64 px, 2 iterations, random weights)
runs the real code paths in seconds.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nst_core.compress.scan import (
    ScanConfig,
    ScanError,
    append_record,
    finished_records,
    merge_scan,
    prepare_folder,
    read_records,
    run_scan,
)
from nst_core.nst.stylize import StylizeConfig

from support.tiny_scan import CONTENT, STYLE, scan_args, scan_env

pytestmark = pytest.mark.slow  # scans in subprocesses, killed and resumed, and under torchrun


def _table_rows(folder: Path) -> list[dict]:
    return merge_scan(folder).rows


def test_interrupted_scan_resumes_to_the_same_records(tmp_path, entry, reference):
    out = tmp_path / "scan"
    records = out / "records" / "shard-0-of-1.jsonl"
    process = subprocess.Popen(
        [sys.executable, str(entry), *scan_args(out)],
        env=scan_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline and process.poll() is None:
            if records.exists() and records.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    finished = len(read_records(records))
    assert 1 <= finished < 4, "the kill must land part-way through the grid"
    # A kill during a write leaves a torn last line; resuming must survive it.
    with open(records, "ab") as f:
        f.write(b'{"cell": "conv3_1@0.9000", "config_ha')

    done = subprocess.run(
        [sys.executable, str(entry), *scan_args(out)], env=scan_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert f"{4 - finished} cell(s) run, {finished} already done" in done.stdout
    lines = records.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])  # torn tail cut off, not glued on
    assert _table_rows(out) == _table_rows(reference)
    assert (out / "table.csv").read_text() == (reference / "table.csv").read_text()

    # Rerunning a finished scan runs nothing.
    again = subprocess.run(
        [sys.executable, str(entry), *scan_args(out)], env=scan_env(), capture_output=True, text=True, timeout=300
    )
    assert "0 cell(s) run, 4 already done" in again.stdout


def test_two_process_torchrun_merges_to_the_one_process_table(tmp_path, entry, reference):
    out = tmp_path / "scan"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        str(entry),
        *scan_args(out),
    ]
    done = subprocess.run(command, env=scan_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    shard_files = sorted(p.name for p in (out / "records").glob("*.jsonl"))
    assert shard_files == ["shard-0-of-2.jsonl", "shard-1-of-2.jsonl"]
    assert all(len(read_records(out / "records" / name)) == 2 for name in shard_files)
    # Rank 0 merged after the gloo barrier; merging again gives the same table.
    assert (out / "table.csv").read_text() == (reference / "table.csv").read_text()
    assert _table_rows(out) == _table_rows(reference)


def test_each_full_scan_record_holds_judge_and_proxy_metrics(reference):
    table = merge_scan(reference)
    assert not table.missing and len(table.rows) == 4
    assert table.baseline["content"] > 0 and table.baseline["style"] > 0
    for row in table.rows:
        for name in ("content_ratio", "style_ratio", "ssim", "feature_distortion", "gram_distortion", "proxy"):
            assert math.isfinite(row[name]), name
        assert 0 < row["ssim"] <= 1
        assert row["feature_distortion"] > 0  # the pruned layer feeds relu4_2 either way
    agreement = table.to_dict()["agreement"]
    assert {a["proxy"] for a in agreement} == {"feature_distortion", "gram_distortion", "proxy"}


def test_changed_configuration_is_refused_and_a_grown_grid_reuses_cells(tmp_path):
    config = ScanConfig(
        CONTENT,
        [STYLE],
        weights="random:0",
        mode="proxy",
        layers=["conv1_1", "conv2_1"],
        sparsities=[0.5],
        stylize=StylizeConfig(size=64, iterations=2),
    )
    first = run_scan(config, tmp_path, progress=False)
    assert (first.ran, first.complete) == (2, True)
    config.sparsities = [0.5, 0.8]
    second = run_scan(config, tmp_path, progress=False)
    assert (second.skipped, second.ran) == (2, 2)
    assert [row["sparsity"] for row in merge_scan(tmp_path).rows] == [0.5, 0.8, 0.5, 0.8]
    changed = ScanConfig(
        CONTENT,
        [STYLE],
        weights="random:1",
        mode="proxy",
        layers=["conv1_1"],
        sparsities=[0.5],
        stylize=StylizeConfig(size=64, iterations=2),
    )
    with pytest.raises(ScanError, match="another configuration.*weights"):
        run_scan(changed, tmp_path, progress=False)
    # A record of another configuration slipped into the folder is never counted.
    append_record(
        tmp_path / "records" / "stray.jsonl", {"config_hash": "0" * 16, "cell": "conv1_1@0.9000", "metrics": {}}
    )
    assert "conv1_1@0.9000" not in finished_records(tmp_path, config.config_hash())


def test_scan_folder_refuses_a_different_configuration_before_running(tmp_path):
    base = dict(weights="random:0", mode="proxy", stylize=StylizeConfig(size=64, iterations=2))
    prepare_folder(ScanConfig(CONTENT, [STYLE], method="fine", **base), tmp_path)
    with pytest.raises(ScanError, match="method: 'fine' -> 'structured'"):
        prepare_folder(ScanConfig(CONTENT, [STYLE], method="structured", **base), tmp_path)
