"""nst_core.compress.scan.config: the grid, its validation, and how it splits into shards."""

from __future__ import annotations

import pytest

from nst_core.compress.scan import Cell, ScanConfig, ScanError, parse_shard, parse_sparsities, shard_cells

from support.tiny_scan import CONTENT, STYLE


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
