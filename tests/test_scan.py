"""The sensitivity scan: resumable records, sharding (incl. torchrun), tables, plots, selection.

Seeded random VGG-19 weights stand in for the real ones (no downloads here); the grid is
tiny (2 layers x 2 sparsities, 64 px, 2 iterations) so the real code paths run in seconds.
Every scan subprocess runs with OMP_NUM_THREADS=1 (what torchrun sets), so runs in
different processes are bit-for-bit comparable.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from nst_core.cli import main
from nst_core.pruning import Profile, load_profile, prune_fine, prune_structured
from nst_core.scan import (
    Cell,
    ScanConfig,
    ScanError,
    finished_records,
    parse_shard,
    parse_sparsities,
    prepare_folder,
    run_scan,
    shard_cells,
)
from nst_core.scan_records import append_record, read_records
from nst_core.scan_table import ScanTable, degradation, merge_scan, rank_agreement, select_profile, select_sparsity
from nst_core.stylize import StylizeConfig
from nst_core.weights import load_vgg

ROOT = Path(__file__).resolve().parents[1]
CONTENT = str(ROOT / "examples/content/lakeside.jpg")
STYLE = str(ROOT / "examples/style/swirls.jpg")
GRID = ["--layers", "conv1_2,conv3_1", "--sparsities", "0.5,0.9"]
TINY = ["--size", "64", "--iterations", "2", "--weights", "random:0"]


def _scan_args(out: Path) -> list[str]:
    return ["scan", "run", "--content", CONTENT, "--style", STYLE, "--out", str(out), *GRID, *TINY]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def entry(tmp_path_factory) -> Path:
    """A script that runs `nst` (torchrun needs a script path, not a console entry point)."""
    path = tmp_path_factory.mktemp("bin") / "nst_entry.py"
    path.write_text("import sys\nfrom nst_core.cli import main\nsys.exit(main())\n")
    return path


def _table_rows(folder: Path) -> list[dict]:
    return merge_scan(folder).rows


@pytest.fixture(scope="module")
def reference(tmp_path_factory, entry) -> Path:
    """One uninterrupted single-process run of the tiny grid."""
    out = tmp_path_factory.mktemp("reference") / "scan"
    done = subprocess.run([sys.executable, str(entry), *_scan_args(out)], env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "table.csv").exists() and (out / "table.json").exists()  # a complete grid is merged at the end
    return out


def test_interrupted_scan_resumes_to_the_same_records(tmp_path, entry, reference):
    out = tmp_path / "scan"
    records = out / "records" / "shard-0-of-1.jsonl"
    process = subprocess.Popen([sys.executable, str(entry), *_scan_args(out)], env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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

    done = subprocess.run([sys.executable, str(entry), *_scan_args(out)], env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{4 - finished} cell(s) run, {finished} already done" in done.stdout
    lines = records.read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])  # torn tail cut off, not glued on
    assert _table_rows(out) == _table_rows(reference)
    assert (out / "table.csv").read_text() == (reference / "table.csv").read_text()

    # Rerunning a finished scan runs nothing.
    again = subprocess.run([sys.executable, str(entry), *_scan_args(out)], env=_env(), capture_output=True, text=True, timeout=300)
    assert "0 cell(s) run, 4 already done" in again.stdout


def test_two_process_torchrun_merges_to_the_one_process_table(tmp_path, entry, reference):
    out = tmp_path / "scan"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
               str(entry), *_scan_args(out)]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    shard_files = sorted(p.name for p in (out / "records").glob("*.jsonl"))
    assert shard_files == ["shard-0-of-2.jsonl", "shard-1-of-2.jsonl"]
    assert all(len(read_records(out / "records" / name)) == 2 for name in shard_files)
    # Rank 0 merged after the gloo barrier; merging again gives the same table.
    assert (out / "table.csv").read_text() == (reference / "table.csv").read_text()
    assert _table_rows(out) == _table_rows(reference)


def test_cli_plot_and_select_on_a_finished_scan(tmp_path, reference, capsys):
    plots = tmp_path / "plots"
    assert main(["scan", "plot", str(reference), "--out", str(plots)]) == 0
    for name in ("curves.png", "heatmap.png"):
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(plots / name) as img:
            img.verify()
        with Image.open(plots / name) as img:
            assert img.format == "PNG" and min(img.size) > 200
    profile_path = tmp_path / "profile.json"
    assert main(["scan", "select", str(reference), "--tolerance", "100", "-o", str(profile_path)]) == 0
    profile = load_profile(profile_path)
    assert profile.method == "fine"
    assert profile.sparsity == {"conv1_2": 0.9, "conv3_1": 0.9}  # a huge tolerance accepts every level
    assert main(["prune", "--weights", "random", "--profile", str(profile_path)]) == 0
    assert "conv3_1" in capsys.readouterr().out


def test_full_scan_records_judge_and_proxy_metrics(reference):
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
    config = ScanConfig(CONTENT, [STYLE], weights="random:0", mode="proxy", layers=["conv1_1", "conv2_1"],
                        sparsities=[0.5], stylize=StylizeConfig(size=64, iterations=2))
    first = run_scan(config, tmp_path, progress=False)
    assert (first.ran, first.complete) == (2, True)
    config.sparsities = [0.5, 0.8]
    second = run_scan(config, tmp_path, progress=False)
    assert (second.skipped, second.ran) == (2, 2)
    assert [row["sparsity"] for row in merge_scan(tmp_path).rows] == [0.5, 0.8, 0.5, 0.8]
    changed = ScanConfig(CONTENT, [STYLE], weights="random:1", mode="proxy", layers=["conv1_1"], sparsities=[0.5],
                         stylize=StylizeConfig(size=64, iterations=2))
    with pytest.raises(ScanError, match="another configuration.*weights"):
        run_scan(changed, tmp_path, progress=False)
    # A record of another configuration slipped into the folder is never counted.
    append_record(tmp_path / "records" / "stray.jsonl", {"config_hash": "0" * 16, "cell": "conv1_1@0.9000", "metrics": {}})
    assert "conv1_1@0.9000" not in finished_records(tmp_path, config.config_hash())


def test_layers_after_the_deepest_loss_layer_cannot_be_scanned():
    config = ScanConfig(CONTENT, [STYLE], weights="random:0", layers=["conv5_4"])
    with pytest.raises(ScanError, match="conv5_4 comes after relu5_3"):
        config.validate()
    assert ScanConfig(CONTENT, [STYLE]).scanned_layers()[-1] == "conv5_3"


def test_parsing_and_sharding():
    assert parse_sparsities("0.4:0.9:0.1") == [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert parse_sparsities("0.5, 0.75") == [0.5, 0.75]
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(ScanError):
            parse_shard(bad)
    cells = [Cell(f"conv{i}_1", 0.5) for i in range(1, 6)]
    parts = [shard_cells(cells, (i, 3)) for i in range(3)]
    assert sorted(c for part in parts for c in part) == sorted(cells)
    assert sum(len(p) for p in parts) == len(cells)


def test_torn_tail_is_ignored_by_readers_and_cut_by_the_next_writer(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, {"cell": "a"})
    with open(path, "ab") as f:
        f.write(b'{"cell": "b", "met')
    assert [r["cell"] for r in read_records(path)] == ["a"]
    append_record(path, {"cell": "c"})
    assert path.read_text().splitlines() == ['{"cell": "a"}', '{"cell": "c"}']


def test_proxy_is_zero_for_dense_and_structured_equals_zeroed_filters():
    from nst_core.losses import get_preset
    from nst_core.scan_proxy import ProxyProbe

    preset = get_preset("seed")
    dense = load_vgg("random:0", last_layer=preset.last_layer)
    generator = torch.Generator().manual_seed(0)
    content = torch.rand((1, 3, 32, 32), generator=generator) * 255
    style = torch.rand((1, 3, 32, 32), generator=generator) * 255
    probe = ProxyProbe(dense, preset, content, [style])
    assert probe.measure(dense) == {"feature_distortion": 0.0, "gram_distortion": 0.0, "proxy": 0.0}

    small = prune_structured(dense, {"conv4_2": 0.5})  # relu4_2 is both a content layer and upstream of style layers
    zeroed = prune_fine(dense, {})
    removed = sorted(set(range(512)) - set(small.kept_channels["conv4_2"].tolist()))
    with torch.no_grad():
        zeroed.conv("conv4_2").weight[removed] = 0
        zeroed.conv("conv4_2").bias[removed] = 0
    ours, reference = probe.measure(small), probe.measure(zeroed)
    assert ours["feature_distortion"] > 0.1
    for key in ours:
        assert ours[key] == pytest.approx(reference[key], rel=1e-4, abs=1e-6)


def _synthetic_table(rows: list[tuple[str, float, float, float, float]], mode: str = "full") -> ScanTable:
    scan = {"config_hash": "f" * 16, "method": "fine", "mode": mode, "weights": "random:0",
            "layers": sorted({r[0] for r in rows}), "sparsities": sorted({r[1] for r in rows})}
    out = []
    for layer, sparsity, content_ratio, style_ratio, ssim in rows:
        row = {"layer": layer, "sparsity": sparsity, "content_ratio": content_ratio, "style_ratio": style_ratio, "ssim": ssim,
               "feature_distortion": content_ratio - 1, "gram_distortion": style_ratio - 1, "proxy": 0.0}
        row["degradation"] = degradation(row, "worst")
        out.append(row)
    return ScanTable(scan, out, [], None)


def test_profile_selected_from_a_synthetic_table_matches_hand_worked_expectations():
    table = _synthetic_table([
        # conv1_2: passes 0.4..0.6 (worst degradation 0.02, 0.05, 0.08), fails at 0.7 (style +0.15)
        ("conv1_2", 0.4, 1.02, 1.01, 0.99), ("conv1_2", 0.5, 1.05, 1.02, 0.98),
        ("conv1_2", 0.6, 1.03, 1.08, 0.97), ("conv1_2", 0.7, 1.04, 1.15, 0.96),
        # conv2_1: fails at the lowest level on SSIM (1 - 0.85 = 0.15) -> stays dense
        ("conv2_1", 0.4, 1.00, 1.00, 0.85), ("conv2_1", 0.5, 1.00, 1.00, 0.99),
        ("conv2_1", 0.6, 1.00, 1.00, 0.99), ("conv2_1", 0.7, 1.00, 1.00, 0.99),
        # conv3_1: passes at 0.4 and 0.5, fails at 0.6, passes again at 0.7 (noise) -> 0.5, not 0.7
        ("conv3_1", 0.4, 1.01, 1.00, 0.99), ("conv3_1", 0.5, 1.09, 1.00, 0.99),
        ("conv3_1", 0.6, 1.11, 1.00, 0.99), ("conv3_1", 0.7, 1.01, 1.00, 0.99),
        # conv4_1: everything within tolerance, even better than dense -> 0.7
        ("conv4_1", 0.4, 0.98, 0.97, 0.99), ("conv4_1", 0.5, 0.99, 0.97, 0.99),
        ("conv4_1", 0.6, 1.00, 0.98, 0.99), ("conv4_1", 0.7, 1.09, 0.99, 0.95),
    ])
    profile = select_profile(table, tolerance=0.1)
    assert isinstance(profile, Profile) and profile.method == "fine"
    assert profile.sparsity == {"conv1_2": 0.6, "conv2_1": 0.0, "conv3_1": 0.5, "conv4_1": 0.7}
    assert profile.source["tolerance"] == 0.1 and profile.source["degradation"] == "worst"
    # By style alone conv1_2 fails at 0.7 (0.15 > 0.1); conv2_1 and conv3_1 never fail on style.
    assert select_profile(table, 0.1, "style").sparsity == {"conv1_2": 0.6, "conv2_1": 0.7, "conv3_1": 0.7, "conv4_1": 0.7}
    # Tighter: conv1_2 stops at 0.4 (0.05 at 0.5 > 0.03); conv4_1 at 0.6 (0.01 each up to 0.6, then 0.09).
    assert select_profile(table, 0.03).sparsity == {"conv1_2": 0.4, "conv2_1": 0.0, "conv3_1": 0.4, "conv4_1": 0.6}
    assert select_sparsity([(0.5, float("nan")), (0.4, 0.0)], 0.1) == 0.4
    with pytest.raises(ScanError):
        select_profile(table, -1)


def test_rank_agreement_on_synthetic_rows():
    table = _synthetic_table([("conv1_1", s, 1 + s, 1 + 2 * s, 1 - s / 10) for s in (0.2, 0.4, 0.6, 0.8)])
    agreement = {a["proxy"] + "/" + a["judged"]: a for a in rank_agreement(table.rows)}
    assert agreement["feature_distortion/content_ratio - 1"]["spearman"] == pytest.approx(1.0)
    assert agreement["gram_distortion/style_ratio - 1"]["kendall"] == pytest.approx(1.0)
    assert agreement["proxy/worst degradation"]["spearman"] is None  # a constant proxy has no ranking


def test_scan_folder_refuses_a_different_configuration_before_running(tmp_path):
    base = dict(weights="random:0", mode="proxy", stylize=StylizeConfig(size=64, iterations=2))
    prepare_folder(ScanConfig(CONTENT, [STYLE], method="fine", **base), tmp_path)
    with pytest.raises(ScanError, match="method: 'fine' -> 'structured'"):
        prepare_folder(ScanConfig(CONTENT, [STYLE], method="structured", **base), tmp_path)


def test_plots_of_a_synthetic_table_with_a_failed_cell_are_valid_pngs(tmp_path):
    from nst_core.scan_plots import plot_scan

    table = _synthetic_table([("conv1_1", 0.5, 1.1, 1.2, 0.9), ("conv1_1", 0.9, math.inf, math.inf, 0.0),
                              ("conv2_1", 0.5, 1.0, 1.0, 0.99), ("conv2_1", 0.9, 1.3, 1.1, 0.8)])
    for path in plot_scan(table, tmp_path):
        with Image.open(path) as img:
            img.verify()
    assert select_profile(table, 0.5).sparsity == {"conv1_1": 0.5, "conv2_1": 0.9}
