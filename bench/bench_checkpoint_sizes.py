"""File size of a checkpoint per encoding and dtype: the seed profile and the dense network.

Real VGG-19 shapes (all 16 convs) with seeded random weights: file sizes depend on shapes
and on which weights are zero, not on the weights' values. Save and load times are printed
for orientation only; they depend on the machine and on what else it runs.

    python bench/bench_checkpoint_sizes.py
    python bench/bench_checkpoint_sizes.py --profile seed --markdown
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from nst_core.checkpoint import DTYPES, ENCODINGS, load_checkpoint, save_checkpoint
from nst_core.pruning import PROFILES, prune_fine
from nst_core.weights import load_vgg

MiB = 2**20


def measure(model, label: str, folder: Path) -> list[dict]:
    rows = []
    for encoding in ENCODINGS:
        for dtype in DTYPES:
            path = folder / f"{label}-{encoding}-{dtype}.safetensors"
            start = time.perf_counter()
            save_checkpoint(model, path, encoding=encoding, dtype=dtype)
            saved = time.perf_counter()
            load_checkpoint(path)
            loaded = time.perf_counter()
            size = path.stat().st_size
            rows.append(
                {"network": label, "encoding": encoding, "dtype": dtype, "bytes": size, "mib": size / MiB,
                 "save_s": saved - start, "load_s": loaded - saved}
            )
            path.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="seed", choices=sorted(PROFILES))
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    args = parser.parse_args()

    dense = load_vgg("random:0", last_layer="relu5_4")
    pruned = prune_fine(dense, args.profile)
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(pruned, f"{args.profile} profile", Path(tmp)) + measure(dense, "dense", Path(tmp))
    if args.markdown:
        print("| network | encoding | dtype | bytes | MiB |")
        print("|---|---|---|---:|---:|")
        for r in rows:
            print(f"| {r['network']} | {r['encoding']} | {r['dtype']} | {r['bytes']:,} | {r['mib']:.2f} |")
        return
    print(f"{'network':<14} {'encoding':<8} {'dtype':<5} {'bytes':>12} {'MiB':>7} {'save s':>7} {'load s':>7}")
    for r in rows:
        print(f"{r['network']:<14} {r['encoding']:<8} {r['dtype']:<5} {r['bytes']:>12,} {r['mib']:>7.2f} "
              f"{r['save_s']:>7.2f} {r['load_s']:>7.2f}")


if __name__ == "__main__":
    main()
