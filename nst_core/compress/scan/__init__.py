"""The sensitivity scan: how much does pruning one layer to one sparsity hurt style transfer?

A scan is a grid of layers x sparsities for one pruning method. Each cell prunes only that
layer of the dense network and then, in ``full`` mode, runs style transfer with the pruned
network from the same seed and init as a dense baseline run, and judges the output with the
dense judge (:class:`nst_core.nst.quality.Judge`): content-loss ratio, style-loss ratio, and SSIM
against the dense output. Every cell also gets a cheap proxy; ``proxy`` mode computes only
that (no optimisation at all).

The parts, each importing only those above it:

- :mod:`.folder`: ``scan.json``, crash-safe JSONL records per shard, :class:`ScanError`;
- :mod:`.config`: :class:`ScanConfig`, its grid of :class:`Cell` and the shard split;
- :mod:`.proxy`: :class:`ProxyProbe`, feature and Gram distortion without optimising;
- :mod:`.run`: :func:`run_scan`, which evaluates cells and appends their records;
- :mod:`.table`: :func:`merge_scan` into a :class:`ScanTable`, rank agreement, :func:`select_profile`;
- :mod:`.plots`: :func:`plot_scan` (curves and heatmap). Table and plots read a finished
  folder through :mod:`.folder` alone, never through the runner.

Long scans are safe to interrupt and to spread out:

- one JSONL record per finished cell, appended durably;
- records carry a hash of everything that decides a cell's numbers (inputs' bytes, weights,
  method, stylization settings, mode), and a folder holds exactly one configuration;
  rerunning resumes and skips finished cells; growing the grid reuses the cells already done;
- ``shard=(I, N)`` (or ``RANK``/``WORLD_SIZE`` under torchrun) runs every N-th cell, so shards
  on many machines or GPUs cover the grid between them; :func:`merge_scan` builds the same
  table whatever the sharding.

Folder layout: ``scan.json`` (config), ``records/shard-I-of-N.jsonl``, ``dense.png`` and
``dense.json`` (the baseline), ``table.csv``/``table.json`` (after merge), ``plots/``.

>>> from nst_core.nst.stylize import StylizeConfig
>>> config = ScanConfig("examples/content/lakeside.jpg", ["examples/style/swirls.jpg"],
...                     weights="random:0", layers=["conv1_2", "conv3_1"], sparsities=[0.5, 0.9],
...                     stylize=StylizeConfig(size=64, iterations=3))   # doctest: +SKIP
>>> run_scan(config, "runs/scan")                                     # doctest: +SKIP
>>> write_tables(merge_scan("runs/scan"), "runs/scan")                # doctest: +SKIP
"""

from nst_core.compress.scan.config import (
    DEFAULT_SPARSITIES,
    MODES,
    Cell,
    ScanConfig,
    config_hash,
    parse_shard,
    parse_sparsities,
    shard_cells,
    shard_from_env,
)
from nst_core.compress.scan.folder import (
    RECORD_FORMAT,
    SCAN_FORMAT,
    ScanError,
    append_record,
    cell_key,
    finished_records,
    folder_lock,
    load_scan_json,
    read_folder,
    read_records,
    shard_file,
)
from nst_core.compress.scan.plots import plot_curves, plot_heatmap, plot_scan
from nst_core.compress.scan.proxy import ProxyProbe
from nst_core.compress.scan.run import CellEvaluator, RunSummary, prepare_folder, run_scan
from nst_core.compress.scan.table import (
    DEGRADATIONS,
    TABLE_FORMAT,
    ScanTable,
    degradation,
    kendall_tau_b,
    merge_scan,
    rank_agreement,
    select_profile,
    select_sparsity,
    spearman_rho,
    write_tables,
)

__all__ = [
    "DEFAULT_SPARSITIES",
    "DEGRADATIONS",
    "MODES",
    "RECORD_FORMAT",
    "SCAN_FORMAT",
    "TABLE_FORMAT",
    "Cell",
    "CellEvaluator",
    "ProxyProbe",
    "RunSummary",
    "ScanConfig",
    "ScanError",
    "ScanTable",
    "append_record",
    "cell_key",
    "config_hash",
    "degradation",
    "finished_records",
    "folder_lock",
    "kendall_tau_b",
    "load_scan_json",
    "merge_scan",
    "parse_shard",
    "parse_sparsities",
    "plot_curves",
    "plot_heatmap",
    "plot_scan",
    "prepare_folder",
    "rank_agreement",
    "read_folder",
    "read_records",
    "run_scan",
    "select_profile",
    "select_sparsity",
    "shard_cells",
    "shard_file",
    "shard_from_env",
    "spearman_rho",
    "write_tables",
]
