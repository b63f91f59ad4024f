"""Structured scans (fraction of filters removed per layer), full and proxy, feed the width budget."""

from __future__ import annotations

import pytest

from nst_core.compress.budget import allocate_widths, curves_from_scan
from nst_core.compress.scan import ScanConfig, ScanError, merge_scan, read_records, run_scan, shard_file
from nst_core.core.errors import UserError
from nst_core.model.layers import DENSE_WIDTHS
from nst_core.nst.stylize import StylizeConfig

from support.tiny_scan import CONTENT, STYLE

GRID = dict(
    weights="random:0",
    method="structured",
    layers=["conv1_2", "conv3_1"],
    sparsities=[0.4, 0.875],
    stylize=StylizeConfig(size=64, iterations=2),
)


def test_structured_full_scan_records_smaller_widths_and_ranks_its_proxy(tmp_path):
    summary = run_scan(ScanConfig(CONTENT, [STYLE], mode="full", **GRID), tmp_path, progress=False)
    assert summary.complete and summary.ran == 4
    records = {r["cell"]: r for r in read_records(shard_file(tmp_path / "records", 0, 1))}
    # 40% of 64 filters is 25.6: 40 kept (a multiple of 8); 87.5% of 256 leaves 32.
    assert records["conv1_2@0.4000"]["widths"] == {"conv1_2": 40}
    assert records["conv3_1@0.8750"]["widths"] == {"conv3_1": 32}
    table = merge_scan(tmp_path)
    agreement = {(a["proxy"], a["judged"]): a for a in table.agreement()}
    assert all(a["cells"] == 4 for a in agreement.values())
    worst = agreement[("proxy", "worst degradation")]
    assert worst["spearman"] is not None and -1.0 <= worst["spearman"] <= 1.0
    # The budget reads the scan: removed fractions are the rounded ones, degradations the judged worst.
    curves = curves_from_scan(tmp_path)
    assert [x for x, _ in curves.points["conv1_2"]] == pytest.approx([1 - 40 / 64, 1 - 8 / 64])
    assert curves.source["degradation"] == "worst" and curves.source["mode"] == "full"
    row = next(r for r in table.rows if r["layer"] == "conv3_1" and r["sparsity"] == 0.875)
    assert curves.points["conv3_1"][1][1] == pytest.approx(
        max(row["content_ratio"] - 1, row["style_ratio"] - 1, 1 - row["ssim"])
    )
    plan = allocate_widths(
        {n: DENSE_WIDTHS[n] for n in ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]},
        curves,
        64,
        target_speedup=1.3,
    )
    assert plan.predicted_speedup >= 1.3 and plan.curves_source["scan"] == str(tmp_path)


def test_structured_proxy_scan_feeds_the_budget_and_fine_scans_are_refused(tmp_path):
    run_scan(ScanConfig(CONTENT, [STYLE], mode="proxy", **GRID), tmp_path / "proxy", progress=False)
    curves = curves_from_scan(tmp_path / "proxy")
    assert curves.source["degradation"] == "proxy" and set(curves.points) == {"conv1_2", "conv3_1"}
    assert all(y > 0 for points in curves.points.values() for _, y in points)
    fine = dict(GRID, method="fine")
    run_scan(ScanConfig(CONTENT, [STYLE], mode="proxy", **fine), tmp_path / "fine", progress=False)
    with pytest.raises(UserError, match="needs a structured scan"):
        curves_from_scan(tmp_path / "fine")


def test_a_structured_scan_can_rank_filters_by_taylor_importance(tmp_path):
    """Same grid, filters ranked by Taylor importance on the scan's own images: other filters go, so the
    proxy differs; the configuration (and its hash) says how filters were ranked; L1 keeps the old hash.
    Named nothing, a structured scan ranks by activation (the real-weight choice), a fine one by L1."""
    proxy_grid = dict(GRID, layers=["conv3_1"], sparsities=[0.5])
    l1 = ScanConfig(CONTENT, [STYLE], mode="proxy", importance="l1", **proxy_grid)
    taylor = ScanConfig(CONTENT, [STYLE], mode="proxy", importance="taylor", **proxy_grid)
    assert "importance" not in l1.identity() and taylor.identity()["importance"] == "taylor"
    default = ScanConfig(CONTENT, [STYLE], mode="proxy", **proxy_grid)
    assert default.identity()["importance"] == "activation" == default.to_dict()["importance"]
    fine = ScanConfig(CONTENT, [STYLE], mode="proxy", **dict(proxy_grid, method="fine"))
    assert fine.criterion == "l1" and "importance" not in fine.identity()
    run_scan(l1, tmp_path / "l1", progress=False)
    run_scan(taylor, tmp_path / "taylor", progress=False)
    (l1_row,), (taylor_row,) = merge_scan(tmp_path / "l1").rows, merge_scan(tmp_path / "taylor").rows
    assert l1_row["proxy"] != pytest.approx(taylor_row["proxy"], rel=1e-3)
    assert curves_from_scan(tmp_path / "taylor").source["importance"] == "taylor"
    assert curves_from_scan(tmp_path / "l1").source["importance"] == "l1"
    with pytest.raises(ScanError, match="needs the structured method"):
        ScanConfig(CONTENT, [STYLE], mode="proxy", importance="taylor", **dict(proxy_grid, method="fine")).validate()
